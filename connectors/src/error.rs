//! One error type for every connector, with a kind that decides what the
//! agent does about it.

use std::fmt;

/// What went wrong, in the terms the agent acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The server could not be reached or the connection broke. Worth a retry
    /// after a delay; nothing was committed by the failed call.
    Connection,
    /// The server asked us to try again (deadlock, serialization failure,
    /// lock timeout, server shutting down). Worth a retry at once.
    Transient,
    /// One record cannot be written as it is: a constraint violation, a value
    /// out of range or too long, a value that cannot be converted. Never
    /// retried by itself: the record goes to the dead-letter list.
    Data,
    /// A table or column the configuration names does not exist, or changed
    /// under us. Needs an operator (fix the config or re-run install-triggers).
    Schema,
    /// The agent's database user lacks a privilege. Needs an operator.
    Permission,
    /// The endpoint configuration is wrong (bad URL, unknown option).
    Config,
    /// A bug or an answer we did not expect from the server.
    Internal,
}

impl ErrorKind {
    /// Whether the agent should retry the failed call by itself.
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorKind::Connection | ErrorKind::Transient)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            ErrorKind::Connection => "connection",
            ErrorKind::Transient => "transient",
            ErrorKind::Data => "data",
            ErrorKind::Schema => "schema",
            ErrorKind::Permission => "permission",
            ErrorKind::Config => "config",
            ErrorKind::Internal => "internal",
        };
        f.write_str(name)
    }
}

/// An error from a connector: its kind, a one-line message naming the thing
/// at fault, and the underlying error when there is one. The message says
/// what the cause says that matters: the cause is kept for `Debug`, not
/// reported as the error's source, so that a chain of errors printed in
/// one line says each thing once.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ConnectorError {
    kind: ErrorKind,
    message: String,
    cause: Option<Box<dyn std::error::Error + Send + Sync>>,
    unsent: bool,
}

impl ConnectorError {
    /// A new error of `kind` with a one-line `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            cause: None,
            unsent: false,
        }
    }

    /// Marks a request that never left: its connection could not be
    /// made, or its credentials not obtained. Whatever it asked for did
    /// not happen.
    pub fn unsent(mut self) -> Self {
        self.unsent = true;
        self
    }

    /// Whether the request never left (see [`ConnectorError::unsent`]).
    pub fn is_unsent(&self) -> bool {
        self.unsent
    }

    /// Keeps `source` as the cause of this error (its message must say
    /// what of it matters).
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.cause = Some(Box::new(source));
        self
    }

    /// The underlying error, when there is one.
    pub fn cause(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        self.cause.as_deref()
    }

    /// What kind of error this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Whether the agent should retry by itself.
    pub fn is_retryable(&self) -> bool {
        self.kind.is_retryable()
    }

    /// Prefixes the message with where it happened, keeping kind and cause.
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }

    /// Shorthand for a [`ErrorKind::Data`] error.
    pub fn data(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Data, message)
    }

    /// Shorthand for a [`ErrorKind::Schema`] error.
    pub fn schema(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Schema, message)
    }

    /// Shorthand for a [`ErrorKind::Config`] error.
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, message)
    }

    /// Shorthand for a [`ErrorKind::Internal`] error.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }
}

/// Result of a connector call.
pub type Result<T, E = ConnectorError> = std::result::Result<T, E>;
