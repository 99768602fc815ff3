//! Creating or updating the streams and buckets a [`Topology`] stands for.

use std::fmt;

use async_nats::jetstream::kv;
use async_nats::jetstream::stream::{self, StorageType};

use super::Topology;
use crate::connection::Connection;
use crate::error::Error;

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
