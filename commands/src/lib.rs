//! Command handling: load the aggregate, `decide`, append, retry on conflict.
//!
//! [`CommandHandler::execute`] is the write path of GPS. It replays the
//! aggregate's events from the log, lets the pure domain decide, and appends the
//! resulting events with optimistic concurrency. A conflict (another writer got
//! there first) reloads and decides again, a bounded number of times, then
//! reports [`CommandError::Conflict`]. A command whose id is already in the
//! aggregate's history is not applied again: the earlier result is returned.
//!
//! Architecture invariant: the outside world (the time, generated ids, other
//! aggregates' state) reaches `decide` only through the command and its
//! [`CommandMeta`]; this crate depends on no sqlx or axum.

pub mod lanes;
pub mod process_managers;
pub mod sku_claims;

use std::sync::Arc;
use std::time::Duration;

use lanes::{CachedState, Lanes};

use gps_domain::ids::BrandId;
use gps_domain::wire::{self, DecodeError, EventEnvelope};
use gps_domain::{Aggregate, DomainError};
use gps_nats::{
    AggregateAddress, AppendError, AppendRequest, EventLog, ExpectedPosition, LoadError, LoadedStream,
    NewEvent, Snapshot,
};

pub use gps_nats::CommandMeta;

/// How many times a command is decided again after a conflict before giving up.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;

/// A load that replays at least this many events stores a snapshot, so the
/// next load replays fewer.
pub const DEFAULT_SNAPSHOT_EVERY: usize = 100;

/// Why a command was not applied.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The domain refused it: a business reason the caller can act on.
    #[error("{address}: {error}")]
    Rejected {
        /// The aggregate addressed.
        address: String,
        /// The business reason.
        error: DomainError,
    },
    /// Other writers kept changing the aggregate; nothing was written.
    #[error("{address} kept changing while this command was decided ({attempts} attempts); try again")]
    Conflict {
        /// The aggregate addressed.
        address: String,
        /// How many times it was tried.
        attempts: u32,
    },
    /// The command id was used before for a different command.
    #[error("command id {command_id} was already used for another command; send a new command with a new id")]
    CommandIdReused {
        /// The id.
        command_id: String,
    },
    /// The command or its metadata is malformed.
    #[error("invalid command: {0}")]
    Invalid(String),
    /// A stored event of the aggregate cannot be decoded by this build.
    #[error("{address}: a stored event cannot be read: {message}")]
    Corrupt {
        /// The aggregate addressed.
        address: String,
        /// What is wrong.
        message: String,
    },
    /// The event log is unreachable or failed; retrying with the same command id is safe.
    #[error("event log unavailable: {0}")]
    Unavailable(String),
}

/// What a command did.
#[derive(Debug, Clone)]
pub struct Outcome<A: Aggregate> {
    /// The events this command appended (or had appended earlier, when
    /// `already_applied`); empty when the command changed nothing.
    pub events: Vec<EventEnvelope>,
    /// The stream sequence a reader must reach to see this command's effect.
    pub stream_sequence: u64,
    /// The aggregate's version after the command.
    pub aggregate_version: u64,
    /// True when this command id had been applied before and nothing new was written.
    pub already_applied: bool,
    /// How many times the command was decided (1 without conflicts).
    pub attempts: u32,
    /// The aggregate's state after the command.
    pub state: A,
}

/// An aggregate's state as loaded from the log, with its position.
#[derive(Debug, Clone)]
pub struct Loaded<A: Aggregate> {
    /// The state.
    pub state: A,
    /// Where it stands in the log.
    pub position: ExpectedPosition,
    /// The stored envelopes replayed: all of them, or those after the snapshot.
    pub envelopes: Vec<EventEnvelope>,
    /// The snapshot the state started from, if one was used.
    pub snapshot: Option<ExpectedPosition>,
    /// Command ids the snapshot remembers (its events are not in `envelopes`).
    pub snapshot_command_ids: Vec<String>,
}

/// Runs commands against the event log.
#[derive(Debug, Clone)]
pub struct CommandHandler {
    log: EventLog,
    max_attempts: u32,
    snapshot_every: Option<usize>,
    /// Shared by clones, so every task of a process uses one lane per aggregate.
    lanes: Arc<Lanes>,
}

