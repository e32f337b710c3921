//! The `WorkQueue` contract: every work item enqueued is delivered to the processor, however
//! many are enqueued at once (SQS takes 10 per request).

use bulk_users::model::WorkItem;

use crate::fixtures::{plan, tenant, Adapters};

contracts!(Threaded: work_items_are_delivered_whatever_their_number);

async fn work_items_are_delivered_whatever_their_number(adapters: Adapters) {
    let items: Vec<WorkItem> = plan(25, 100).work_items(&tenant("acme"), 7, 2_450);
    assert_eq!(items.len(), 25);
    adapters.ports.queue.enqueue(&items).await.unwrap();
    adapters.ports.queue.enqueue(&[]).await.unwrap();
    assert_eq!(adapters.delivered_work(items.len()).await, items);
}
