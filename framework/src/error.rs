//! The error type shared by every operation family.
//!
//! Each family (publishing, decoding, provisioning, ...) has its own kind enum and a type alias,
//! e.g. [`PublishError`](crate::PublishError) = `Error<PublishErrorKind>`. Callers branch on
//! [`Error::kind`], never on the message text.

use std::error::Error as StdError;
use std::fmt;

/// An error of one operation family: a kind to branch on, a message for people, and an
/// optional source error.
pub struct Error<K> {
    kind: K,
    message: String,
    source: Option<Box<dyn StdError + Send + Sync + 'static>>,
    event_id: Option<String>,
}

impl<K: Copy> Error<K> {
    /// Creates an error of `kind` with a human-readable message.
    pub fn new(kind: K, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            source: None,
            event_id: None,
        }
    }

    /// Creates an error of `kind` with a message and the error that caused it.
    pub fn with_source(
        kind: K,
        message: impl Into<String>,
        source: impl Into<Box<dyn StdError + Send + Sync + 'static>>,
    ) -> Self {
        Self {
            kind,
            message: message.into(),
            source: Some(source.into()),
            event_id: None,
        }
    }

    /// Names the event the failed operation was about.
    pub(crate) fn for_event(mut self, id: impl Into<String>) -> Self {
        self.event_id = Some(id.into());
        self
    }

    /// The id of the event the failed operation was about, when it had one: e.g. the id of an
    /// event whose publish timed out, to retry it with (a retry with the same id inside the
    /// duplicate window is stored once).
    pub fn event_id(&self) -> Option<&str> {
        self.event_id.as_deref()
    }

    /// What went wrong, as an enum to match on.
    pub fn kind(&self) -> K {
        self.kind
    }

    /// The human-readable message, without the source chain.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl<K: fmt::Display> fmt::Display for Error<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)?;
        if let Some(source) = &self.source {
            write!(f, " ({source})")?;
        }
        Ok(())
    }
}

impl<K: fmt::Debug> fmt::Debug for Error<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.kind).field("message", &self.message);
        if let Some(id) = &self.event_id {
            d.field("event_id", id);
        }
        if let Some(source) = &self.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl<K: fmt::Debug + fmt::Display> StdError for Error<K> {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn StdError + 'static))
    }
}
