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

use futures::future::OptionFuture;

/// The first poll is running.
const POLLING: u8 = 0;
/// Woken while its first poll ran: the poller spawns it.
const WOKEN: u8 = 1;
/// Waiting after its first poll: the first wake-up spawns it.
const PARKED: u8 = 2;
/// Handed to a task.
const SPAWNED: u8 = 3;

/// A delivery's storage: a delivery that finishes on its first poll leaves it empty for the
/// next one (see [`Runner`]).
type Storage<F> = Pin<Box<OptionFuture<F>>>;

type Delivery = Pin<Box<dyn Future<Output = Option<()>> + Send + 'static>>;

/// A delivery between its first poll and its task.
struct Parked {
    state: AtomicU8,
    delivery: Mutex<Option<Delivery>>,
    runtime: tokio::runtime::Handle,
}

impl Parked {
    fn new() -> Self {
        Self {
            state: AtomicU8::new(POLLING),
            delivery: Mutex::new(None),
            runtime: tokio::runtime::Handle::current(),
        }
    }

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

/// Runs one pull loop's deliveries (all of one type, `F`) there until they first wait.
///
/// A delivery that finishes on its first poll (a handler that never waits) leaves its storage
/// and its first-poll waker to the next one: a delivery's future is a few kilobytes, above
/// what the allocator keeps at hand for quick reuse, and allocating and freeing it for every
/// event was a measurable share of a fast handler's cost. One that waits takes both with it.
pub(super) struct Runner<F> {
    spare: Option<Storage<F>>,
    waker: Option<Arc<Parked>>,
}

impl<F> Default for Runner<F> {
    fn default() -> Self {
        Self {
            spare: None,
            waker: None,
        }
    }
}

impl<F: Future<Output = ()> + Send + 'static> Runner<F> {
    /// Polls `delivery` here once; if it waits, it continues as a task spawned when it is
    /// woken.
    pub(super) fn run(&mut self, delivery: F) {
        let mut storage = self
            .spare
            .take()
            .unwrap_or_else(|| Box::pin(OptionFuture::from(None)));
        storage.as_mut().set(OptionFuture::from(Some(delivery)));
        let parked = self.waker.take().unwrap_or_else(|| Arc::new(Parked::new()));
        let waker = Waker::from(parked.clone());
        if storage
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_ready()
        {
            drop(waker);
            // Drops the finished delivery in place; its storage serves the next one.
            storage.as_mut().set(OptionFuture::from(None));
            self.spare = Some(storage);
            self.keep_waker(parked);
            return;
        }
        drop(waker);
        *parked
            .delivery
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(storage);
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

    /// Keeps the waker of a delivery that finished on its first poll for the next one, unless
    /// something still holds a clone of it (a wake-up from it must not reach the next one).
    fn keep_waker(&mut self, mut parked: Arc<Parked>) {
        if let Some(p) = Arc::get_mut(&mut parked) {
            *p.state.get_mut() = POLLING;
            self.waker = Some(parked);
        }
    }
}

/// Polls `delivery` here once; if it waits, it continues as a task spawned when it is woken.
#[cfg(test)]
fn run(delivery: impl Future<Output = ()> + Send + 'static) {
    Runner::default().run(delivery);
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
        assert!(
            reaches(&done, 104).await,
            "finished {} of 104",
            done.load(Ordering::SeqCst)
        );
    }

    /// Whether `count` reaches `n` within a second.
    async fn reaches(count: &AtomicUsize, n: usize) -> bool {
        for _ in 0..200 {
            if count.load(Ordering::SeqCst) == n {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        false
    }

    /// A delivery that kept its first-poll waker (and finished at once) does not hand that
    /// waker on: waking it later must not start the next delivery of the same runner, which
    /// runs, like every other, in storage left by one that finished inline.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_kept_waker_is_not_handed_to_the_next_delivery() {
        type Boxed = Pin<Box<dyn Future<Output = ()> + Send>>;
        let mut runner: Runner<Boxed> = Runner::default();
        let kept: Arc<Mutex<Option<Waker>>> = Arc::default();
        let k = kept.clone();
        runner.run(Box::pin(futures::future::poll_fn(move |cx| {
            *k.lock().unwrap() = Some(cx.waker().clone());
            std::task::Poll::Ready(())
        })));
        for _ in 0..10 {
            runner.run(Box::pin(async {}));
        }
        let polls = Arc::new(AtomicUsize::new(0));
        let done = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (p, d) = (polls.clone(), done.clone());
        let mut rx = rx;
        runner.run(Box::pin(futures::future::poll_fn(move |cx| {
            p.fetch_add(1, Ordering::SeqCst);
            match Pin::new(&mut rx).poll(cx) {
                std::task::Poll::Ready(_) => {
                    d.fetch_add(1, Ordering::SeqCst);
                    std::task::Poll::Ready(())
                }
                std::task::Poll::Pending => std::task::Poll::Pending,
            }
        })));
        assert_eq!(polls.load(Ordering::SeqCst), 1, "polled once, waiting");
        kept.lock().unwrap().take().expect("kept waker").wake();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            polls.load(Ordering::SeqCst),
            1,
            "the old waker started the waiting delivery"
        );
        tx.send(()).expect("send");
        assert!(
            reaches(&done, 1).await,
            "the waiting delivery did not finish"
        );
    }
}
