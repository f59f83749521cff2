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
//! A [`LogFollow`] reads without an end: what is stored and then each new
//! message as it is stored, pulling only as fast as its reader reads, for
//! readers that follow the log live (the gateway's event stream for
//! downstream systems).

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
            .create_consumer(ordered_config(filters, from))
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
/// One consumer does both, so there is no hand-over between a replay and a
/// live subscription where a message could be missed or seen twice. It pulls
/// at most `batch` messages at a time and only when the reader asks for the
/// next one, so a reader that stops reading stops the pulls: the log waits on
/// the server, not in memory. (An ordered consumer's stream would not do: it
/// renews its pull request on a timer whether or not anyone reads.) Each
/// delivery's consumer sequence is checked; after a gap (a pull that ended
/// with messages unread) or a consumer the server removed while the reader
/// was away, it starts a new consumer at the first sequence not yet handed
/// out.
pub struct LogFollow {
    stream: async_nats::jetstream::stream::Stream,
    filters: Vec<String>,
    batch: usize,
    consumer: Option<consumer::PullConsumer>,
    pulled: Option<consumer::pull::Batch>,
    /// The first stream sequence not yet handed to the reader.
    next_sequence: u64,
    /// The consumer sequence of the last message handed out (0: none yet).
    last_delivery: u64,
}

impl std::fmt::Debug for LogFollow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogFollow")
            .field("filters", &self.filters)
            .field("next", &self.next_sequence)
            .finish()
    }
}

/// How long one pull request waits for messages before it is renewed.
const FOLLOW_PULL_EXPIRY: Duration = Duration::from_secs(30);
/// How long the server keeps a follower's consumer once nobody pulls from it.
const FOLLOW_INACTIVE_THRESHOLD: Duration = Duration::from_secs(120);
/// New consumers one `next` may start before it reports the log unavailable.
const FOLLOW_RESTARTS: u32 = 3;

impl LogFollow {
    /// Starts following `filters` (e.g. `gps.evt.acme.>`) after stream
    /// sequence `after` (0 for the beginning), pulling at most `batch`
    /// messages at a time.
    pub async fn open(
        log: &EventLog,
        filters: &[String],
        after: u64,
        batch: usize,
    ) -> Result<Self, LoadError> {
        let unavailable = |message: String| LoadError::Unavailable { subject: filters.join(" "), message };
        let stream =
            log.jetstream().get_stream(&log.settings().name).await.map_err(|e| unavailable(e.to_string()))?;
        let mut follow = LogFollow {
            stream,
            filters: filters.to_vec(),
            batch: batch.max(1),
            consumer: None,
            pulled: None,
            next_sequence: after.saturating_add(1),
            last_delivery: 0,
        };
        follow.restart().await.map_err(unavailable)?;
        Ok(follow)
    }

    /// A new consumer from the first sequence not yet handed out.
    async fn restart(&mut self) -> Result<(), String> {
        self.pulled = None;
        self.consumer = None;
        let ordered = ordered_config(&self.filters, self.next_sequence);
        let config = consumer::pull::Config {
            filter_subject: ordered.filter_subject,
            filter_subjects: ordered.filter_subjects,
            deliver_policy: ordered.deliver_policy,
            ack_policy: consumer::AckPolicy::None,
            inactive_threshold: FOLLOW_INACTIVE_THRESHOLD,
            memory_storage: true,
            num_replicas: 1,
            ..Default::default()
        };
        self.consumer = Some(self.stream.create_consumer(config).await.map_err(|e| e.to_string())?);
        self.last_delivery = 0;
        Ok(())
    }

    /// The next message; waits for it when the reader is at the end of the log.
    pub async fn next(&mut self) -> Result<ScannedMessage, LoadError> {
        let mut restarts = 0;
        loop {
            let attempt = self.next_delivered().await;
            match attempt {
                Ok(Some(message)) => return Ok(message),
                // The pull ended (filled or expired): pull again.
                Ok(None) => continue,
                Err(error) if restarts >= FOLLOW_RESTARTS => {
                    return Err(LoadError::Unavailable { subject: self.filters.join(" "), message: error });
                }
                Err(error) => {
                    tracing::debug!(%error, next = self.next_sequence, "restarting a log follower");
                    restarts += 1;
                    if let Err(error) = self.restart().await {
                        tracing::debug!(%error, "a log follower could not restart");
                    }
                }
            }
        }
    }

    /// The next message of the current pull (pulling when none is open);
    /// `None` when that pull ended; an error when the consumer must restart.
    async fn next_delivered(&mut self) -> Result<Option<ScannedMessage>, String> {
        if self.pulled.is_none() {
            let consumer = self.consumer.as_ref().ok_or("no consumer")?;
            let pull = consumer.batch().max_messages(self.batch).expires(FOLLOW_PULL_EXPIRY);
            self.pulled = Some(pull.messages().await.map_err(|e| e.to_string())?);
        }
        let Some(pulled) = self.pulled.as_mut() else { return Ok(None) };
        let message = match pulled.next().await {
            None => {
                self.pulled = None;
                return Ok(None);
            }
            Some(Err(error)) => return Err(error.to_string()),
            Some(Ok(message)) => message,
        };
        let (scanned, _) = scanned(&message)?;
        let delivery = message.info().map_err(|e| e.to_string())?.consumer_sequence;
        if delivery != self.last_delivery + 1 {
            return Err(format!(
                "delivery {delivery} follows {}: messages were dropped unread",
                self.last_delivery
            ));
        }
        self.last_delivery = delivery;
        self.next_sequence = scanned.sequence + 1;
        Ok(Some(scanned))
    }
}

/// An ordered consumer on `filters` from stream sequence `from` (1 or less for
/// the beginning).
fn ordered_config(filters: &[String], from: u64) -> consumer::pull::OrderedConfig {
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
    consumer::pull::OrderedConfig { filter_subject, filter_subjects, deliver_policy, ..Default::default() }
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
