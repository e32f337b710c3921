//! When a host must have answered (a Lambda invocation's deadline), and how long a chunk of
//! work may take: work begins a chunk only while that much is left, and hands the rest on
//! (back to the queue) instead of being stopped in the middle of it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The time a queued chunk may take at most, by default. A chunk of 1000 rows costs about 40
/// DynamoDB requests (the benchmark's figure), a few seconds at DynamoDB's latencies; 30 s
/// leaves room for throttling and retries, and the processor's 120 s timeout for at least
/// three chunks.
pub const CHUNK_BUDGET: Duration = Duration::from_secs(30);

/// The time a batch processed within a request (Huawei Workspace) may take for its chunk, by
/// default: its 200 users cost about ten DynamoDB requests, and the function answers within
/// API Gateway's 30 s.
pub const REQUEST_CHUNK_BUDGET: Duration = Duration::from_secs(10);

/// The variable that overrides a host's chunk budget, in seconds.
pub const CHUNK_BUDGET_VARIABLE: &str = "BULK_CHUNK_BUDGET_SECONDS";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    pub at: SystemTime,
    pub chunk_budget: Duration,
}

impl Deadline {
    /// A deadline `millis` after 1970 (as Lambda's runtime API gives it). `None` when it has
    /// passed already, which no live invocation's has: `cargo lambda watch` sends every
    /// invocation the same deadline, 600,000 ms after 1970.
    pub fn from_unix_millis(millis: u64, chunk_budget: Duration) -> Option<Deadline> {
        let at = UNIX_EPOCH + Duration::from_millis(millis);
        if at <= SystemTime::now() {
            tracing::debug!(deadline_ms = millis, "no deadline: it has passed already");
            return None;
        }
        Some(Deadline { at, chunk_budget })
    }

    /// Whether a chunk begun now ends before the deadline.
    pub fn allows_a_chunk(&self) -> bool {
        self.at
            .duration_since(SystemTime::now())
            .is_ok_and(|left| left >= self.chunk_budget)
    }
}

/// [`CHUNK_BUDGET_VARIABLE`] when set, else `default`.
pub fn chunk_budget_from_env(default: Duration) -> Result<Duration, String> {
    match std::env::var(CHUNK_BUDGET_VARIABLE) {
        Err(_) => Ok(default),
        Ok(text) => match text.trim().parse::<u64>() {
            Ok(seconds) if seconds > 0 => Ok(Duration::from_secs(seconds)),
            _ => Err(format!(
                "{CHUNK_BUDGET_VARIABLE} must be a positive number of seconds, got '{text}'"
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_begins_only_while_its_budget_is_left() {
        let now = SystemTime::now();
        let millis = |at: SystemTime| at.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
        let budget = Duration::from_secs(10);
        let roomy = Deadline::from_unix_millis(millis(now + Duration::from_secs(60)), budget);
        assert!(roomy.is_some_and(|deadline| deadline.allows_a_chunk()));
        let tight = Deadline::from_unix_millis(millis(now + Duration::from_secs(5)), budget);
        assert!(tight.is_some_and(|deadline| !deadline.allows_a_chunk()));
        assert_eq!(Deadline::from_unix_millis(600_000, budget), None);
    }
}
