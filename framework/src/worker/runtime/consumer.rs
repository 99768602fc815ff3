//! The group's partition consumers: their configuration, creating or updating them, and what
//! is read once at start-up for all of them.

use std::collections::HashMap;

use async_nats::jetstream::{
    self,
    consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull},
};
use futures::StreamExt;

use super::{GroupRuntime, HANDBACK_ALLOWANCE, Ordering, StartFrom};
use crate::partition::consumer_name;
use crate::topology::EVENTS_STREAM;

/// The stream and the group's consumers as read once at start-up.
pub(crate) struct Known {
    stream: jetstream::stream::Stream,
    /// The group's consumers (partitions and the one from before partitions) by name.
    infos: HashMap<String, jetstream::consumer::Info>,
}

impl<S: Clone + Send + Sync + 'static> GroupRuntime<S> {
    /// The configuration of the group's consumer for partition `p`. `max_deliver` is the
    /// largest attempt count of its handlers plus [`HANDBACK_ALLOWANCE`] deliveries for
    /// hand-backs (see [`super::handback`]); there is no `backoff` list because retry delays are
    /// Nak delays. `max_ack_pending` holds per partition.
    fn consumer_config(&self, p: u32) -> pull::Config {
        let name = consumer_name(&self.name, p);
        pull::Config {
            durable_name: Some(name.clone()),
            name: Some(name),
            filter_subjects: crate::partition::filter_subjects(
                self.routes.keys().map(String::as_str),
                self.config.lane.as_deref(),
                p,
            ),
            ack_policy: AckPolicy::Explicit,
            ack_wait: self.config.ack_wait,
            max_deliver: self.max_deliver + i64::from(HANDBACK_ALLOWANCE),
            max_ack_pending: self.config.max_ack_pending,
            deliver_policy: match self.config.start_from {
                StartFrom::Beginning => DeliverPolicy::All,
                StartFrom::Now => DeliverPolicy::New,
            },
            ..Default::default()
        }
    }

    /// Creates the group's consumer for partition `p` or brings an existing one up to date.
    /// The deliver policy of an existing consumer is kept: it cannot change.
    ///
    /// `known`, when given, is what [`prefetch`](Self::prefetch) read for all partitions at
    /// once (at start-up: two requests instead of three per partition).
    pub(super) async fn ensure_consumer(
        &self,
        p: u32,
        known: Option<&Known>,
    ) -> Result<PullConsumer, Box<dyn std::error::Error + Send + Sync>> {
        let name = consumer_name(&self.name, p);
        if self.config.bind_only {
            let consumer: PullConsumer = self
                .conn
                .jetstream()
                .get_consumer_from_stream(&name, EVENTS_STREAM)
                .await?;
            self.note_ack_floor(p, consumer.cached_info().ack_floor.stream_sequence);
            return Ok(consumer);
        }
        let stream = match known {
            Some(k) => k.stream.clone(),
            None => self.conn.jetstream().get_stream(EVENTS_STREAM).await?,
        };
        let mut config = self.consumer_config(p);
        let earlier = crate::layout::earlier_layout_present(stream.cached_info());
        if earlier {
            config
                .filter_subjects
                .extend(crate::layout::earlier_filters(
                    self.routes.keys().map(String::as_str),
                    self.config.lane.as_deref(),
                    p,
                ));
        }
        let existing = match known {
            Some(k) => k
                .infos
                .get(&name)
                .cloned()
                .ok_or_else(|| "not found".to_owned()),
            None => stream.consumer_info(&name).await.map_err(|e| e.to_string()),
        };
        match existing {
            Ok(info) => {
                config.deliver_policy = info.config.deliver_policy;
                // An operator's pause of the group (`pause::pause_group`) outlives restarts.
                config.pause_until = info.config.pause_until;
                // Old and new versions of the group run side by side in a rolling deploy: keep
                // the types the other version added, and its larger delivery limit, rather than
                // overwriting each other's consumer back and forth. (A type removed from every
                // version stays in the filter; its events end as `unknown-type` dead letters.)
                // Filters of an earlier subject layout are kept only while the stream may
                // hold such events (see `crate::layout`).
                let mut filters: std::collections::BTreeSet<String> =
                    config.filter_subjects.drain(..).collect();
                let ours = filters.len();
                let found = info
                    .config
                    .filter_subjects
                    .iter()
                    .chain(Some(&info.config.filter_subject).filter(|f| !f.is_empty()));
                filters.extend(
                    found
                        .filter(|f| earlier || crate::partition::is_stored_form(f))
                        .cloned(),
                );
                if filters.len() > ours {
                    tracing::info!(consumer = %name, filters = ?filters, "the group's consumer keeps the types of another version");
                }
                config.filter_subjects = filters.into_iter().collect();
                config.max_deliver = config.max_deliver.max(info.config.max_deliver);
            }
            Err(e) => {
                // Gone while this process knew where the group was (deleted by hand, lost with
                // a server's store): start just above its ack floor rather than replaying the
                // whole stream into the group. A group that ran before partitions existed
                // continues from its single consumer's ack floor.
                let mut floor = self.ack_floors[p as usize].load(Ordering::Acquire);
                let old = match known {
                    Some(k) => k.infos.get(&self.name).cloned(),
                    None if floor == 0 => stream.consumer_info(&self.name).await.ok(),
                    None => None,
                };
                if floor == 0
                    && let Some(old) = old
                {
                    floor = old.ack_floor.stream_sequence;
                    tracing::info!(group = %self.name, consumer = %name, from_sequence = floor + 1, "the group's consumer from before partitions exists: the partition consumer starts at its ack floor");
                } else if floor > 0 {
                    tracing::warn!(consumer = %name, error = %e, from_sequence = floor + 1, "the group's consumer is gone; recreating it from its last known ack floor");
                }
                if floor > 0 {
                    config.deliver_policy = DeliverPolicy::ByStartSequence {
                        start_sequence: floor + 1,
                    };
                }
            }
        }
        config.filter_subjects = crate::layout::without_overlaps(config.filter_subjects);
        let consumer = stream.create_consumer(config).await?;
        self.note_ack_floor(p, consumer.cached_info().ack_floor.stream_sequence);
        Ok(consumer)
    }

    /// Reads the stream and every consumer of it in one listing, for the first bind of all of
    /// the group's partitions; `None` when it cannot (each partition then reads its own).
    pub(crate) async fn prefetch(&self) -> Option<Known> {
        if self.config.bind_only {
            return None;
        }
        let stream = self.conn.jetstream().get_stream(EVENTS_STREAM).await.ok()?;
        let mut infos = HashMap::new();
        let mut listing = stream.consumers();
        while let Some(info) = listing.next().await {
            let info = info.ok()?;
            let (group, _) = crate::partition::group_of_consumer(&info.name);
            if group == self.name {
                infos.insert(info.name.clone(), info);
            }
        }
        Some(Known { stream, infos })
    }

    pub(super) fn note_ack_floor(&self, p: u32, floor: u64) {
        self.ack_floors[p as usize].fetch_max(floor, Ordering::AcqRel);
    }
}
