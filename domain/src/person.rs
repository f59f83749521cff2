//! The Person aggregate: someone who can sign in. Registering, renaming,
//! changing the password and erasing a person are events, so the account
//! list is rebuilt from the log like every other read model; only what the
//! log must never hold (the password hash, sessions, the sealing keys) lives
//! in the credentials store outside the read database.
//!
//! Persons belong to no brand: their subjects are
//! `gps.evt._platform.person.<user id>` ([`crate::ids::PLATFORM_SCOPE`]),
//! which no brand id can name. What a person may do in a brand stays on the
//! Brand aggregate (membership and roles); the user id is the member id.
//!
//! Invariants kept here:
//! - personal data enters sealed: the email address and the display name are
//!   ciphertexts of the privacy vault, both under the same person's key, so
//!   destroying that key (erasure) leaves only noise in the log;
//! - a password change records *that* it changed, never the hash;
//! - an erased person accepts nothing more, and is never registered again
//!   under the same user id (the id stays in brand events as the member id).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::brand::{SealedData, SealedEmail};
use crate::ids::{MemberId, PersonId};
use crate::{Aggregate, AggregateKind, DomainError};

/// A display name sealed with its person's key from the privacy vault.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub struct SealedName {
    /// The person whose key seals it.
    pub person_id: PersonId,
    /// The sealed name.
    pub ciphertext: SealedData,
}

/// Person commands.
#[derive(Debug, Clone, PartialEq)]
pub enum PersonCommand {
    /// Registers a person who can sign in.
    RegisterPerson {
        /// The user id, also their member id in brands.
        user_id: MemberId,
        /// The sign-in address, sealed by the caller.
        email: SealedEmail,
        /// The display name, sealed by the caller with the same key.
        display_name: SealedName,
    },
    /// Replaces the display name.
    ChangeDisplayName {
        /// The new name, sealed with the person's key.
        display_name: SealedName,
    },
    /// Records that the password was changed (the hash itself is written to
    /// the credentials store, never to the log).
    ChangePassword,
    /// Erases the person: their sealed data becomes unreadable once the
    /// vault destroys their key, and they can no longer sign in.
    ErasePerson,
}

/// A person was registered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PersonRegistered {
    /// The user id, also their member id in brands.
    pub user_id: MemberId,
    /// The sign-in address, sealed.
    pub email: SealedEmail,
    /// The display name, sealed.
    pub display_name: SealedName,
}

/// The display name was replaced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PersonDisplayNameChanged {
    /// The new name, sealed.
    pub display_name: SealedName,
}

/// The password was changed. Deliberately empty: the log records that it
/// happened and who did it (the envelope's actor), never the secret or its hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PersonPasswordChanged {}

/// The person was erased.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PersonErased {}

crate::domain_events! {
    aggregate: Person,
    /// Person events.
    pub enum PersonEvent {
        /// See [`PersonRegistered`].
        Registered(PersonRegistered) = ("person.registered", 1),
        /// See [`PersonDisplayNameChanged`].
        DisplayNameChanged(PersonDisplayNameChanged) = ("person.display_name_changed", 1),
        /// See [`PersonPasswordChanged`].
        PasswordChanged(PersonPasswordChanged) = ("person.password_changed", 1),
        /// See [`PersonErased`].
        Erased(PersonErased) = ("person.erased", 1),
    }
}

/// The state of a person, rebuilt from their events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Person {
    /// The user id, once registered.
    pub user_id: Option<MemberId>,
    /// The vault person whose key seals their data.
    pub sealed_by: Option<PersonId>,
    /// Whether they were erased.
    pub erased: bool,
}

impl Person {
    /// Whether the person is registered and not erased.
    pub fn is_active(&self) -> bool {
        self.user_id.is_some() && !self.erased
    }

    fn active(&self) -> Result<(&MemberId, &PersonId), DomainError> {
        let (Some(user_id), Some(sealed_by)) = (&self.user_id, &self.sealed_by) else {
            return Err(DomainError::NotFound { kind: AggregateKind::Person });
        };
        if self.erased {
            return Err(DomainError::invalid_state(format!(
                "person {user_id} was erased and accepts no changes; register a new person instead"
            )));
        }
        Ok((user_id, sealed_by))
    }
}

impl Aggregate for Person {
    const KIND: AggregateKind = AggregateKind::Person;
    const STATE_VERSION: u32 = 1;
    type Command = PersonCommand;
    type Event = PersonEvent;

    fn decide(&self, command: &PersonCommand) -> Result<Vec<PersonEvent>, DomainError> {
        match command {
            PersonCommand::RegisterPerson { user_id, email, display_name } => {
                if let Some(existing) = &self.user_id {
                    return Err(DomainError::AlreadyExists {
                        kind: AggregateKind::Person,
                        id: existing.to_string(),
                    });
                }
                if display_name.person_id != email.person_id {
                    return Err(DomainError::rule(format!(
                        "the display name of {user_id} is sealed for {} but the email for {}; seal both with the same person's key",
                        display_name.person_id, email.person_id
                    )));
                }
                Ok(vec![
                    PersonRegistered {
                        user_id: user_id.clone(),
                        email: email.clone(),
                        display_name: display_name.clone(),
                    }
                    .into(),
                ])
            }
            PersonCommand::ChangeDisplayName { display_name } => {
                let (user_id, sealed_by) = self.active()?;
                if display_name.person_id != *sealed_by {
                    return Err(DomainError::rule(format!(
                        "the new display name of {user_id} is sealed for {} but their data is sealed for {sealed_by}",
                        display_name.person_id
                    )));
                }
                Ok(vec![PersonDisplayNameChanged { display_name: display_name.clone() }.into()])
            }
            PersonCommand::ChangePassword => {
                self.active()?;
                Ok(vec![PersonPasswordChanged {}.into()])
            }
            PersonCommand::ErasePerson => {
                if self.user_id.is_none() {
                    return Err(DomainError::NotFound { kind: AggregateKind::Person });
                }
                if self.erased {
                    return Ok(vec![]);
                }
                Ok(vec![PersonErased {}.into()])
            }
        }
    }

