//! A group's handler slots in one process: the slots each partition takes (weighted by tenant
//! weights), and each partition's backlog as its deliveries report it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// One handler slot taken by a partition. With tenant weights in use it also counts in the
/// partition's `held` slots (reserved or running), so a partition never holds more than its
/// weighted share; without weights nothing is counted.
pub(crate) struct Slot {
    _permit: OwnedSemaphorePermit,
    held: Option<Arc<Held>>,
}

/// A partition's slots, counted while tenant weights are in use.
#[derive(Default)]
pub(crate) struct Held {
    pub(super) count: AtomicUsize,
    /// Woken when one of the partition's slots is freed.
    pub(super) freed: tokio::sync::Notify,
}

impl Held {
    pub(super) fn count(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }
}

impl Slot {
    pub(super) fn new(permit: OwnedSemaphorePermit, held: Option<&Arc<Held>>) -> Self {
        if let Some(h) = held {
            h.count.fetch_add(1, Ordering::AcqRel);
        }
        Self {
            _permit: permit,
            held: held.cloned(),
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(h) = &self.held {
            h.count.fetch_sub(1, Ordering::AcqRel);
            h.freed.notify_waiters();
        }
    }
}

/// The handler slots of one group in this process, shared by its partition loops.
pub(crate) struct Slots {
    pub(super) permits: Arc<Semaphore>,
    pub(super) concurrency: usize,
    /// The weights (see [`crate::weights`]) of the partitions whose last delivery said more of
    /// their events are waiting, summed: with every weight 1, the number of such partitions.
    pub(super) busy: AtomicUsize,
}

impl Slots {
    pub(super) fn new(concurrency: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(concurrency)),
            concurrency,
            busy: AtomicUsize::new(0),
        }
    }

    /// The share of the slots of a partition of `weight`: the concurrency in proportion to its
    /// weight among the busy partitions' (all of it while no other partition has a backlog).
    pub(super) fn share(&self, weight: usize) -> usize {
        let busy = self.busy.load(Ordering::Acquire).max(weight).max(1);
        (self.concurrency * weight).div_ceil(busy)
    }

    /// True when half of this partition's share of the slots is free: enough for a second pull
    /// to be worth its round trip.
    pub(super) fn refill_ready(&self, weight: usize) -> bool {
        self.permits.available_permits() >= (self.share(weight) / 2).max(1)
    }

    /// Reserves free slots for a pull on a partition of `weight` with `pending` events waiting:
    /// at most its share of the concurrency (with `held`, the partition's slots counted while
    /// tenant weights are in use: its share minus those it holds). Never waits: a slot that
    /// frees up goes first to a partition's delivery waiting for one.
    pub(super) fn reserve(
        &self,
        pending: u64,
        weight: usize,
        held: Option<&Arc<Held>>,
    ) -> Vec<Slot> {
        if pending == 0 {
            return Vec::new();
        }
        let share = match held {
            Some(h) => self.share(weight).saturating_sub(h.count()),
            None => self.share(weight),
        };
        let want = share
            .min(usize::try_from(pending).unwrap_or(usize::MAX))
            .min(self.permits.available_permits());
        let Ok(n) = u32::try_from(want) else {
            return Vec::new();
        };
        if n == 0 {
            return Vec::new();
        }
        match self.permits.clone().try_acquire_many_owned(n) {
            Ok(permit) => split_permit(permit)
                .into_iter()
                .map(|p| Slot::new(p, held))
                .collect(),
            Err(_) => Vec::new(),
        }
    }
}

/// A partition's backlog as its last delivery reported it, and its weight (the weight of the
/// tenant of that delivery), counted in [`Slots::busy`] while it has a backlog.
pub(super) struct Backlog<'a> {
    pub(super) slots: &'a Slots,
    pub(super) pending: u64,
    pub(super) weight: usize,
}

impl Backlog<'_> {
    pub(super) fn set(&mut self, pending: u64, weight: usize) {
        let counted = if self.pending > 0 { self.weight } else { 0 };
        let counts = if pending > 0 { weight } else { 0 };
        if counts > counted {
            self.slots
                .busy
                .fetch_add(counts - counted, Ordering::AcqRel);
        } else if counted > counts {
            self.slots
                .busy
                .fetch_sub(counted - counts, Ordering::AcqRel);
        }
        self.pending = pending;
        self.weight = weight;
    }
}

impl Drop for Backlog<'_> {
    fn drop(&mut self) {
        self.set(0, self.weight);
    }
}

/// Splits a permit for several slots into one permit per slot.
pub(super) fn split_permit(mut permit: OwnedSemaphorePermit) -> Vec<OwnedSemaphorePermit> {
    let mut out = Vec::with_capacity(permit.num_permits());
    while permit.num_permits() > 1 {
        if let Some(one) = permit.split(1) {
            out.push(one);
        }
    }
    out.push(permit);
    out
}
