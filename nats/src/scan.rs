//! Reading the log in stream order, message by message, with the position and
//! the time the server stored each one — for auditors (history, verification,
//! exports) and anything else that must see the raw record, including the
//! messages that do not decode.
//!
//! A [`LogScan`] is an ordered (ephemeral) consumer over a subject filter that
//! knows where the stream ended when it was opened, so it finishes instead of
//! waiting for events that arrive later, and never waits on an empty filter
//! (an ordered consumer on nothing waits forever).
//!
//! A [`LogFollow`] is the same consumer without an end: it delivers what is
//! stored and then each new message as it is stored, for readers that follow
//! the log live (the gateway's event stream for downstream systems).

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
        Self::open_subjects(log, &[filter.to_owned()], from).await
    }

    /// Opens a scan of several subject filters at once (one consumer, stream
    /// order across all of them) from stream sequence `from`.
    pub async fn open_subjects(log: &EventLog, filters: &[String], from: u64) -> Result<Self, LoadError> {
        let filter = filters.join(" ");
        let unavailable = |message: String| LoadError::Unavailable { subject: filter.clone(), message };
        let mut stream =
            log.jetstream().get_stream(&log.settings().name).await.map_err(|e| unavailable(e.to_string()))?;
        let info = stream.info().await.map_err(|e| unavailable(e.to_string()))?;
        let until = info.state.last_sequence;
        let closed = LogScan { messages: None, until, filter: filter.clone() };
        if info.state.messages == 0 || until < from.max(1) {
            return Ok(closed);
        }
        let consumer = stream
            .create_consumer(ordered_config(filters, from, None))
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        if consumer.cached_info().num_pending == 0 {
            return Ok(closed);
        }
        let messages = consumer.messages().await.map_err(|e| unavailable(e.to_string()))?;
        Ok(LogScan { messages: Some(messages), until, filter })
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
        let (scanned, pending) = scanned(&message).map_err(unavailable)?;
        if scanned.sequence > self.until {
            self.messages = None;
            return Ok(None);
        }
        if pending == 0 || scanned.sequence >= self.until {
            self.messages = None;
        }
        Ok(Some(scanned))
    }
}

/// Follows subject filters of the log from a sequence on, without end: the
/// stored messages first, then each new one as it is stored, in stream order.
///
/// One ordered consumer does both, so there is no hand-over between a replay
/// and a live subscription where a message could be missed or seen twice: the
/// consumer checks every delivery's sequence and recreates itself at the next
/// expected one when it detects a gap. At most `batch` messages wait in the
/// client for the reader; a reader that stops reading stops the pulls, so a
/// slow reader holds the server back, never memory.
pub struct LogFollow {
    messages: consumer::pull::Ordered,
    filter: String,
}

impl std::fmt::Debug for LogFollow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogFollow").field("filter", &self.filter).finish()
    }
}

impl LogFollow {
    /// Starts following `filters` (e.g. `gps.evt.acme.>`) after stream
    /// sequence `after` (0 for the beginning), holding at most `batch`
    /// undelivered messages in the client.
    pub async fn open(
        log: &EventLog,
        filters: &[String],
        after: u64,
        batch: usize,
    ) -> Result<Self, LoadError> {
        let filter = filters.join(" ");
        let unavailable = |message: String| LoadError::Unavailable { subject: filter.clone(), message };
        let stream =
            log.jetstream().get_stream(&log.settings().name).await.map_err(|e| unavailable(e.to_string()))?;
        let consumer = stream
            .create_consumer(ordered_config(filters, after.saturating_add(1), Some(batch)))
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        let messages = consumer.messages().await.map_err(|e| unavailable(e.to_string()))?;
        Ok(LogFollow { messages, filter })
    }

    /// The next message; waits for it when the reader is at the end of the log.
    pub async fn next(&mut self) -> Result<ScannedMessage, LoadError> {
        let unavailable = |message: String| LoadError::Unavailable { subject: self.filter.clone(), message };
        let message = self
            .messages
            .next()
            .await
            .ok_or_else(|| unavailable("the log reader closed".into()))?
            .map_err(|e| unavailable(e.to_string()))?;
        scanned(&message).map(|(scanned, _)| scanned).map_err(unavailable)
    }
}

/// An ordered consumer on `filters` from stream sequence `from` (1 or less for
/// the beginning), pulling at most `batch` messages at a time when given.
fn ordered_config(filters: &[String], from: u64, batch: Option<usize>) -> consumer::pull::OrderedConfig {
    let deliver_policy = if from <= 1 {
        consumer::DeliverPolicy::All
    } else {
        consumer::DeliverPolicy::ByStartSequence { start_sequence: from }
    };
    // One filter goes in `filter_subject`, so the request names it in its API
    // subject (what per-role permissions can check); several need the list.
    let (filter_subject, filter_subjects) = match filters {
        [one] => (one.clone(), Vec::new()),
        many => (String::new(), many.to_vec()),
    };
    consumer::pull::OrderedConfig {
        filter_subject,
        filter_subjects,
        deliver_policy,
        max_batch: batch.map_or(0, |batch| i64::try_from(batch).unwrap_or(i64::MAX)),
        ..Default::default()
    }
}

/// A delivered message as a [`ScannedMessage`], with how many messages of the
/// filter were pending after it.
fn scanned(message: &async_nats::jetstream::Message) -> Result<(ScannedMessage, u64), String> {
    let info = message.info().map_err(|e| e.to_string())?;
    let scanned = ScannedMessage {
        sequence: info.stream_sequence,
        subject: message.subject.to_string(),
        stored_at: info.published,
        headers: message.headers.clone().unwrap_or_default(),
        payload: message.payload.clone(),
    };
    Ok((scanned, info.pending))
}
