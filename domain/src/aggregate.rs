//! The shape every aggregate shares: `decide` turns a command into events or a
//! business rejection, `evolve` folds one event into the state. Both are pure.

use serde::{Serialize, de::DeserializeOwned};
use std::fmt::Debug;

use crate::wire::EventSchema;

/// The kind of an aggregate; its name is the `<aggregate>` token of the subject
/// `gps.evt.<brand>.<aggregate>.<id>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AggregateKind {
    /// The tenant: members, roles, API clients, channel presets.
    Brand,
    /// A catalog product with its images.
    Product,
    /// A virtual model identity.
    Subject,
    /// A visual style with its guidelines; each revision is a version.
    Style,
    /// A shooting: defaults, rules and its launch lifecycle.
    Shooting,
    /// One look of a shooting.
    Look,
    /// One generation run (a look × a shot type).
    Generation,
    /// One produced variant and its review.
    Prediction,
    /// One export of approved predictions to a destination.
    Export,
    /// One catalog import: its file, progress and per-row errors.
    Import,
    /// Someone who can sign in; platform-level (`gps.evt._platform.person.<id>`).
    Person,
    /// One record of someone reading audit history.
    AuditAccess,
}

impl AggregateKind {
    /// Every kind, in a stable order.
    pub const ALL: [AggregateKind; 12] = [
        AggregateKind::Brand,
        AggregateKind::Product,
        AggregateKind::Subject,
        AggregateKind::Style,
        AggregateKind::Shooting,
        AggregateKind::Look,
        AggregateKind::Generation,
        AggregateKind::Prediction,
        AggregateKind::Export,
        AggregateKind::Import,
        AggregateKind::Person,
        AggregateKind::AuditAccess,
    ];

    /// The subject token and wire name of this kind.
    pub const fn as_str(self) -> &'static str {
        match self {
            AggregateKind::Brand => "brand",
            AggregateKind::Product => "product",
            AggregateKind::Subject => "subject",
            AggregateKind::Style => "style",
            AggregateKind::Shooting => "shooting",
            AggregateKind::Look => "look",
            AggregateKind::Generation => "generation",
            AggregateKind::Prediction => "prediction",
            AggregateKind::Export => "export",
            AggregateKind::Import => "import",
            AggregateKind::Person => "person",
            AggregateKind::AuditAccess => "audit_access",
        }
    }

    /// Whether aggregates of this kind belong to no brand (their subjects use
    /// [`crate::ids::PLATFORM_SCOPE`] in the brand's place).
    pub const fn is_platform_level(self) -> bool {
        matches!(self, AggregateKind::Person)
    }

    /// Parses a wire name back into a kind.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

impl std::fmt::Display for AggregateKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A business rejection. Technical failures never appear here: the domain does
/// no IO, so it cannot have any.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// The command addresses an aggregate that has not been created.
    /// (The state of a never-created aggregate does not know its id; the command
    /// path names it when it reports the error.)
    #[error("this {kind} does not exist; create it first")]
    NotFound {
        /// Which kind of aggregate was addressed.
        kind: AggregateKind,
    },
    /// A create command addresses an aggregate that already exists.
    #[error("{kind} {id} already exists")]
    AlreadyExists {
        /// Which kind of aggregate was addressed.
        kind: AggregateKind,
        /// Its id.
        id: String,
    },
    /// The aggregate's lifecycle state does not allow the command now
    /// (e.g. editing an archived product). The message says what to do instead.
    #[error("{0}")]
    InvalidState(String),
    /// The command would break a business rule (e.g. removing the last owner).
    #[error("{0}")]
    RuleViolated(String),
}

impl DomainError {
    /// Shorthand for [`DomainError::InvalidState`].
    pub fn invalid_state(message: impl Into<String>) -> Self {
        DomainError::InvalidState(message.into())
    }

    /// Shorthand for [`DomainError::RuleViolated`].
    pub fn rule(message: impl Into<String>) -> Self {
        DomainError::RuleViolated(message.into())
    }
}

