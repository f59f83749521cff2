//! Which log a derived store belongs to.
//!
//! Read models, compute state and delivery state are built from one
//! `GPS_EVENTS` stream. A store that meets another stream (a new data folder
//! next to old databases, a Postgres backup restored beside a different
//! JetStream, a wrong `DATABASE_URL`) would resume at a checkpoint that means
//! nothing there and silently skip events. So every store records the
//! identity of the log it was built from, and every role compares it at start
//! with [`check_binding`] and refuses to run on a mismatch or on a checkpoint
//! beyond the log's end.
//!
//! The identity is the stream's name and its creation instant as JetStream
//! recorded it (nanoseconds): a recreated stream has a new one, a restarted
//! server or a restored stream snapshot keeps it.

use std::fmt;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::EventLog;
use crate::error::LoadError;

/// The identity of one event log: stream name and creation instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogIdentity {
    /// The stream's name (`GPS_EVENTS`).
    pub stream: String,
    /// When JetStream created the stream, in nanoseconds since the Unix epoch.
    pub created_unix_nanos: i128,
}

impl LogIdentity {
    /// The stored form, `GPS_EVENTS@1764684000123456789`.
    pub fn token(&self) -> String {
        format!("{}@{}", self.stream, self.created_unix_nanos)
    }

    /// Reads the stored form back; `None` when it is not one.
    pub fn from_token(token: &str) -> Option<Self> {
        let (stream, nanos) = token.rsplit_once('@')?;
        if stream.is_empty() {
            return None;
        }
        Some(LogIdentity { stream: stream.to_owned(), created_unix_nanos: nanos.parse().ok()? })
    }
}

impl fmt::Display for LogIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let created = OffsetDateTime::from_unix_timestamp_nanos(self.created_unix_nanos)
            .ok()
            .and_then(|at| at.format(&Rfc3339).ok())
            .unwrap_or_else(|| "an unknown time".to_owned());
        write!(f, "stream {} created {created} ({})", self.stream, self.token())
    }
}

/// The log as a derived store meets it: its identity and its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogState {
    /// Which log this is.
    pub identity: LogIdentity,
    /// The stream's last sequence (0 when empty).
    pub last_sequence: u64,
}

impl EventLog {
    /// The identity and end of the event stream.
    pub async fn state(&self) -> Result<LogState, LoadError> {
        let name = self.settings().name.clone();
        let unavailable =
            |message: String| LoadError::Unavailable { subject: format!("stream {name}"), message };
        let mut stream = self.jetstream().get_stream(&name).await.map_err(|e| unavailable(e.to_string()))?;
        let info = stream.info().await.map_err(|e| unavailable(e.to_string()))?;
        Ok(LogState {
            identity: LogIdentity { stream: name, created_unix_nanos: info.created.unix_timestamp_nanos() },
            last_sequence: info.state.last_sequence,
        })
    }
}

/// A derived store that does not belong to the log it meets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BindingError {
    /// The store was built from another log.
    #[error(
        "{store} was built from {recorded}, but the event log here is {actual}. \
         Its contents describe another installation, and resuming would skip events. \
         Ways out: rebuild it from this log (`gps projections rebuild` for read models), \
         point this role at the store that belongs to this log (another DATABASE_URL), \
         or, for a development installation, `gps up --reset-derived`"
    )]
    OtherLog {
        /// The store, e.g. `read model catalog (database gps_read)`.
        store: String,
        /// The identity the store recorded, as stored.
        recorded: String,
        /// The log's identity.
        actual: LogIdentity,
    },
    /// The store has applied more of the log than the log holds.
    #[error(
        "{store} is at sequence {checkpoint}, beyond the end of {actual} (last sequence {last_sequence}). \
         It was restored from a newer backup than the log, or the log lost messages. \
         Ways out: rebuild it from this log (`gps projections rebuild` for read models), \
         restore the log that matches it, or, for a development installation, `gps up --reset-derived`"
    )]
    AheadOfLog {
        /// The store.
        store: String,
        /// The store's checkpoint.
        checkpoint: u64,
        /// The log's last sequence.
        last_sequence: u64,
        /// The log's identity.
        actual: LogIdentity,
    },
}

/// What a store should do about its binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Binding {
    /// The store recorded this log: run.
    Bound,
    /// The store recorded nothing yet (new, or made before identities were
    /// recorded): record `identity` in the same transaction that takes the
    /// store into use, then run.
    Record,
}

/// Compares what a store recorded (`recorded`, its stored token, `None` when
/// it has none yet) and its checkpoint with the log. A store with no identity
/// and a checkpoint beyond the log's end is refused too.
pub fn check_binding(
    store: &str,
    recorded: Option<&str>,
    checkpoint: u64,
    log: &LogState,
) -> Result<Binding, BindingError> {
    if let Some(recorded) = recorded
        && LogIdentity::from_token(recorded).as_ref() != Some(&log.identity)
    {
        return Err(BindingError::OtherLog {
            store: store.to_owned(),
            recorded: describe_token(recorded),
            actual: log.identity.clone(),
        });
    }
    if checkpoint > log.last_sequence {
        return Err(BindingError::AheadOfLog {
            store: store.to_owned(),
            checkpoint,
            last_sequence: log.last_sequence,
            actual: log.identity.clone(),
        });
    }
    Ok(if recorded.is_some() { Binding::Bound } else { Binding::Record })
}

fn describe_token(token: &str) -> String {
    LogIdentity::from_token(token)
        .map_or_else(|| format!("an unreadable identity {token:?}"), |id| id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(nanos: i128, last_sequence: u64) -> LogState {
        LogState {
            identity: LogIdentity { stream: "GPS_EVENTS".into(), created_unix_nanos: nanos },
            last_sequence,
        }
    }

    #[test]
    fn a_token_reads_back_as_the_same_identity() {
        let identity = log(1_764_684_000_123_456_789, 0).identity;
        assert_eq!(LogIdentity::from_token(&identity.token()), Some(identity));
        assert_eq!(LogIdentity::from_token("no-at-sign"), None);
        assert_eq!(LogIdentity::from_token("@12"), None);
    }

    #[test]
    fn a_store_without_identity_records_it_and_a_matching_one_runs() {
        let here = log(5, 10);
        assert_eq!(check_binding("s", None, 3, &here), Ok(Binding::Record));
        assert_eq!(check_binding("s", Some(&here.identity.token()), 10, &here), Ok(Binding::Bound));
    }

    #[test]
    fn a_store_of_another_log_is_refused_naming_both_and_the_ways_out() {
        let here = log(5, 10);
        let error = check_binding("read model catalog", Some("GPS_EVENTS@4"), 3, &here).unwrap_err();
        let message = error.to_string();
        assert!(message.contains("GPS_EVENTS@4") && message.contains("GPS_EVENTS@5"), "{message}");
        assert!(
            message.contains("gps projections rebuild") && message.contains("--reset-derived"),
            "{message}"
        );
    }

    #[test]
    fn a_checkpoint_beyond_the_end_of_the_log_is_refused_even_without_identity() {
        let here = log(5, 10);
        assert!(matches!(check_binding("s", None, 11, &here), Err(BindingError::AheadOfLog { .. })));
        assert!(matches!(
            check_binding("s", Some(&here.identity.token()), 11, &here),
            Err(BindingError::AheadOfLog { checkpoint: 11, last_sequence: 10, .. })
        ));
    }
}
