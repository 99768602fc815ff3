//! Why a scheduler could not run.

use std::fmt;

/// Why a scheduler could not start running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RunErrorKind {
    /// A key-value bucket it needs (lease, schedule state, run markers, tenant registry) could
    /// not be opened or created.
    Bucket,
    /// The secret that keys tick ids could not be read or created.
    Secret,
}

impl fmt::Display for RunErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Bucket => "scheduler bucket unavailable",
            Self::Secret => "tick-id secret unavailable",
        })
    }
}

/// A scheduler that could not start running.
pub type RunError = conveyor::Error<RunErrorKind>;

/// A bucket `name` that could not be opened or created.
pub(crate) fn bucket_error(
    name: &str,
    e: impl std::error::Error + Send + Sync + 'static,
) -> RunError {
    conveyor::Error::with_source(
        RunErrorKind::Bucket,
        format!("cannot open or create the key-value bucket {name}"),
        e,
    )
}
