//! Event ids of cron ticks: the same in every scheduler process, unguessable by tenants.
//!
//! JetStream de-duplicates by `Nats-Msg-Id` across the whole stream, and NATS permissions cover
//! subjects, not header values. A tick id a tenant could compute (`cron:<schedule>:<tenant>:
//! <unix>`) would let it publish first, on its own subject, with another tenant's next tick id
//! and have that tick dropped as a duplicate. So the id ends with an HMAC-SHA256 of schedule,
//! tenant and tick under a secret that the schedulers share in their state bucket (created by the
//! first scheduler, read by the others) and that apps cannot read.

use async_nats::jetstream::kv;
use chrono::{DateTime, Utc};
use conveyor::TenantId;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The key of the shared secret in the schedules' state bucket.
const SECRET_KEY: &str = "secret.tick-ids";

/// Derives tick ids from the shared secret.
pub(crate) struct TickIds {
    secret: Vec<u8>,
}

impl TickIds {
    /// Reads the shared secret, creating it when no scheduler has yet.
    pub(crate) async fn load(state: &kv::Store) -> Result<Self, crate::RunError> {
        let failed = |e: &dyn std::fmt::Display| {
            conveyor::Error::new(
                crate::RunErrorKind::Secret,
                format!("cannot read or create the tick-id secret: {e}"),
            )
        };
        for _ in 0..3 {
            if let Some(secret) = state.get(SECRET_KEY).await.map_err(|e| failed(&e))? {
                return Ok(Self {
                    secret: secret.to_vec(),
                });
            }
            let fresh = format!(
                "{}{}",
                uuid::Uuid::new_v4().simple(),
                uuid::Uuid::new_v4().simple()
            );
            match state.create(SECRET_KEY, fresh.into()).await {
                Ok(_) => {}
                // Another scheduler created it first: read theirs.
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {}
                Err(e) => return Err(failed(&e)),
            }
        }
        Err(failed(&"it was created but cannot be read back"))
    }

    /// `cron:<schedule>:<tenant>:<unix-seconds>:<16 hex digits of the HMAC>`.
    pub(crate) fn tick_id(&self, schedule: &str, tenant: &TenantId, tick: DateTime<Utc>) -> String {
        let unix = tick.timestamp();
        let tag = match Hmac::<Sha256>::new_from_slice(&self.secret) {
            Ok(mut mac) => {
                mac.update(format!("{schedule}\n{tenant}\n{unix}").as_bytes());
                mac.finalize()
                    .into_bytes()
                    .iter()
                    .take(8)
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>()
            }
            // HMAC takes keys of any length; this branch is unreachable in practice.
            Err(_) => String::from("0"),
        };
        format!("cron:{schedule}:{tenant}:{unix}:{tag}")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ids_depend_on_the_secret_and_every_part() {
        let a = TickIds {
            secret: b"one".to_vec(),
        };
        let b = TickIds {
            secret: b"two".to_vec(),
        };
        let acme = TenantId::parse("acme").unwrap();
        let globex = TenantId::parse("globex").unwrap();
        let t = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let id = a.tick_id("daily", &acme, t);
        assert!(id.starts_with("cron:daily:acme:1700000000:"), "{id}");
        assert_eq!(id, a.tick_id("daily", &acme, t), "stable");
        assert_ne!(id, b.tick_id("daily", &acme, t));
        assert_ne!(id, a.tick_id("daily", &globex, t));
        assert_ne!(id, a.tick_id("weekly", &acme, t));
        assert_ne!(
            id,
            a.tick_id("daily", &acme, t + chrono::TimeDelta::seconds(1))
        );
    }
}
