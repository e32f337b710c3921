//! A durable work queue in the SQLite database, with leases like SQS's visibility timeout.

use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{params, TransactionBehavior};

use super::store::{from_json, to_json, Db};
use crate::model::{Timestamp, WorkItem};
use crate::ports::{StoreError, StoreResult, WorkQueue};

/// A message taken from the queue, invisible to other leasers until its lease runs out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeasedWork {
    /// Identifies the message for [`SqliteWorkQueue::ack`] and [`SqliteWorkQueue::retry_later`].
    pub receipt: i64,
    pub item: WorkItem,
    /// How many times the message has been leased, this lease included.
    pub receive_count: u32,
}

/// The queue's messages live in the `work_queue` table of the [`super::SqliteStore`] database.
#[derive(Clone)]
pub struct SqliteWorkQueue {
    db: Db,
}

fn now_millis() -> i64 {
    Timestamp::now().unix_millis()
}

fn duration_millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

impl SqliteWorkQueue {
    pub(super) fn new(db: Db) -> SqliteWorkQueue {
        SqliteWorkQueue { db }
    }

    /// Leases up to `max` visible messages, oldest first, hiding them for `lease_for`.
    pub async fn lease(&self, max: usize, lease_for: Duration) -> StoreResult<Vec<LeasedWork>> {
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        self.db
            .call(move |conn| {
                let now = now_millis();
                let until = now.saturating_add(duration_millis(lease_for));
                // One statement picks and hides the messages: a concurrent leaser cannot get them.
                let mut stmt = conn.prepare_cached(
                    "UPDATE work_queue SET visible_at = ?2, receive_count = receive_count + 1 \
                     WHERE id IN (SELECT id FROM work_queue WHERE visible_at <= ?1 \
                                  ORDER BY id LIMIT ?3) \
                     RETURNING id, body, receive_count",
                )?;
                let mut rows = stmt.query(params![now, until, max])?;
                let mut leased = Vec::new();
                while let Some(row) = rows.next()? {
                    let body: String = row.get(1)?;
                    leased.push(LeasedWork {
                        receipt: row.get(0)?,
                        item: from_json("work item", &body)?,
                        receive_count: row.get(2)?,
                    });
                }
                leased.sort_by_key(|work| work.receipt);
                Ok(leased)
            })
            .await
    }

    /// Removes a message for good (its work is done).
    pub async fn ack(&self, receipt: i64) -> StoreResult<()> {
        self.db
            .call(move |conn| {
                conn.execute("DELETE FROM work_queue WHERE id = ?1", [receipt])?;
                Ok(())
            })
            .await
    }

    /// Ends a lease early: the message becomes visible again after `delay`.
    pub async fn retry_later(&self, receipt: i64, delay: Duration) -> StoreResult<()> {
        self.db
            .call(move |conn| {
                let visible_at = now_millis().saturating_add(duration_millis(delay));
                conn.execute(
                    "UPDATE work_queue SET visible_at = ?2 WHERE id = ?1",
                    params![receipt, visible_at],
                )?;
                Ok(())
            })
            .await
    }

    /// Makes every message visible now. For process start: the leases of a dead process are void.
    pub async fn release_all_leases(&self) -> StoreResult<()> {
        self.db
            .call(|conn| {
                conn.execute(
                    "UPDATE work_queue SET visible_at = ?1 WHERE visible_at > ?1",
                    [now_millis()],
                )?;
                Ok(())
            })
            .await
    }

    /// How many messages the queue holds, leased or not.
    pub async fn pending(&self) -> StoreResult<u64> {
        self.db
            .call(|conn| {
                Ok(conn.query_row("SELECT COUNT(*) FROM work_queue", [], |row| row.get(0))?)
            })
            .await
    }
}

