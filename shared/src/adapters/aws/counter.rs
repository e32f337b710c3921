//! Counts the requests a DynamoDB client sends, by operation (retries included): an
//! interceptor for measuring what an operation costs (the benchmark, the tests of the list
//! routes' costs), or for metrics.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;

/// Requests by operation name (`GetItem`, `Query`, …); clones share the counts.
#[derive(Debug, Clone, Default)]
pub struct RequestCounter {
    counts: Arc<Mutex<BTreeMap<String, u64>>>,
}

impl RequestCounter {
    /// The counts so far.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The requests sent since `before` (a snapshot), by operation.
    pub fn since(&self, before: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
        self.snapshot()
            .into_iter()
            .map(|(operation, count)| {
                let earlier = before.get(&operation).copied().unwrap_or(0);
                (operation, count - earlier)
            })
            .filter(|(_, count)| *count > 0)
            .collect()
    }

    /// `client` with this counter counting its requests.
    pub fn counting(&self, client: &aws_sdk_dynamodb::Client) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::from_conf(
            client
                .config()
                .to_builder()
                .interceptor(self.clone())
                .build(),
        )
    }
}

impl Intercept for RequestCounter {
    fn name(&self) -> &'static str {
        "RequestCounter"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        // The JSON protocol names the operation in `X-Amz-Target: DynamoDB_20120810.PutItem`.
        let operation = context
            .request()
            .headers()
            .get("x-amz-target")
            .map(|target| target.rsplit('.').next().unwrap_or(target).to_owned())
            .unwrap_or_else(|| "unknown".to_owned());
        *self
            .counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .entry(operation)
            .or_insert(0) += 1;
        Ok(())
    }
}