/// An event enum of one aggregate. Implemented by [`crate::domain_events!`], which
/// also keeps the wire names and schema versions next to the variants.
pub trait DomainEvent:
    Serialize + DeserializeOwned + Clone + Debug + PartialEq + Send + Sync + 'static
{
    /// The wire name, e.g. `product.created`; also the `Gps-Event-Type` header.
    fn event_type(&self) -> &'static str;
    /// The schema version this value is written with (the current one).
    fn schema_version(&self) -> u32;
    /// Every event type of this enum with its current version and JSON Schema.
    fn catalog() -> Vec<EventSchema>;
    /// Turns a payload written with an older schema version into the current
    /// shape. Versions the enum does not know are refused, never guessed.
    fn upcast(
        event_type: &str,
        version: u32,
        payload: serde_json::Value,
    ) -> Result<serde_json::Value, crate::wire::DecodeError> {
        crate::wire::refuse_unknown_version::<Self>(event_type, version, payload)
    }
}

/// An event-sourced aggregate: state rebuilt from its events, commands decided
/// against that state.
///
/// The state is serializable so it can be snapshotted: a snapshot is a cache of
/// "the state after event N", never a source of truth.
pub trait Aggregate: Default + Clone + Debug + Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The kind, and so the subject token, of this aggregate.
    const KIND: AggregateKind;
    /// The version of the state's shape and of `evolve`'s meaning. Bump it when
    /// either changes: snapshots written by another version are ignored and the
    /// state is rebuilt from the events.
    const STATE_VERSION: u32;
    /// The imperative commands this aggregate accepts.
    type Command: Clone + Debug + Send + Sync;
    /// The past-tense events this aggregate records.
    type Event: DomainEvent;

    /// Decides what happens: the events to record, or why not. Returning no
    /// events means the command changes nothing (it is already satisfied).
    fn decide(&self, command: &Self::Command) -> Result<Vec<Self::Event>, DomainError>;

    /// Folds one recorded event into the state.
    fn evolve(self, event: &Self::Event) -> Self;

    /// Rebuilds a state from its events, oldest first.
    fn replay<'a>(events: impl IntoIterator<Item = &'a Self::Event>) -> Self {
        events.into_iter().fold(Self::default(), Self::evolve)
    }
}

/// Declares an aggregate's event enum: one variant per event, each wrapping a
/// payload struct, with its wire name and schema version. Generates the serde
/// encoding (`{"type": …, "data": …}`), [`DomainEvent`] and `From` impls.
#[macro_export]
macro_rules! domain_events {
    (
        aggregate: $kind:ident,
        $(upcast: $upcast:path,)?
        $(#[$meta:meta])*
        pub enum $name:ident {
            $(
                $(#[$vmeta:meta])*
                $variant:ident($payload:ty) = ($type_name:literal, $version:literal)
            ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
        #[serde(tag = "type", content = "data")]
        pub enum $name {
            $(
                $(#[$vmeta])*
                #[serde(rename = $type_name)]
                $variant($payload),
            )+
        }

        impl $crate::DomainEvent for $name {
            fn event_type(&self) -> &'static str {
                match self { $( Self::$variant(_) => $type_name, )+ }
            }
            fn schema_version(&self) -> u32 {
                match self { $( Self::$variant(_) => $version, )+ }
            }
            fn catalog() -> Vec<$crate::wire::EventSchema> {
                vec![
                    $(
                        $crate::wire::EventSchema {
                            event_type: $type_name,
                            version: $version,
                            aggregate: $crate::AggregateKind::$kind,
                            schema: || schemars::schema_for!($payload),
                        },
                    )+
                ]
            }
            $(
                fn upcast(
                    event_type: &str,
                    version: u32,
                    payload: serde_json::Value,
                ) -> Result<serde_json::Value, $crate::wire::DecodeError> {
                    $upcast(event_type, version, payload)
                }
            )?
        }

        $(
            impl From<$payload> for $name {
                fn from(payload: $payload) -> Self { Self::$variant(payload) }
            }
        )+
    };
}
