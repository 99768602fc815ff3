//! Stream provisioning: the `EVENTS`, `DLQ`, dead-letter advisory, `PARKED` and `HISTORY`
//! streams and the key-value buckets.

use std::time::Duration;

use async_nats::jetstream::stream::{self, DiscardPolicy, RetentionPolicy, StorageType};
use serde::Deserialize;

use crate::error::Error;

mod provision;

pub use provision::{ProvisionError, ProvisionErrorKind, StreamChange, provision};

/// Name of the stream holding every event (`events.>`).
pub const EVENTS_STREAM: &str = "EVENTS";
/// Name of the dead-letter stream (`dlq.>`).
pub const DLQ_STREAM: &str = "DLQ";
/// Name of the stream capturing max-deliveries advisories of `EVENTS` consumers, the backstop
/// that dead-letters events whose last delivery died with its process.
pub const ADVISORY_STREAM: &str = "DLQ_ADVISORIES";
/// Subject of the max-deliveries advisories the backstop captures.
pub const MAX_DELIVERIES_ADVISORIES: &str = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.EVENTS.>";

/// The scheduler's lease bucket (its `max_age` is the lease TTL).
pub const LEASES_BUCKET: &str = "conveyor_leases";
/// The bucket holding the last fired tick of each schedule.
pub const SCHEDULES_BUCKET: &str = "conveyor_schedules";
/// The tenant registry: one key per tenant id.
pub const TENANTS_BUCKET: &str = "conveyor_tenants";
/// The bucket of handler state (`conveyor::store::KvStore`, feature `store`).
pub const STORE_BUCKET: &str = "conveyor_store";
/// The HTTP gateway's API keys (hashed; `conveyor keys`).
pub const KEYS_BUCKET: &str = "conveyor_keys";
pub use crate::runs::RUNS_BUCKET;

/// Limits of one stream.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamLimits {
    /// How long a message is kept (`Duration::ZERO` = forever), e.g. `"7d"`.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    /// Size cap in bytes (-1 = none); the oldest messages are discarded first.
    pub max_bytes: i64,
    /// Window in which a re-published `Nats-Msg-Id` is dropped as a duplicate (≤ `max_age`).
    #[serde(with = "humantime_serde")]
    pub duplicate_window: Duration,
}

/// Limits of the run history stream (`HISTORY`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryLimits {
    /// How long run records are kept (`Duration::ZERO` = forever), e.g. `"7d"`.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    /// Size cap in bytes (-1 = none); the oldest records are discarded first.
    pub max_bytes: i64,
}

impl Default for HistoryLimits {
    fn default() -> Self {
        Self {
            max_age: crate::history::DEFAULT_HISTORY_MAX_AGE,
            max_bytes: crate::history::DEFAULT_HISTORY_MAX_BYTES,
        }
    }
}

/// One key-value bucket.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BucketSpec {
    /// Bucket name.
    pub name: String,
    /// What it holds.
    #[serde(default)]
    pub description: String,
    /// How long a value lives (`0s` = forever); for the lease bucket, the lease TTL.
    #[serde(with = "humantime_serde", default)]
    pub max_age: Duration,
}

/// The streams and key-value buckets the framework and the scheduler need, and their settings.
/// `nats-config/topology.toml` is the file form.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    /// The `EVENTS` stream: 7 days, no size cap, 2-minute duplicate window by default.
    pub events: StreamLimits,
    /// The `DLQ` stream: 30 days, no size cap by default.
    pub dead_letters: StreamLimits,
    /// The `HISTORY` stream of run records: 7 days and 1 GiB by default.
    #[serde(default)]
    pub history: HistoryLimits,
    /// Replicas of every stream and bucket: 1 on a single server, 3 on a cluster.
    #[serde(default = "one")]
    pub replicas: usize,
    /// File (true, default) or memory storage.
    #[serde(default = "yes")]
    pub file_storage: bool,
    /// Key-value buckets.
    #[serde(default = "default_buckets")]
    pub buckets: Vec<BucketSpec>,
}

fn one() -> usize {
    1
}

fn yes() -> bool {
    true
}

fn bucket(name: &str, description: &str, max_age: Duration) -> BucketSpec {
    BucketSpec {
        name: name.into(),
        description: description.into(),
        max_age,
    }
}

/// The buckets of a default deployment: lease (2 s TTL), schedule state, run markers (24 h),
/// tenant registry, cancellations (7 days), paused tenants, hand-back
/// counts (7 days), rate-limit slots (7 days), concurrency leases (7 days), handler state (`conveyor::store::KvStore`), the
/// counts of work removed by retention limits, the HTTP gateway's API keys and the worker
/// processes (30 s).
pub fn default_buckets() -> Vec<BucketSpec> {
    vec![
        bucket(
            LEASES_BUCKET,
            "Conveyor scheduler leader lease",
            Duration::from_secs(2),
        ),
        bucket(
            SCHEDULES_BUCKET,
            "Last fired tick per schedule",
            Duration::ZERO,
        ),
        bucket(
            RUNS_BUCKET,
            "Running scheduled runs",
            Duration::from_secs(24 * 3600),
        ),
        bucket(TENANTS_BUCKET, "Tenant registry", Duration::ZERO),
        bucket(
            crate::control::CANCEL_BUCKET,
            "Conveyor cancelled events",
            crate::control::DEFAULT_CANCEL_MAX_AGE,
        ),
        bucket(
            crate::pause::PAUSED_BUCKET,
            "Conveyor paused tenants",
            Duration::ZERO,
        ),
        bucket(
            crate::worker::HANDBACKS_BUCKET,
            "Conveyor deliveries handed back without a result",
            HANDBACKS_MAX_AGE,
        ),
        bucket(
            crate::rate::RATES_BUCKET,
            "Conveyor rate-limit slots",
            crate::rate::RATES_MAX_AGE,
        ),
        bucket(
            crate::concurrency::CONCURRENCY_BUCKET,
            "Conveyor running leases and waiting events per concurrency key",
            crate::concurrency::CONCURRENCY_MAX_AGE,
        ),
        bucket(STORE_BUCKET, "Conveyor handler state", Duration::ZERO),
        bucket(
            crate::retention::BUCKET.name,
            crate::retention::BUCKET.description,
            crate::retention::BUCKET.max_age,
        ),
        bucket(
            KEYS_BUCKET,
            "Conveyor gateway API keys (hashed)",
            Duration::ZERO,
        ),
        bucket(
            crate::worker::WORKERS_BUCKET,
            "Conveyor worker processes and their groups",
            crate::worker::WORKERS_MAX_AGE,
        ),
    ]
}

