//! The acks of handled events, sent together.
//!
//! Each handled event is acked by a publish on its reply subject. Sent as each run ends, every
//! ack wakes the connection's task and costs a write of its own (a system call and a pass
//! through the network stack): with handlers that await, runs end spread out in time and most
//! writes carry one ack. Here a handled delivery queues its ack, and one task per worker sends
//! what is queued as soon as it gets its turn on the runtime, so the connection writes the
//! acks of the runs that ended meanwhile at once. An ack waits for one pass of the scheduler at
//! most; a stopping worker sends every queued ack before it closes its connection. Naks,
//! terminations and heartbeats are sent at once, as before.

use std::sync::{Arc, Mutex, PoisonError};

use async_nats::jetstream::AckKind;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::connection::Connection;

/// Acks waiting for the worker's ack task.
#[derive(Debug, Default)]
pub(crate) struct Acks {
    queue: Mutex<Vec<async_nats::Subject>>,
    queued: Notify,
}

impl Acks {
    /// Queues the ack of the delivery whose reply subject is `reply`.
    pub(crate) fn ack(&self, reply: async_nats::Subject) {
        let first = {
            let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            queue.push(reply);
            queue.len() == 1
        };
        if first {
            self.queued.notify_one();
        }
    }

    fn take(&self) -> Vec<async_nats::Subject> {
        std::mem::take(&mut *self.queue.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Sends queued acks until `stop`, then the last of them.
pub(crate) async fn send_queued(acks: Arc<Acks>, conn: Connection, stop: CancellationToken) {
    loop {
        // Stopping first: its pass takes whatever is queued, notified or not.
        let stopping = tokio::select! {
            biased;
            () = stop.cancelled() => true,
            () = acks.queued.notified() => false,
        };
        if !stopping {
            // Runs that end while other tasks take their turn add their acks to this send.
            tokio::task::yield_now().await;
        }
        for reply in acks.take() {
            super::send_ack(&conn, reply, AckKind::Ack).await;
        }
        if stopping {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::NatsServer;
    use futures::StreamExt;
    use std::time::Duration;

    /// Every queued ack reaches its reply subject as `+ACK`, and the stopping pass sends what is
    /// still queued.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn queued_acks_are_sent_and_the_last_ones_on_stop() {
        let server = NatsServer::start().expect("nats-server");
        let conn = server.connect().await.expect("connect");
        let mut replies = conn.client().subscribe("reply.>").await.expect("subscribe");
        conn.client().flush().await.expect("flush");
        let acks = Arc::new(Acks::default());
        let stop = CancellationToken::new();
        let task = tokio::spawn(send_queued(acks.clone(), conn.clone(), stop.clone()));
        for n in 0..100 {
            acks.ack(format!("reply.{n}").into());
        }
        let mut seen = std::collections::HashSet::new();
        while seen.len() < 100 {
            let msg = tokio::time::timeout(Duration::from_secs(5), replies.next())
                .await
                .expect("an ack within 5 s")
                .expect("subscription open");
            assert_eq!(&msg.payload[..], b"+ACK");
            seen.insert(msg.subject.to_string());
        }
        // Stop the task, then queue what the last handlers acked and run the stopping pass
        // on its own: it sends them before it ends.
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the task ends once stopped")
            .expect("ack task");
        for n in 100..150 {
            acks.ack(format!("reply.{n}").into());
        }
        tokio::time::timeout(
            Duration::from_secs(5),
            send_queued(acks.clone(), conn.clone(), stop.clone()),
        )
        .await
        .expect("a stopped task ends after one pass");
        conn.client().flush().await.expect("flush");
        while seen.len() < 150 {
            let msg = tokio::time::timeout(Duration::from_secs(5), replies.next())
                .await
                .expect("the last acks within 5 s")
                .expect("subscription open");
            seen.insert(msg.subject.to_string());
        }
        assert!((0..150).all(|n| seen.contains(&format!("reply.{n}"))));
    }
}