    fn evolve(mut self, event: &PersonEvent) -> Self {
        match event {
            PersonEvent::Registered(registered) => {
                self.user_id = Some(registered.user_id.clone());
                self.sealed_by = Some(registered.email.person_id.clone());
            }
            PersonEvent::DisplayNameChanged(_) | PersonEvent::PasswordChanged(_) => {}
            PersonEvent::Erased(_) => self.erased = true,
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_snapshot_round_trip, given};

    fn vault_person(id: &str) -> PersonId {
        PersonId::parse(id).expect("person id")
    }

    fn sealed(seed: char) -> SealedData {
        SealedData::parse(std::iter::repeat_n(seed, 64).collect::<String>()).expect("sealed")
    }

    fn email(person: &str) -> SealedEmail {
        SealedEmail { person_id: vault_person(person), ciphertext: sealed('a') }
    }

    fn name(person: &str, seed: char) -> SealedName {
        SealedName { person_id: vault_person(person), ciphertext: sealed(seed) }
    }

    fn ana() -> MemberId {
        MemberId::parse("ana").expect("member id")
    }

    fn registered() -> PersonEvent {
        PersonRegistered { user_id: ana(), email: email("person-1"), display_name: name("person-1", 'b') }
            .into()
    }

    #[test]
    fn a_new_person_is_registered_with_sealed_email_and_name() {
        given::<Person>(&[])
            .when(&PersonCommand::RegisterPerson {
                user_id: ana(),
                email: email("person-1"),
                display_name: name("person-1", 'b'),
            })
            .then(&[registered()]);
    }

    #[test]
    fn a_person_is_registered_only_once() {
        given::<Person>(&[registered()])
            .when(&PersonCommand::RegisterPerson {
                user_id: ana(),
                email: email("person-1"),
                display_name: name("person-1", 'b'),
            })
            .then_rejected(|e| matches!(e, DomainError::AlreadyExists { kind: AggregateKind::Person, .. }));
    }

    #[test]
    fn the_name_must_be_sealed_with_the_same_key_as_the_email() {
        given::<Person>(&[])
            .when(&PersonCommand::RegisterPerson {
                user_id: ana(),
                email: email("person-1"),
                display_name: name("person-2", 'b'),
            })
            .then_rejected(|e| e.to_string().contains("same person's key"));
        given::<Person>(&[registered()])
            .when(&PersonCommand::ChangeDisplayName { display_name: name("person-2", 'c') })
            .then_rejected(|e| matches!(e, DomainError::RuleViolated(_)));
    }

    #[test]
    fn a_registered_person_changes_their_name_and_password() {
        given::<Person>(&[registered()])
            .when(&PersonCommand::ChangeDisplayName { display_name: name("person-1", 'c') })
            .then(&[PersonDisplayNameChanged { display_name: name("person-1", 'c') }.into()]);
        given::<Person>(&[registered()])
            .when(&PersonCommand::ChangePassword)
            .then(&[PersonPasswordChanged {}.into()]);
    }

    #[test]
    fn the_password_change_event_carries_no_secret() {
        let json = serde_json::to_value(PersonEvent::from(PersonPasswordChanged {})).expect("json");
        assert_eq!(json, serde_json::json!({"type": "person.password_changed", "data": {}}));
    }

    #[test]
    fn an_unknown_person_cannot_change_or_be_erased() {
        for command in [PersonCommand::ChangePassword, PersonCommand::ErasePerson] {
            given::<Person>(&[])
                .when(&command)
                .then_rejected(|e| matches!(e, DomainError::NotFound { kind: AggregateKind::Person }));
        }
    }

    #[test]
    fn an_erased_person_accepts_nothing_and_erasing_again_changes_nothing() {
        given::<Person>(&[registered()]).when(&PersonCommand::ErasePerson).then(&[PersonErased {}.into()]);
        let erased = [registered(), PersonErased {}.into()];
        given::<Person>(&erased).when(&PersonCommand::ErasePerson).then(&[]);
        given::<Person>(&erased)
            .when(&PersonCommand::ChangePassword)
            .then_rejected(|e| e.to_string().contains("was erased"));
        given::<Person>(&erased)
            .when(&PersonCommand::RegisterPerson {
                user_id: ana(),
                email: email("person-3"),
                display_name: name("person-3", 'b'),
            })
            .then_rejected(|e| matches!(e, DomainError::AlreadyExists { .. }));
    }

    #[test]
    fn the_state_survives_a_snapshot() {
        let state = given::<Person>(&[registered(), PersonErased {}.into()]).state();
        assert!(!state.is_active());
        assert_snapshot_round_trip(&state);
    }
}
