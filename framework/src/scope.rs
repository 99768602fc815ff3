//! Whose runs a cluster-wide limit counts: the whole group, each tenant, or each key derived
//! from the event (within its tenant). Shared by rate limits ([`crate::rate`]) and concurrency
//! limits ([`crate::concurrency`]).

use std::fmt;
use std::sync::Arc;

use serde_json::value::RawValue;

use crate::history::escape_token;
use crate::tenant::TenantId;

/// What a per-key limit sees of an event to derive its key.
#[derive(Debug, Clone, Copy)]
pub struct KeyInput<'a> {
    /// The event's tenant.
    pub tenant: &'a TenantId,
    /// Its type.
    pub event_type: &'a str,
    /// Its `data`, still encoded as JSON.
    pub data: &'a RawValue,
}

/// Derives a per-key limit's key from an event; `None`: the event is not limited.
pub type KeyFn = Arc<dyn Fn(KeyInput<'_>) -> Option<String> + Send + Sync>;

/// Whose runs a limit counts.
#[derive(Clone)]
pub enum Scope {
    /// Every run of the group.
    Group,
    /// Each tenant's runs apart.
    Tenant,
    /// Each key's runs apart, the key derived from the event (within its tenant).
    Key(KeyFn),
}

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Group => "Group",
            Self::Tenant => "Tenant",
            Self::Key(_) => "Key(..)",
        })
    }
}

impl Scope {
    /// The key counting `input`'s run in `group` (`<group>.=all`, `<group>.<tenant>` or
    /// `<group>.<tenant>.<escaped key>`); `None`: the event is not limited.
    pub(crate) fn key(&self, group: &str, input: KeyInput<'_>) -> Option<String> {
        match self {
            Self::Group => Some(format!("{group}.=all")),
            Self::Tenant => Some(format!("{group}.{}", input.tenant)),
            Self::Key(f) => {
                f(input).map(|k| format!("{group}.{}.{}", input.tenant, escape_token(&k)))
            }
        }
    }
}
