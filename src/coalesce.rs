//! Requests that arrive while a batch is being handled wait for the next one: callers that
//! finish together share one round trip (one DeleteObjects request, one PostgreSQL
//! transaction, one syncfs) instead of paying one each. A caller alone is a batch of one, at
//! once.

use std::future::Future;
use std::sync::Mutex;

use tokio::sync::oneshot;

pub struct Coalescer<T, R> {
    waiting: Mutex<Vec<(T, oneshot::Sender<R>)>>,
    /// Held while a batch runs.
    turn: tokio::sync::Mutex<()>,
}

impl<T, R> Default for Coalescer<T, R> {
    fn default() -> Self {
        Self {
            waiting: Mutex::new(Vec::new()),
            turn: tokio::sync::Mutex::new(()),
        }
    }
}

impl<T, R> Coalescer<T, R> {
    /// Queues `item`; whoever gets the turn runs `handle` over everything queued, which must
    /// answer every item, in order. None only if a batch was dropped without answering (its
    /// caller was cancelled mid-batch).
    pub async fn submit<F, Fut>(&self, item: T, handle: F) -> Option<R>
    where
        F: FnOnce(Vec<T>) -> Fut,
        Fut: Future<Output = Vec<R>>,
    {
        let (tx, mut rx) = oneshot::channel();
        self.waiting.lock().expect("coalescer poisoned").push((item, tx));
        let _turn = self.turn.lock().await;
        if let Ok(answered) = rx.try_recv() {
            return Some(answered);
        }
        let batch = std::mem::take(&mut *self.waiting.lock().expect("coalescer poisoned"));
        let (items, replies): (Vec<T>, Vec<_>) = batch.into_iter().unzip();
        let answers = handle(items).await;
        debug_assert_eq!(answers.len(), replies.len(), "a batch answers every item");
        for (reply, answer) in replies.into_iter().zip(answers) {
            // A caller that stopped waiting has nothing left to tell.
            drop(reply.send(answer));
        }
        rx.await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn callers_waiting_together_share_batches_and_get_their_own_answers() {
        let coalescer = Arc::new(Coalescer::<u32, u32>::default());
        let batches = Arc::new(AtomicUsize::new(0));
        let calls: Vec<_> = (0..100u32)
            .map(|n| {
                let (coalescer, batches) = (Arc::clone(&coalescer), Arc::clone(&batches));
                tokio::spawn(async move {
                    let answer = coalescer
                        .submit(n, |items| async move {
                            batches.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                            items.into_iter().map(|i| i * 2).collect()
                        })
                        .await;
                    (n, answer)
                })
            })
            .collect();
        for call in calls {
            let (n, answer) = call.await.unwrap();
            assert_eq!(answer, Some(n * 2));
        }
        let batches = batches.load(Ordering::SeqCst);
        assert!((1..100).contains(&batches), "100 callers ran {batches} batches");
    }
}
