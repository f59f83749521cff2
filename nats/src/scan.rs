//! Reading the log in stream order, message by message, with the position and
//! the time the server stored each one — for auditors (history, verification,
//! exports) and anything else that must see the raw record, including the
//! messages that do not decode.
//!
//! A [`LogScan`] is an ordered (ephemeral) consumer over a subject filter that
//! knows where the stream ended when it was opened, so it finishes instead of
//! waiting for events that arrive later, and never waits on an empty filter
//! (an ordered consumer on nothing waits forever).

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::consumer;
use bytes::Bytes;
use futures::StreamExt;
use time::OffsetDateTime;

use crate::{EventLog, LoadError};

/// How long a scan waits for the next message before giving up.
const SCAN_TIMEOUT: Duration = Duration::from_secs(30);

/// One stored message, as the server keeps it.
#[derive(Debug, Clone)]
pub struct ScannedMessage {
    /// Its stream sequence.
    pub sequence: u64,
    /// The subject it is stored on.
    pub subject: String,
    /// When the server stored it (the log's own clock).
    pub stored_at: OffsetDateTime,
    /// Its headers.
    pub headers: HeaderMap,
    /// Its body: the event envelope as JSON.
    pub payload: Bytes,
}

/// Reads a subject filter of the log in stream order, from a sequence up to the
/// stream's last sequence at opening time.
pub struct LogScan {
    messages: Option<consumer::pull::Ordered>,
    until: u64,
    filter: String,
}

impl std::fmt::Debug for LogScan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogScan").field("filter", &self.filter).field("until", &self.until).finish()
    }
}

impl LogScan {
    /// Opens a scan of `filter` (e.g. `gps.evt.acme.>`) from stream sequence
    /// `from` (1 for the beginning).
    pub async fn open(log: &EventLog, filter: &str, from: u64) -> Result<Self, LoadError> {
        let unavailable = |message: String| LoadError::Unavailable { subject: filter.to_owned(), message };
        let mut stream =
            log.jetstream().get_stream(&log.settings().name).await.map_err(|e| unavailable(e.to_string()))?;
        let info = stream.info().await.map_err(|e| unavailable(e.to_string()))?;
        let until = info.state.last_sequence;
        let closed = LogScan { messages: None, until, filter: filter.to_owned() };
        if info.state.messages == 0 || until < from.max(1) {
            return Ok(closed);
        }
        let deliver_policy = if from <= 1 {
            consumer::DeliverPolicy::All
        } else {
            consumer::DeliverPolicy::ByStartSequence { start_sequence: from }
        };
        let consumer = stream
            .create_consumer(consumer::pull::OrderedConfig {
                filter_subject: filter.to_owned(),
                deliver_policy,
                ..Default::default()
            })
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        if consumer.cached_info().num_pending == 0 {
            return Ok(closed);
        }
        let messages = consumer.messages().await.map_err(|e| unavailable(e.to_string()))?;
        Ok(LogScan { messages: Some(messages), until, filter: filter.to_owned() })
    }

    /// The stream's last sequence when the scan was opened; the scan ends there.
    pub fn until(&self) -> u64 {
        self.until
    }

    /// The next message, or `None` at the end.
    pub async fn next(&mut self) -> Result<Option<ScannedMessage>, LoadError> {
        let unavailable = |message: String| LoadError::Unavailable { subject: self.filter.clone(), message };
        let Some(messages) = self.messages.as_mut() else { return Ok(None) };
        let message = tokio::time::timeout(SCAN_TIMEOUT, messages.next())
            .await
            .map_err(|_| unavailable("timed out reading the log".into()))?
            .ok_or_else(|| unavailable("the log reader closed".into()))?
            .map_err(|e| unavailable(e.to_string()))?;
        let info = message.info().map_err(|e| unavailable(e.to_string()))?;
        let (sequence, pending, stored_at) = (info.stream_sequence, info.pending, info.published);
        if sequence > self.until {
            self.messages = None;
            return Ok(None);
        }
        if pending == 0 || sequence >= self.until {
            self.messages = None;
        }
        Ok(Some(ScannedMessage {
            sequence,
            subject: message.subject.to_string(),
            stored_at,
            headers: message.headers.clone().unwrap_or_default(),
            payload: message.payload.clone(),
        }))
    }
}
