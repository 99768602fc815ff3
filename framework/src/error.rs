//! The error type shared by every operation family.
//!
//! Each family (publishing, decoding, provisioning, ...) has its own kind enum and a type alias,
//! e.g. [`PublishError`](crate::PublishError) = `Error<PublishErrorKind>`. Callers branch on
//! [`Error::kind`], never on the message text.

use std::error::Error as StdError;
use std::fmt;

/// An error of one operation family: a kind to branch on, a message for people, and an
/// optional cause.
///
/// Its text says everything once: `kind: message (cause)`. Because the cause's text is part of
/// it, [`std::error::Error::source`] returns `None` (so reporters that walk the chain, such as
/// `anyhow`'s `{:#}`, do not print the cause twice); the cause itself is [`Error::cause`].
pub struct Error<K> {
    kind: K,
    message: String,
    source: Option<Box<dyn StdError + Send + Sync + 'static>>,
    event_id: Option<String>,
    /// The message is the cause's own: the cause is not printed again.
    restated: bool,
}

impl<K: Copy> Error<K> {
    /// Creates an error of `kind` with a human-readable message.
    pub fn new(kind: K, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            source: None,
            event_id: None,
            restated: false,
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
            restated: false,
        }
    }

    /// An error of `kind` that says what `cause` (an error of another family) says: its
    /// message, once. The cause stays available from [`Error::cause`].
    pub(crate) fn restate<C: fmt::Debug + fmt::Display + Send + Sync + 'static>(
        kind: K,
        cause: Error<C>,
    ) -> Self {
        Self {
            kind,
            message: cause.message.clone(),
            event_id: cause.event_id.clone(),
            source: Some(Box::new(cause)),
            restated: true,
        }
    }

    /// The error this one was built from, if any (its text is already part of this error's).
    pub fn cause(&self) -> Option<&(dyn StdError + Send + Sync + 'static)> {
        self.source.as_deref()
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
        match &self.source {
            Some(source) if !self.restated => write!(f, " ({source})"),
            _ => Ok(()),
        }
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

/// `source()` is `None`: the cause's text is already in this error's (see [`Error::cause`]).
impl<K: fmt::Debug + fmt::Display> StdError for Error<K> {}