impl CommandHandler {
    /// A handler over `log` with the default retry budget.
    pub fn new(log: EventLog) -> Self {
        CommandHandler {
            log,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            snapshot_every: Some(DEFAULT_SNAPSHOT_EVERY),
            lanes: Arc::default(),
        }
    }

    /// Uses snapshots, storing one when a load replays at least `every` events;
    /// `None` always replays every event (and stores no snapshot).
    pub fn with_snapshots(mut self, every: Option<usize>) -> Self {
        self.snapshot_every = every.map(|every| every.max(1));
        self
    }

    /// Sets how many times a command is decided before a conflict is reported.
    pub fn with_max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = max_attempts.max(1);
        self
    }

    /// The event log.
    pub fn log(&self) -> &EventLog {
        &self.log
    }

    /// The address of aggregate `id` of type `A` in `brand`, or a clear error.
    pub fn address<A: Aggregate>(brand: &BrandId, id: &str) -> Result<AggregateAddress, CommandError> {
        AggregateAddress::new(brand.clone(), A::KIND, id).map_err(|e| CommandError::Invalid(e.to_string()))
    }

    /// Loads an aggregate's state: from its snapshot and the events after it
    /// when there is a usable snapshot, else by replaying every event.
    pub async fn load<A: Aggregate>(&self, address: &AggregateAddress) -> Result<Loaded<A>, CommandError> {
        if let Some(every) = self.snapshot_every {
            // An aggregate shorter than the snapshot interval has no snapshot
            // worth its lookup: one read brings all of it.
            if let Some(stream) =
                self.log.load_if_short(address, every).await.map_err(|e| load_error(address, e))?
            {
                let loaded = replayed::<A>(address, stream)?;
                if loaded.envelopes.len() >= every {
                    self.store_snapshot(address, &loaded).await;
                }
                return Ok(loaded);
            }
        }
        if let Some(every) = self.snapshot_every
            && let Some(loaded) = self.load_from_snapshot::<A>(address).await?
        {
            if loaded.envelopes.len() >= every {
                self.store_snapshot(address, &loaded).await;
            }
            return Ok(loaded);
        }
        let stream = self.log.load(address).await.map_err(|e| load_error(address, e))?;
        let loaded = replayed::<A>(address, stream)?;
        if self.snapshot_every.is_some_and(|every| loaded.envelopes.len() >= every) {
            self.store_snapshot(address, &loaded).await;
        }
        Ok(loaded)
    }

    /// The state from the aggregate's snapshot plus the events after it; `None`
    /// when there is no snapshot this build can trust.
    async fn load_from_snapshot<A: Aggregate>(
        &self,
        address: &AggregateAddress,
    ) -> Result<Option<Loaded<A>>, CommandError> {
        let snapshot = match self.log.load_snapshot(address).await {
            Ok(Some(snapshot)) => snapshot,
            Ok(None) => return Ok(None),
            Err(error) => {
                tracing::warn!(%address, %error, "snapshot store unavailable; replaying every event");
                return Ok(None);
            }
        };
        if snapshot.state_version != A::STATE_VERSION || snapshot.aggregate_type != A::KIND.as_str() {
            return Ok(None);
        }
        let state: A = match serde_json::from_value(snapshot.state) {
            Ok(state) => state,
            Err(error) => {
                tracing::warn!(%address, %error, "ignoring a snapshot this build cannot read");
                return Ok(None);
            }
        };
        let anchor = snapshot.position;
        let Some(tail) =
            self.log.load_after_anchor(address, anchor.clone()).await.map_err(|e| load_error(address, e))?
        else {
            tracing::warn!(%address, "ignoring a snapshot whose last event is not in the log");
            return Ok(None);
        };
        Ok(Some(Loaded {
            state: replay::<A>(address, state, &tail.events)?,
            position: tail.position,
            envelopes: tail.events,
            snapshot: Some(anchor),
            snapshot_command_ids: snapshot.recent_command_ids,
        }))
    }

    /// Stores the loaded state as the aggregate's snapshot. A failure only
    /// costs the next load time, so it is logged, not returned.
    async fn store_snapshot<A: Aggregate>(&self, address: &AggregateAddress, loaded: &Loaded<A>) {
        let mut command_ids = loaded.snapshot_command_ids.clone();
        for envelope in &loaded.envelopes {
            if command_ids.last() != Some(&envelope.command_id) {
                command_ids.push(envelope.command_id.clone());
            }
        }
        let excess = command_ids.len().saturating_sub(gps_nats::snapshots::RECENT_COMMAND_IDS);
        command_ids.drain(..excess);
        let state = match serde_json::to_value(&loaded.state) {
            Ok(state) => state,
            Err(error) => {
                tracing::warn!(%address, %error, "state does not serialize; no snapshot stored");
                return;
            }
        };
        let snapshot = Snapshot {
            aggregate_type: A::KIND.as_str().to_owned(),
            state_version: A::STATE_VERSION,
            position: loaded.position.clone(),
            recent_command_ids: command_ids,
            state,
        };
        if let Err(error) = self.log.save_snapshot(address, &snapshot).await {
            tracing::warn!(%address, %error, "snapshot not stored");
        }
    }

    /// Decides `command` against the aggregate at `address` and appends the
    /// result, retrying on conflicts. Safe to repeat with the same command id.
    ///
    /// Commands for one aggregate run one at a time in this process (its
    /// lane, see [`lanes`]), each deciding on the state the previous one left,
    /// so they neither reload the aggregate nor conflict with each other.
    pub async fn execute<A: Aggregate>(
        &self,
        address: &AggregateAddress,
        meta: &CommandMeta,
        command: &A::Command,
    ) -> Result<Outcome<A>, CommandError> {
        self.execute_in_lane(address, meta, command, false).await
    }

    /// [`execute`](Self::execute) for a command that most likely creates its
    /// aggregate (a deterministic id seen for the first time): unless this
    /// process holds the aggregate's state, it decides on the empty state and
    /// appends without reading the log first. Outcomes are the same as
    /// `execute`'s: an aggregate that exists after all refuses the append
    /// (its expected sequence is 0), and the command is decided again on the
    /// events read then, or recognised as already applied.
    pub async fn execute_new<A: Aggregate>(
        &self,
        address: &AggregateAddress,
        meta: &CommandMeta,
        command: &A::Command,
    ) -> Result<Outcome<A>, CommandError> {
        self.execute_in_lane(address, meta, command, true).await
    }

    /// The aggregate's latest state and position, kept in its lane for the
    /// next command: a state this process holds is brought up to date by
    /// reading only the events after it, so a worker polling one aggregate
    /// reads one short tail per look instead of the whole history.
    pub async fn current<A: Aggregate>(
        &self,
        address: &AggregateAddress,
    ) -> Result<(A, ExpectedPosition), CommandError> {
        if address.kind() != A::KIND {
            return Err(CommandError::Invalid(format!("{address} is not a {}", A::KIND)));
        }
        let lane = self.lanes.lane(&address.subject());
        let mut slot = lane.lock().await;
        let current = match lanes::take::<A>(&mut slot) {
            Some(cached) => self.catch_up(address, cached).await?,
            None => self.load_for_command::<A>(address).await?,
        };
        let latest = (current.state.clone(), current.position.clone());
        lanes::keep(&mut slot, current);
        Ok(latest)
    }

    async fn execute_in_lane<A: Aggregate>(
        &self,
        address: &AggregateAddress,
        meta: &CommandMeta,
        command: &A::Command,
        probably_new: bool,
    ) -> Result<Outcome<A>, CommandError> {
        let result = self.decide_and_append::<A>(address, meta, command, probably_new).await;
        let metrics = gps_nats::metrics::metrics();
        let kind = A::KIND.as_str();
        let outcome = match &result {
            Ok(outcome) if outcome.already_applied => "already_applied",
            Ok(outcome) if outcome.events.is_empty() => "unchanged",
            Ok(_) => "applied",
            Err(CommandError::Rejected { .. }) => "rejected",
            Err(_) => "failed",
        };
        metrics.command(kind, outcome);
        if let Ok(outcome) = &result
            && !outcome.already_applied
        {
            let labels = gps_nats::metrics::AggregateLabels { aggregate: kind.to_owned() };
            // Each decision after the first followed an append another writer beat.
            if outcome.attempts > 1 {
                metrics.append_conflicts.get_or_create(&labels).inc_by(u64::from(outcome.attempts - 1));
            }
            metrics.events_appended.get_or_create(&labels).inc_by(outcome.events.len() as u64);
        }
        result
    }

    async fn decide_and_append<A: Aggregate>(
        &self,
        address: &AggregateAddress,
        meta: &CommandMeta,
        command: &A::Command,
        probably_new: bool,
    ) -> Result<Outcome<A>, CommandError> {
        if address.kind() != A::KIND {
            return Err(CommandError::Invalid(format!("a {} command cannot be sent to {address}", A::KIND)));
        }
        let lane = self.lanes.lane(&address.subject());
        let mut slot = lane.lock().await;
        // The state to decide on, and whether it was read from the log just
        // now (a cached one may be behind: another process appended).
        let mut cached = lanes::take::<A>(&mut slot).map(|state| (state, false));
        if cached.is_none() && probably_new {
            let empty = CachedState {
                state: A::default(),
                position: ExpectedPosition::new_aggregate(),
                command_ids: std::collections::HashSet::new(),
            };
            cached = Some((empty, false));
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (mut current, fresh) = match cached.take() {
                Some(current) => current,
                None => (self.load_for_command::<A>(address).await?, true),
            };
            if current.command_ids.contains(&meta.command_id) {
                // Its events are in the log; read them back to report them.
                drop(slot);
                return self.earlier_outcome::<A>(address, meta, attempt).await;
            }
            let decided = match current.state.decide(command) {
                Ok(decided) if !decided.is_empty() => decided,
                // A rejection or a no-op holds only for the latest state.
                _ if !fresh => {
                    cached = Some((self.catch_up(address, current).await?, true));
                    attempt -= 1;
                    continue;
                }
                Err(error) => {
                    lanes::keep(&mut slot, current);
                    return Err(CommandError::Rejected { address: describe(address), error });
                }
                Ok(_) => {
                    let outcome = Outcome {
                        events: Vec::new(),
                        stream_sequence: current.position.last_subject_sequence,
                        aggregate_version: current.position.aggregate_version,
                        already_applied: false,
                        attempts: attempt,
                        state: current.state.clone(),
                    };
                    lanes::keep(&mut slot, current);
                    return Ok(outcome);
                }
            };
            let request = AppendRequest {
                address: address.clone(),
                expected: current.position.clone(),
                command: meta.clone(),
                events: decided.iter().map(|event| NewEvent::from(wire::encode(event))).collect(),
            };
            match self.log.append(request).await {
                Ok(appended) => {
                    let state = decided.iter().fold(current.state, |state, event| state.evolve(event));
                    let position = appended.position();
                    if !appended.already_appended {
                        current.command_ids.insert(meta.command_id.clone());
                        lanes::keep(
                            &mut slot,
                            CachedState {
                                state: state.clone(),
                                position: position.clone(),
                                command_ids: current.command_ids,
                            },
                        );
                    }
                    return Ok(Outcome {
                        stream_sequence: position.last_subject_sequence,
                        aggregate_version: position.aggregate_version,
                        events: appended.envelopes,
                        already_applied: appended.already_appended,
                        attempts: attempt,
                        state,
                    });
                }
                Err(AppendError::Conflict { .. }) if attempt < self.max_attempts => {
                    tracing::debug!(%address, attempt, "conflict; reading the newer events and deciding again");
                    if attempt > 1 {
                        tokio::time::sleep(backoff(attempt)).await;
                    }
                    cached = Some((self.catch_up(address, current).await?, true));
                }
                Err(AppendError::Conflict { .. }) => {
                    return Err(CommandError::Conflict { address: describe(address), attempts: attempt });
                }
                Err(AppendError::CommandIdReused { command_id }) => {
                    return Err(CommandError::CommandIdReused { command_id });
                }
                Err(AppendError::Invalid(message)) => return Err(CommandError::Invalid(message)),
                Err(error @ AppendError::Unavailable { .. }) => {
                    return Err(CommandError::Unavailable(error.to_string()));
                }
            }
        }
    }

    /// Loads the aggregate for a command (from its snapshot when usable).
    async fn load_for_command<A: Aggregate>(
        &self,
        address: &AggregateAddress,
    ) -> Result<CachedState<A>, CommandError> {
        let loaded = self.load::<A>(address).await?;
        let mut command_ids: std::collections::HashSet<String> =
            loaded.snapshot_command_ids.iter().cloned().collect();
        command_ids.extend(loaded.envelopes.iter().map(|e| e.command_id.clone()));
        Ok(CachedState { state: loaded.state, position: loaded.position, command_ids })
    }

    /// Brings a cached state up to the end of the aggregate's events, reading
    /// only those after its position.
    async fn catch_up<A: Aggregate>(
        &self,
        address: &AggregateAddress,
        mut cached: CachedState<A>,
    ) -> Result<CachedState<A>, CommandError> {
        let tail = self
            .log
            .load_after(address, cached.position.clone())
            .await
            .map_err(|e| load_error(address, e))?;
        cached.state = replay::<A>(address, cached.state, &tail.events)?;
        cached.remember(&tail.events);
        cached.position = tail.position;
        Ok(cached)
    }

    /// The outcome of a command whose id is already part of the aggregate.
    async fn earlier_outcome<A: Aggregate>(
        &self,
        address: &AggregateAddress,
        meta: &CommandMeta,
        attempt: u32,
    ) -> Result<Outcome<A>, CommandError> {
        let loaded = self.load::<A>(address).await?;
        // Its events may predate the snapshot; then the current position is a
        // safe (later) sequence for a reader to wait for.
        let earlier: Vec<EventEnvelope> =
            loaded.envelopes.iter().filter(|e| e.command_id == meta.command_id).cloned().collect();
        Ok(Outcome {
            stream_sequence: earlier
                .last()
                .and_then(|e| e.stream_sequence)
                .unwrap_or(loaded.position.last_subject_sequence),
            aggregate_version: loaded.position.aggregate_version,
            events: earlier,
            already_applied: true,
            attempts: attempt,
            state: loaded.state,
        })
    }
}

