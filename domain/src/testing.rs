//! Given / when / then helpers for aggregate tests.

use crate::values::{
    AspectRatio, AssetRef, Background, ChannelPresetSpec, ColourSpace, ContentHash, FitMode, ImageFormat,
};
use crate::{Aggregate, DomainError};

/// A state rebuilt from past events, ready for a command.
pub(crate) struct Given<A: Aggregate>(A);

/// The outcome of a command on a given state.
pub(crate) struct When<A: Aggregate>(Result<Vec<A::Event>, DomainError>);

/// Starts a scenario from these past events.
pub(crate) fn given<A: Aggregate>(events: &[A::Event]) -> Given<A> {
    Given(A::replay(events))
}

impl<A: Aggregate> Given<A> {
    /// Decides the command against the given state.
    pub(crate) fn when(self, command: &A::Command) -> When<A> {
        When(self.0.decide(command))
    }

    /// The state itself, for tests that inspect it.
    pub(crate) fn state(self) -> A {
        self.0
    }
}

impl<A: Aggregate> When<A> {
    /// Asserts these events were decided, exactly and in order.
    #[track_caller]
    pub(crate) fn then(self, expected: &[A::Event]) {
        match self.0 {
            Ok(events) => assert_eq!(events, expected),
            Err(error) => panic!("expected events {expected:?}, got rejection: {error}"),
        }
    }

    /// Asserts the command was rejected with an error matching `check`.
    #[track_caller]
    pub(crate) fn then_rejected(self, check: impl FnOnce(&DomainError) -> bool) {
        match self.0 {
            Ok(events) => panic!("expected a rejection, got events {events:?}"),
            Err(error) => assert!(check(&error), "unexpected rejection: {error:?}"),
        }
    }
}

/// Asserts a state survives the trip through its snapshot form unchanged, so a
/// loaded snapshot is the same state that replaying would build.
#[track_caller]
pub(crate) fn assert_snapshot_round_trip<A: Aggregate + PartialEq>(state: &A) {
    let json = serde_json::to_value(state).expect("a state serializes");
    let back: A = serde_json::from_value(json).expect("a snapshot deserializes");
    assert_eq!(&back, state, "the snapshot round trip changed the state");
}

/// A distinct asset reference per seed.
pub(crate) fn asset(seed: u8) -> AssetRef {
    AssetRef {
        hash: ContentHash::parse(format!("sha256:{}", format!("{seed:02x}").repeat(32))).expect("valid hash"),
        media_type: "image/jpeg".into(),
        bytes: 1000 + u64::from(seed),
        width: Some(2000),
        height: Some(2500),
    }
}

/// A valid square JPEG preset on white, for tests to vary with `..preset_spec()`.
pub(crate) fn preset_spec() -> ChannelPresetSpec {
    ChannelPresetSpec {
        long_edge_px: 2000,
        aspect_ratio: AspectRatio::parse("1:1").expect("ratio"),
        fit: FitMode::Pad,
        background: Background::White,
        format: ImageFormat::Jpeg,
        quality: 90,
        colour_space: ColourSpace::Srgb,
        max_bytes: None,
        naming_pattern: "{sku}_{view}_{n}.jpg".into(),
    }
}
