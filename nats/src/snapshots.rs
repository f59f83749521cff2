//! Aggregate snapshots: the state after a known event, kept in the
//! `GPS_SNAPSHOTS` stream (one message per aggregate, the latest) so a long
//! aggregate loads in one round trip plus its recent events.
//!
//! A snapshot is a cache, never a source of truth: it names the exact event it
//! follows (sequence, version and hash), and a reader that cannot find that
//! event in the log, or that runs another state version, ignores it and
//! replays the events instead.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::log::{EventLog, ExpectedPosition};
use crate::stream::{SNAPSHOT_STREAM_NAME, SNAPSHOT_SUBJECT_PREFIX};
use crate::subjects::AggregateAddress;
use crate::{AppendError, LoadError};

/// How many recent command ids a snapshot remembers, so a repeated command
/// whose events the snapshot covers is still recognised.
pub const RECENT_COMMAND_IDS: usize = 256;

/// One aggregate's state at a position in the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The aggregate kind, e.g. `product`.
    pub aggregate_type: String,
    /// The aggregate's `STATE_VERSION` when the snapshot was taken.
    pub state_version: u32,
    /// The last event the state includes.
    pub position: ExpectedPosition,
    /// Ids of the latest commands applied (oldest first, at most
    /// [`RECENT_COMMAND_IDS`]).
    pub recent_command_ids: Vec<String>,
    /// The serialized state.
    pub state: serde_json::Value,
}

/// The subject of an aggregate's snapshot: `gps.snap.<brand>.<aggregate>.<id>`.
pub fn snapshot_subject(address: &AggregateAddress) -> String {
    format!("{SNAPSHOT_SUBJECT_PREFIX}.{}.{}.{}", address.brand(), address.kind().as_str(), address.id())
}

impl EventLog {
    /// The latest snapshot of an aggregate, if there is a readable one.
    pub async fn load_snapshot(&self, address: &AggregateAddress) -> Result<Option<Snapshot>, LoadError> {
        let subject = snapshot_subject(address);
        let reply = self
            .client()
            .request(format!("$JS.API.DIRECT.GET.{SNAPSHOT_STREAM_NAME}.{subject}"), Bytes::new())
            .await
            .map_err(|e| LoadError::Unavailable { subject: subject.clone(), message: e.to_string() })?;
        if let Some(status) = reply.status {
            return match status.as_u16() {
                404 => Ok(None),
                other => Err(LoadError::Unavailable {
                    subject,
                    message: format!(
                        "snapshot read failed with status {other}: {}",
                        reply.description.unwrap_or_default()
                    ),
                }),
            };
        }
        match serde_json::from_slice::<Snapshot>(&reply.payload) {
            Ok(snapshot) => Ok(Some(snapshot)),
            Err(error) => {
                tracing::warn!(%subject, %error, "ignoring an unreadable snapshot");
                Ok(None)
            }
        }
    }

    /// Stores a snapshot, replacing the previous one of the aggregate.
    pub async fn save_snapshot(
        &self,
        address: &AggregateAddress,
        snapshot: &Snapshot,
    ) -> Result<(), AppendError> {
        let unavailable =
            |message: String| AppendError::Unavailable { address: address.to_string(), message };
        let body = serde_json::to_vec(snapshot).map_err(|e| AppendError::Invalid(e.to_string()))?;
        self.jetstream()
            .publish(snapshot_subject(address), Bytes::from(body))
            .await
            .map_err(|e| unavailable(e.to_string()))?
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        Ok(())
    }
}
