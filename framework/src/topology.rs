//! Stream provisioning: the `EVENTS`, `DLQ`, dead-letter advisory, `PARKED` and `HISTORY`
//! streams and the key-value buckets.

use std::fmt;
use std::time::Duration;

use async_nats::jetstream::kv;
use async_nats::jetstream::stream::{self, DiscardPolicy, RetentionPolicy, StorageType};
use serde::Deserialize;

use crate::connection::Connection;
use crate::error::Error;

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

/// What provisioning did to one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamChange {
    /// The stream did not exist and was created.
    Created,
    /// The stream existed with other settings and was updated.
    Updated,
    /// The stream already had these settings.
    Unchanged,
}

impl fmt::Display for StreamChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Created => "created",
            Self::Updated => "updated",
            Self::Unchanged => "unchanged",
        })
    }
}

/// Why provisioning failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProvisionErrorKind {
    /// The settings are inconsistent (e.g. a duplicate window longer than `max_age`).
    InvalidConfig,
    /// The server rejected a create or update (permissions, immutable setting, limits).
    Rejected,
    /// The server did not answer.
    Unavailable,
}

impl fmt::Display for ProvisionErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::InvalidConfig => "invalid topology",
            Self::Rejected => "stream rejected",
            Self::Unavailable => "jetstream unavailable",
        })
    }
}

/// A failed provisioning step.
pub type ProvisionError = Error<ProvisionErrorKind>;

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

/// Creates or updates the framework's streams so they match `topology`. Idempotent: running it
/// again with the same settings changes nothing. Returns what happened to each stream.
///
/// ```no_run
/// # async fn run(conn: conveyor::Connection) -> Result<(), conveyor::ProvisionError> {
/// use conveyor::topology::{provision, Topology};
/// for (stream, change) in provision(&conn, &Topology::default()).await? {
///     println!("{stream}: {change}");
/// }
/// # Ok(()) }
/// ```
pub async fn provision(
    conn: &Connection,
    topology: &Topology,
) -> Result<Vec<(String, StreamChange)>, ProvisionError> {
    topology.validate()?;
    let js = conn.jetstream();
    let mut report = Vec::new();
    for desired in topology.stream_configs() {
        let name = desired.name.clone();
        let change = match js.get_stream(&name).await {
            Ok(mut existing) => {
                let info = existing.info().await.map_err(|e| unavailable(&name, e))?;
                if same_settings(&info.config, &desired) {
                    StreamChange::Unchanged
                } else {
                    update(js, info, desired).await?;
                    StreamChange::Updated
                }
            }
            Err(e) if is_not_found(&e.kind()) => {
                js.create_stream(desired)
                    .await
                    .map_err(|e| rejected(&name, e))?;
                StreamChange::Created
            }
            Err(e) => return Err(unavailable(&name, e)),
        };
        tracing::info!(stream = %name, %change, "stream provisioned");
        report.push((name, change));
    }
    for spec in &topology.buckets {
        let desired = kv::Config {
            bucket: spec.name.clone(),
            description: spec.description.clone(),
            history: 1,
            max_age: spec.max_age,
            num_replicas: topology.replicas,
            storage: if topology.file_storage {
                StorageType::File
            } else {
                StorageType::Memory
            },
            ..Default::default()
        };
        let label = format!("KV {}", spec.name);
        let change = match js.get_stream(format!("KV_{}", spec.name)).await {
            Ok(mut existing) => {
                let info = existing.info().await.map_err(|e| unavailable(&label, e))?;
                if info.config.max_age == spec.max_age
                    && info.config.num_replicas == topology.replicas
                {
                    StreamChange::Unchanged
                } else {
                    js.update_key_value(desired)
                        .await
                        .map_err(|e| rejected(&label, e))?;
                    StreamChange::Updated
                }
            }
            Err(e) if is_not_found(&e.kind()) => {
                js.create_key_value(desired)
                    .await
                    .map_err(|e| rejected(&label, e))?;
                StreamChange::Created
            }
            Err(e) => return Err(unavailable(&label, e)),
        };
        tracing::info!(bucket = %spec.name, %change, "bucket provisioned");
        report.push((label, change));
    }
    Ok(report)
}

fn is_not_found(kind: &async_nats::jetstream::context::GetStreamErrorKind) -> bool {
    matches!(
        kind,
        async_nats::jetstream::context::GetStreamErrorKind::JetStream(e)
            if e.error_code() == async_nats::jetstream::ErrorCode::STREAM_NOT_FOUND
    )
}

/// Updates a stream to `desired`, keeping the metadata it has. A switch of `EVENTS` to the
/// current subject layout is recorded (see [`crate::layout`]).
async fn update(
    js: &async_nats::jetstream::Context,
    actual: &stream::Info,
    mut desired: stream::Config,
) -> Result<(), ProvisionError> {
    let name = desired.name.clone();
    let switch = crate::layout::keep_metadata(actual, &mut desired);
    let updated = js
        .update_stream(&desired)
        .await
        .map_err(|e| rejected(&name, e))?;
    if switch && updated.state.messages > 0 {
        // Read after the switch: every event of the earlier layout is at or below it.
        crate::layout::record_switch(&mut desired, updated.state.last_sequence);
        js.update_stream(&desired)
            .await
            .map_err(|e| rejected(&name, e))?;
        tracing::info!(stream = %name, until = updated.state.last_sequence, "switched to the current subject layout; events stored before are still delivered");
    }
    Ok(())
}

fn same_settings(actual: &stream::Config, desired: &stream::Config) -> bool {
    actual.subjects == desired.subjects
        && actual.retention == desired.retention
        && actual.max_age == desired.max_age
        && actual.max_bytes == desired.max_bytes
        && actual.duplicate_window == desired.duplicate_window
        && actual.num_replicas == desired.num_replicas
        && actual.allow_direct == desired.allow_direct
        && actual.discard == desired.discard
        && actual.subject_transform == desired.subject_transform
        && actual.allow_message_schedules == desired.allow_message_schedules
        && actual.allow_message_ttl == desired.allow_message_ttl
        && actual.allow_atomic_publish == desired.allow_atomic_publish
}

fn rejected(name: &str, e: impl std::error::Error + Send + Sync + 'static) -> ProvisionError {
    Error::with_source(
        ProvisionErrorKind::Rejected,
        format!("could not create or update stream {name}"),
        e,
    )
}

fn unavailable(name: &str, e: impl std::error::Error + Send + Sync + 'static) -> ProvisionError {
    Error::with_source(
        ProvisionErrorKind::Unavailable,
        format!("could not read stream {name}"),
        e,
    )
}