/// How long a hand-back count is kept (as long as `EVENTS` keeps events by default).
pub const HANDBACKS_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

impl Default for Topology {
    fn default() -> Self {
        Self {
            events: StreamLimits {
                max_age: Duration::from_secs(7 * 24 * 3600),
                max_bytes: -1,
                duplicate_window: Duration::from_secs(120),
            },
            dead_letters: StreamLimits {
                max_age: Duration::from_secs(30 * 24 * 3600),
                max_bytes: -1,
                duplicate_window: Duration::from_secs(120),
            },
            history: HistoryLimits::default(),
            replicas: 1,
            file_storage: true,
            buckets: default_buckets(),
        }
    }
}

impl Topology {
    fn validate(&self) -> Result<(), ProvisionError> {
        for (name, l) in [
            (EVENTS_STREAM, &self.events),
            (DLQ_STREAM, &self.dead_letters),
        ] {
            if !l.max_age.is_zero() && l.duplicate_window > l.max_age {
                return Err(Error::new(
                    ProvisionErrorKind::InvalidConfig,
                    format!(
                        "{name}: duplicate window {:?} is longer than max_age {:?}",
                        l.duplicate_window, l.max_age
                    ),
                ));
            }
        }
        if self.replicas == 0 || self.replicas > 5 {
            return Err(Error::new(
                ProvisionErrorKind::InvalidConfig,
                format!("replicas must be 1 to 5, not {}", self.replicas),
            ));
        }
        Ok(())
    }

    fn storage(&self) -> StorageType {
        if self.file_storage {
            StorageType::File
        } else {
            StorageType::Memory
        }
    }

    /// The configuration of the `HISTORY` stream (see [`crate::history`]).
    pub fn history_stream_config(&self) -> stream::Config {
        stream::Config {
            name: crate::history::HISTORY_STREAM.to_owned(),
            description: Some("Conveyor run history".into()),
            subjects: vec!["history.>".into()],
            retention: RetentionPolicy::Limits,
            discard: DiscardPolicy::Old,
            max_age: self.history.max_age,
            max_bytes: self.history.max_bytes,
            // Records carry no message ids; the window is the server's default, within max_age.
            duplicate_window: if self.history.max_age.is_zero() {
                Duration::from_secs(120)
            } else {
                self.history.max_age.min(Duration::from_secs(120))
            },
            num_replicas: self.replicas,
            storage: self.storage(),
            ..Default::default()
        }
    }

    /// The stream configurations this topology stands for.
    pub fn stream_configs(&self) -> [stream::Config; 5] {
        let storage = self.storage();
        let base = |name: &str, subjects: Vec<String>, limits: &StreamLimits| stream::Config {
            name: name.to_owned(),
            subjects,
            retention: RetentionPolicy::Limits,
            discard: DiscardPolicy::Old,
            max_age: limits.max_age,
            max_bytes: limits.max_bytes,
            duplicate_window: limits.duplicate_window,
            num_replicas: self.replicas,
            storage,
            allow_direct: true,
            ..Default::default()
        };
        let events = stream::Config {
            // Every event is stored with its tenant's partition (see `crate::partition`).
            subject_transform: Some(stream::SubjectTransform {
                source: crate::partition::SUBJECT_TRANSFORM_SOURCE.into(),
                destination: crate::partition::SUBJECT_TRANSFORM_DESTINATION.into(),
            }),
            // Delayed events and retries wait as message schedules in the stream their targets
            // are in (see `crate::delay`); schedules outlive `max_age` with `Nats-TTL: never`.
            allow_message_schedules: true,
            allow_message_ttl: true,
            // Atomic batches (see `crate::publisher::AtomicBatch`).
            allow_atomic_publish: true,
            ..base(
                EVENTS_STREAM,
                vec![
                    "events.>".into(),
                    format!("{}.>", crate::delay::DELAYED_SUBJECT_PREFIX),
                ],
                &self.events,
            )
        };
        [
            events,
            base(DLQ_STREAM, vec!["dlq.>".into()], &self.dead_letters),
            base(
                ADVISORY_STREAM,
                vec![MAX_DELIVERIES_ADVISORIES.into()],
                &self.dead_letters,
            ),
            // A paused tenant's events are kept until it is resumed: no age or size limit.
            base(
                crate::pause::PARKED_STREAM,
                vec!["parked.>".into()],
                &StreamLimits {
                    max_age: Duration::ZERO,
                    max_bytes: -1,
                    duplicate_window: self.dead_letters.duplicate_window,
                },
            ),
            self.history_stream_config(),
        ]
    }
}
