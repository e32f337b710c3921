//! What every target's checks share: a runtime to drive the async readers and the validation
//! context of a tenant with default settings.

use std::sync::OnceLock;

use bulk_users::model::{TenantId, TenantSettings};
use bulk_users::validation::ValidationContext;

pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread runtime")
    })
}

pub fn context() -> &'static ValidationContext {
    static CONTEXT: OnceLock<ValidationContext> = OnceLock::new();
    CONTEXT.get_or_init(|| {
        ValidationContext::new(&TenantSettings::with_defaults(
            TenantId::parse("fuzz").expect("a tenant id"),
        ))
    })
}
