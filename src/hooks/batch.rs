//! Publish hook calls in batches (`--publish-hook-batch N`): messages that
//! wait for a free slot go together, up to N, in one call whose body is a
//! JSON array of the single-call bodies; the answer is an array in the same
//! order, each element the single call's answer with `"status"` when it is
//! not 200. A batch goes as soon as a slot is free, so an idle hook adds no
//! delay and a busy one pays one round trip for many messages.

use std::sync::Arc;

use bytes::Bytes;
use http::Uri;
use serde_json::{Map, Value};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::time::{Instant, timeout_at};

use super::client::{Answer, HookClient, HookError};
use crate::telemetry;

/// How many messages may wait for a batch; beyond that a call is busy.
const QUEUE: usize = 8192;

/// One message's call, waiting for its batch.
struct Waiting {
    body: Vec<u8>,
    deadline: Instant,
    reply: oneshot::Sender<Result<Answer, HookError>>,
}

/// The queue of a batched hook, and the task that sends its batches.
pub(crate) struct Batcher {
    tx: mpsc::Sender<Waiting>,
}

impl Batcher {
    /// Starts the sender task for the hook at `url` (must run in a Tokio
    /// runtime): at most `slots` calls at once, `max` messages in each.
    pub(crate) fn spawn(
        client: HookClient,
        url: Uri,
        label: &'static str,
        max: usize,
        slots: usize,
    ) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let sender = Sender {
            client,
            url,
            label,
            max,
        };
        tokio::spawn(sender.run(rx, Arc::new(Semaphore::new(slots))));
        Self { tx }
    }

    /// Queues one message's body; its answer, or why there is none.
    pub(crate) async fn submit(
        &self,
        body: Vec<u8>,
        deadline: Instant,
        timeout_ms: u128,
    ) -> Result<Answer, HookError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .try_send(Waiting {
                body,
                deadline,
                reply,
            })
            .map_err(|_| HookError::Queued(QUEUE))?;
        match timeout_at(deadline, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(HookError::Unreachable("the batch sender stopped".into())),
            Err(_) => Err(HookError::Timeout(timeout_ms)),
        }
    }
}

struct Sender {
    client: HookClient,
    url: Uri,
    label: &'static str,
    max: usize,
}

impl Sender {
    /// Takes a slot, then everything waiting (up to `max`), and sends it;
    /// while every slot is taken, the queue fills the next batch.
    async fn run(self, mut rx: mpsc::Receiver<Waiting>, slots: Arc<Semaphore>) {
        let this = Arc::new(self);
        while let Some(first) = rx.recv().await {
            let slot = slots
                .clone()
                .acquire_owned()
                .await
                .expect("the semaphore is never closed");
            let mut batch = vec![first];
            while batch.len() < this.max {
                match rx.try_recv() {
                    Ok(w) => batch.push(w),
                    Err(_) => break,
                }
            }
            // Callers whose deadline passed have their answer (a timeout).
            batch.retain(|w| !w.reply.is_closed());
            if batch.is_empty() {
                continue;
            }
            tokio::spawn(this.clone().send(batch, slot));
        }
    }

    async fn send(self: Arc<Self>, batch: Vec<Waiting>, _slot: OwnedSemaphorePermit) {
        let n = batch.len();
        telemetry::hook_batch(self.label, n);
        let deadline = batch
            .iter()
            .map(|w| w.deadline)
            .min()
            .expect("a batch is never empty");
        let mut body =
            Vec::with_capacity(batch.iter().map(|w| w.body.len() + 1).sum::<usize>() + 1);
        body.push(b'[');
        for (i, w) in batch.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(&w.body);
        }
        body.push(b']');
        let answers = self
            .client
            .post(&self.url, self.label, body, deadline, Some(n))
            .await
            .and_then(|a| split(a, n));
        match answers {
            Ok(answers) => {
                for (w, a) in batch.into_iter().zip(answers) {
                    let _ = w.reply.send(Ok(a));
                }
            }
            Err(e) => {
                for w in batch {
                    let _ = w.reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// A batch's answer as one answer per message: 200 with an array of `n`
/// objects, each the single call's answer body plus its `"status"` when not
/// 200. Anything else is a failure of every message in the batch.
fn split(answer: Answer, n: usize) -> Result<Vec<Answer>, HookError> {
    if answer.status != 200 {
        return Err(HookError::Status(answer.status));
    }
    let elements: Vec<Map<String, Value>> = serde_json::from_slice(&answer.body)
        .map_err(|e| HookError::Answer(format!("a batch's answer is an array of objects: {e}")))?;
    if elements.len() != n {
        return Err(HookError::Answer(format!(
            "{} answers to a batch of {n}",
            elements.len()
        )));
    }
    elements
        .into_iter()
        .map(|mut m| {
            let status = match m.remove("status") {
                None => 200,
                Some(v) => v
                    .as_u64()
                    .and_then(|s| u16::try_from(s).ok())
                    .ok_or_else(|| {
                        HookError::Answer(format!("status {v} is not an HTTP status"))
                    })?,
            };
            let body = serde_json::to_vec(&m).expect("JSON from JSON");
            Ok(Answer {
                status,
                body: Bytes::from(body),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> Answer {
        Answer {
            status,
            body: Bytes::copy_from_slice(body.as_bytes()),
        }
    }

    #[test]
    fn a_batch_answer_splits_in_order_with_each_status() {
        let a = split(
            answer(
                200,
                r#"[{}, {"status":403,"reason":"no"}, {"msgBody":{"t":"HI"}}]"#,
            ),
            3,
        )
        .unwrap();
        let got: Vec<(u16, String)> = a
            .iter()
            .map(|a| (a.status, String::from_utf8(a.body.to_vec()).unwrap()))
            .collect();
        assert_eq!(
            got,
            [
                (200, "{}".to_string()),
                (403, r#"{"reason":"no"}"#.to_string()),
                (200, r#"{"msgBody":{"t":"HI"}}"#.to_string()),
            ]
        );
    }

    #[test]
    fn a_batch_answer_outside_the_contract_fails_the_whole_batch() {
        for (status, body, why) in [
            (500, "[]", "HTTP 500"),
            (200, "{}", "array"),
            (200, "[{}]", "1 answers to a batch of 2"),
            (200, r#"[{}, {"status":"x"}]"#, "not an HTTP status"),
            (200, "[{}, 3]", "array of objects"),
        ] {
            let e = split(answer(status, body), 2).unwrap_err().to_string();
            assert!(e.contains(why), "{body}: {e}");
        }
    }
}
