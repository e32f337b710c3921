//! `bulk-local`: every route of the bulk user API on one local process, over the embedded store,
//! with the processor running as an in-process worker over a durable queue.

use bulk_local::{Error, LocalServer};
use bulk_users::local::LocalSettings;
use bulk_users::service::ServiceConfig;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let logs = tracing_subscriber::fmt().with_env_filter(
        tracing_subscriber::EnvFilter::try_from_env("BULK_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
    );
    // The lines carry the request's or chunk's tenant and job as span fields, in either format;
    // JSON is what the Lambda functions write.
    if std::env::var("BULK_LOG_FORMAT").is_ok_and(|format| format.eq_ignore_ascii_case("json")) {
        logs.json().init();
    } else {
        logs.init();
    }
    let settings = LocalSettings::from_env()?;
    let server = LocalServer::start(&settings, ServiceConfig::from_env()?).await?;
    if let Some(secret) = &server.created_secret {
        println!(
            "Created an API credential for tenant '{}' (shown once, store it now):\n  tenant: {}\n  key id: {}\n  secret: {}",
            settings.tenant, settings.tenant, settings.key_id, secret
        );
    }
    println!(
        "bulk-local listening on http://{} (tenant '{}', data in {})",
        server.address,
        settings.tenant,
        settings.data_dir.display()
    );
    shutdown_signal().await;
    server.stop().await;
    Ok(())
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(_) => return std::future::pending().await,
        };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}