#[async_trait]
impl WorkQueue for SqliteWorkQueue {
    async fn enqueue(&self, items: &[WorkItem]) -> StoreResult<()> {
        let bodies = items
            .iter()
            .map(to_json)
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.db
            .call(move |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                {
                    let now = now_millis();
                    let mut insert = tx.prepare_cached(
                        "INSERT INTO work_queue (body, enqueued_at, visible_at) \
                         VALUES (?1, ?2, ?2)",
                    )?;
                    for body in &bodies {
                        insert.execute(params![body, now])?;
                    }
                }
                tx.commit()?;
                Ok(())
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::super::store::testing::{store, tenant};
    use super::*;

    const LONG: Duration = Duration::from_secs(60);

    fn item(chunk: u32) -> WorkItem {
        WorkItem {
            tenant: tenant("acme"),
            job_id: 1,
            chunk,
            first_row: u64::from(chunk) * 10,
            rows: 10,
            byte_offset: u64::from(chunk) * 100,
        }
    }

    fn chunks(leased: &[LeasedWork]) -> Vec<u32> {
        leased.iter().map(|work| work.item.chunk).collect()
    }

    #[tokio::test]
    async fn leases_oldest_first_and_hides_leased_messages() {
        let (_dir, store) = store();
        let queue = store.work_queue();
        queue
            .enqueue(&(0..5).map(item).collect::<Vec<_>>())
            .await
            .unwrap();
        assert_eq!(queue.pending().await.unwrap(), 5);

        let first = queue.lease(2, LONG).await.unwrap();
        assert_eq!(chunks(&first), vec![0, 1]);
        assert_eq!(first[0].item, item(0));
        assert!(first.iter().all(|work| work.receive_count == 1));
        assert_eq!(chunks(&queue.lease(10, LONG).await.unwrap()), vec![2, 3, 4]);
        assert!(queue.lease(10, LONG).await.unwrap().is_empty());
        assert_eq!(queue.pending().await.unwrap(), 5);

        queue.ack(first[0].receipt).await.unwrap();
        assert_eq!(queue.pending().await.unwrap(), 4);
        queue
            .retry_later(first[1].receipt, Duration::ZERO)
            .await
            .unwrap();
        let again = queue.lease(10, LONG).await.unwrap();
        assert_eq!(chunks(&again), vec![1]);
        assert_eq!(again[0].receive_count, 2);
    }

    #[tokio::test]
    async fn retry_later_waits_and_expired_leases_come_back() {
        let (_dir, store) = store();
        let queue = store.work_queue();
        queue.enqueue(&[item(0), item(1)]).await.unwrap();
        let leased = queue.lease(1, Duration::from_millis(30)).await.unwrap();
        let other = queue.lease(1, LONG).await.unwrap();
        queue
            .retry_later(other[0].receipt, Duration::from_millis(30))
            .await
            .unwrap();
        assert!(queue.lease(10, LONG).await.unwrap().is_empty());
        tokio::time::sleep(Duration::from_millis(60)).await;
        let back = queue.lease(10, LONG).await.unwrap();
        assert_eq!(chunks(&back), vec![0, 1]);
        assert_eq!(back[0].receipt, leased[0].receipt);
    }

    #[tokio::test]
    async fn release_all_leases_makes_everything_visible() {
        let (_dir, store) = store();
        let queue = store.work_queue();
        queue.enqueue(&[item(0), item(1), item(2)]).await.unwrap();
        queue.lease(2, LONG).await.unwrap();
        queue.release_all_leases().await.unwrap();
        let leased = queue.lease(10, LONG).await.unwrap();
        assert_eq!(chunks(&leased), vec![0, 1, 2]);
        let counts: Vec<_> = leased.iter().map(|work| work.receive_count).collect();
        assert_eq!(counts, vec![2, 2, 1]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_leasers_never_share_a_message() {
        let (_dir, store) = store();
        let queue = store.work_queue();
        queue
            .enqueue(&(0..100).map(item).collect::<Vec<_>>())
            .await
            .unwrap();
        let leasers: Vec<_> = (0..8)
            .map(|_| {
                let queue = queue.clone();
                tokio::spawn(async move {
                    let mut got = Vec::new();
                    loop {
                        let batch = queue.lease(3, LONG).await.unwrap();
                        if batch.is_empty() {
                            return got;
                        }
                        got.extend(chunks(&batch));
                    }
                })
            })
            .collect();
        let mut all = Vec::new();
        for leaser in leasers {
            all.extend(leaser.await.unwrap());
        }
        all.sort_unstable();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
    }
}
