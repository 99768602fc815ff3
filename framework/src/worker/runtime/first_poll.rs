//! Running a delivery in the pull loop until it first waits, then as a task of its own that
//! is spawned when the delivery is woken.
//!
//! A handler that finishes at once costs no task. One that waits used to be spawned right
//! after its first poll: the new task was scheduled at once (waking a worker thread) only to be
//! polled again and find its handler still waiting, since what its first poll registered woke
//! the pull loop, not the task. Here the first poll registers a waker of its own, and the task
//! is spawned by the first wake-up: its first poll is the one with work to do. Tokio has no way
//! to spawn a task that starts parked, hence this small hand-over.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Wake, Waker};

/// The first poll is running.
const POLLING: u8 = 0;
/// Woken while its first poll ran: the poller spawns it.
const WOKEN: u8 = 1;
/// Waiting after its first poll: the first wake-up spawns it.
const PARKED: u8 = 2;
/// Handed to a task.
const SPAWNED: u8 = 3;

type Delivery = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// A delivery between its first poll and its task.
struct Parked {
    state: AtomicU8,
    delivery: Mutex<Option<Delivery>>,
    runtime: tokio::runtime::Handle,
}

impl Parked {
    fn spawn(&self) {
        let delivery = self
            .delivery
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(delivery) = delivery {
            drop(self.runtime.spawn(delivery));
        }
    }
}

impl Wake for Parked {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        match self
            .state
            .compare_exchange(PARKED, SPAWNED, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => self.spawn(),
            Err(POLLING) => {
                // Its first poll is still running: the poller sees the mark and spawns it.
                let _ = self.state.compare_exchange(
                    POLLING,
                    WOKEN,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                );
            }
            // Woken already, or a task runs it (and its own waker is what counts now).
            Err(_) => {}
        }
    }
}

/// Polls `delivery` here once; if it waits, it continues as a task spawned when it is woken.
pub(super) fn run(delivery: impl Future<Output = ()> + Send + 'static) {
    let parked = Arc::new(Parked {
        state: AtomicU8::new(POLLING),
        delivery: Mutex::new(None),
        runtime: tokio::runtime::Handle::current(),
    });
    let waker = Waker::from(parked.clone());
    let mut delivery: Delivery = Box::pin(delivery);
    if delivery
        .as_mut()
        .poll(&mut Context::from_waker(&waker))
        .is_ready()
    {
        return;
    }
    *parked
        .delivery
        .lock()
        .unwrap_or_else(PoisonError::into_inner) = Some(delivery);
    if parked
        .state
        .compare_exchange(POLLING, PARKED, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        // Woken during its first poll: it has work to do now.
        parked.state.store(SPAWNED, Ordering::Release);
        parked.spawn();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn finishes_inline_or_in_a_task_started_by_its_wake_up() {
        let done = Arc::new(AtomicUsize::new(0));
        // Finishes on its first poll: run here.
        let d = done.clone();
        run(async move {
            d.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(done.load(Ordering::SeqCst), 1);
        // Waits on a timer, a channel, and a wake-up during its own first poll.
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let d = done.clone();
        run(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            d.fetch_add(1, Ordering::SeqCst);
        });
        let d = done.clone();
        run(async move {
            let _ = rx.await;
            d.fetch_add(1, Ordering::SeqCst);
        });
        let d = done.clone();
        run(async move {
            tokio::task::yield_now().await;
            d.fetch_add(1, Ordering::SeqCst);
        });
        for _ in 0..100 {
            let d = done.clone();
            run(async move {
                tokio::time::sleep(Duration::from_millis(1)).await;
                tokio::task::yield_now().await;
                tokio::time::sleep(Duration::from_millis(1)).await;
                d.fetch_add(1, Ordering::SeqCst);
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            done.load(Ordering::SeqCst),
            103,
            "all but the one awaiting the channel"
        );
        tx.send(()).expect("send");
        for _ in 0..200 {
            if done.load(Ordering::SeqCst) == 104 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("finished {} of 104", done.load(Ordering::SeqCst));
    }
}