/// A short, jittered pause so racing writers do not collide again in lockstep.
fn backoff(attempt: u32) -> Duration {
    let base = 2u64.saturating_pow(attempt.min(6));
    let jitter = u64::from(uuid::Uuid::new_v4().as_bytes()[0]) % (base + 1);
    Duration::from_millis(base + jitter)
}

fn describe(address: &AggregateAddress) -> String {
    address.to_string()
}

fn load_error(address: &AggregateAddress, error: LoadError) -> CommandError {
    match error {
        LoadError::Unavailable { .. } => CommandError::Unavailable(error.to_string()),
        LoadError::Corrupt { .. } => {
            CommandError::Corrupt { address: describe(address), message: error.to_string() }
        }
    }
}

/// An aggregate replayed from all of its events.
fn replayed<A: Aggregate>(
    address: &AggregateAddress,
    stream: LoadedStream,
) -> Result<Loaded<A>, CommandError> {
    Ok(Loaded {
        state: replay::<A>(address, A::default(), &stream.events)?,
        position: stream.position,
        envelopes: stream.events,
        snapshot: None,
        snapshot_command_ids: Vec::new(),
    })
}

/// Folds stored envelopes into `state`.
fn replay<A: Aggregate>(
    address: &AggregateAddress,
    state: A,
    envelopes: &[EventEnvelope],
) -> Result<A, CommandError> {
    envelopes
        .iter()
        .try_fold(state, |state, envelope| Ok(state.evolve(&decode_event::<A>(address, envelope)?)))
}

/// Decodes one stored envelope into the aggregate's event type.
pub fn decode_event<A: Aggregate>(
    address: &AggregateAddress,
    envelope: &EventEnvelope,
) -> Result<A::Event, CommandError> {
    wire::decode::<A::Event>(&envelope.event_type, envelope.schema_version, envelope.payload.clone()).map_err(
        |error: DecodeError| CommandError::Corrupt {
            address: describe(address),
            message: format!(
                "event {} (stream sequence {}): {error}",
                envelope.event_id,
                envelope.stream_sequence.unwrap_or(0)
            ),
        },
    )
}
