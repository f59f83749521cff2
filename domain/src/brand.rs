//! The Brand aggregate: the tenant. It owns who may act for the brand (members
//! with roles, machine API clients) and the channel presets exports format for.
//!
//! Invariants kept here:
//! - a brand always has at least one owner: the last owner can be neither
//!   removed nor demoted;
//! - one member per email address (compared case-insensitively);
//! - an API client is recorded with a short key fingerprint only — never the
//!   secret, never a hash of it (the gateway keeps the verifier outside the log,
//!   because the log is immutable and widely replicated); a revoked client stays
//!   revoked and its id and fingerprint are never reused;
//! - an API client holds at least one scope ([`ApiScope`]): what its key may be
//!   used for, within what its role allows;
//! - a channel preset's spec is valid, and every (re)definition gets the next
//!   version number of that channel, also across a removal, so
//!   `(channel, version)` always names one spec.
//!
//! Who may send which command is the gateway's decision (it reads roles through
//! [`Brand::role_of`] and [`Brand::api_client_role`]); this aggregate only keeps
//! the facts consistent.

use std::collections::{BTreeMap, BTreeSet};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ids::{ApiClientId, BrandId, MemberId, PersonId};
use crate::values::{Channel, ChannelPresetSpec, Name, Text, checked_string};
use crate::{Aggregate, AggregateKind, DomainError};

/// The most members one brand may have.
pub const MAX_MEMBERS: usize = 500;
/// The most active (not revoked) API clients one brand may have.
pub const MAX_API_CLIENTS: usize = 100;
/// The most channel presets one brand may define at a time.
pub const MAX_CHANNEL_PRESETS: usize = 100;

checked_string!(
    /// An email address, checked for its shape and stored lowercase.
    ///
    /// Only the shape is checked (one `@`, a plausible local part, a dotted domain);
    /// whether mail arrives is proven by an invitation, not here. The whole address
    /// is lowercased so that `Ana@Example.com` and `ana@example.com` count as the same
    /// person: mail providers treat them alike in practice.
    Email, "email address", check_email,
    {
        "type": "string",
        "format": "email",
        "maxLength": 254,
        "description": "An email address, lowercase."
    }
);

/// The longest accepted email address, in bytes (RFC 5321's path limit).
pub const MAX_EMAIL_LEN: usize = 254;

fn check_email(raw: &str) -> Result<String, String> {
    let refuse = |reason: &str| reason.to_owned();
    let address = raw.trim();
    if address.is_empty() {
        return Err(refuse("it is empty; write it as name@example.com"));
    }
    if address.len() > MAX_EMAIL_LEN {
        return Err(refuse("it is longer than 254 characters"));
    }
    let (local, domain) = match address.split_once('@') {
        Some((local, domain)) if !domain.contains('@') => (local, domain),
        _ => return Err(refuse("it needs exactly one '@', as in name@example.com")),
    };
    if local.is_empty() || local.len() > 64 {
        return Err(refuse("the part before '@' must be 1 to 64 characters long"));
    }
    let local_ok = |c: char| c.is_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c);
    if !local.chars().all(local_ok) || local.starts_with('.') || local.ends_with('.') || local.contains("..")
    {
        return Err(refuse(
            "the part before '@' may hold letters, digits and . _ % + - (no spaces, quotes, brackets or '..')",
        ));
    }
    let labels: Vec<&str> = domain.split('.').collect();
    let label_ok = |label: &&str| {
        (1..=63).contains(&label.len())
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_alphanumeric() || c == '-')
    };
    if labels.len() < 2 || !labels.iter().all(label_ok) {
        return Err(refuse("the part after '@' must be a domain such as example.com"));
    }
    if labels.last().is_some_and(|tld| tld.chars().all(|c| c.is_ascii_digit())) {
        return Err(refuse("the part after '@' must be a domain name, not an IP address"));
    }
    Ok(address.to_lowercase())
}

checked_string!(
    /// Personal data encrypted with its person's key from the privacy vault:
    /// hex of a 12-byte nonce, the AES-256-GCM ciphertext and its tag. Opaque
    /// to the domain; once the vault destroys the key it is noise forever.
    SealedData, "sealed data", check_sealed_data,
    {
        "type": "string",
        "pattern": "^[0-9a-f]{56,2048}$",
        "description": "Hex of nonce, AES-256-GCM ciphertext and tag; unreadable once the person's key is destroyed."
    }
);

fn check_sealed_data(input: &str) -> Result<String, String> {
    if !(56..=2048).contains(&input.len()) || !input.len().is_multiple_of(2) {
        return Err("give 56 to 2048 hex digits (nonce, ciphertext and tag)".into());
    }
    if input.chars().any(|c| !matches!(c, '0'..='9' | 'a'..='f')) {
        return Err("only lowercase hex digits are allowed".into());
    }
    Ok(input.to_owned())
}

/// An email address sealed for crypto-shredding: which person's key opens it,
/// and the ciphertext. Forgetting the person destroys the key, so the
/// immutable log keeps only noise and its hash chain stays intact.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub struct SealedEmail {
    /// The person whose key seals it.
    pub person_id: PersonId,
    /// The sealed address.
    pub ciphertext: SealedData,
}

/// A member's email address as events carry it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MemberEmail {
    /// In the clear: what `brand.member_added` v1 carried (upcast to this), and
    /// what only tests write. Cannot be forgotten from the log.
    Plain(Email),
    /// Sealed with the person's key; the way GPS writes it.
    Sealed(SealedEmail),
}

impl MemberEmail {
    /// What makes two addresses the same for "one member per email": the
    /// address itself, or the person the vault assigned to it (the vault gives
    /// one address one person, so sealing twice gives the same person).
    pub fn identity(&self) -> String {
        match self {
            MemberEmail::Plain(email) => format!("email:{email}"),
            MemberEmail::Sealed(sealed) => format!("person:{}", sealed.person_id),
        }
    }
}

impl std::fmt::Display for MemberEmail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MemberEmail::Plain(email) => write!(f, "{email}"),
            MemberEmail::Sealed(sealed) => write!(f, "the email address of person {}", sealed.person_id),
        }
    }
}

/// Upcasts stored brand events: `brand.member_added` v1 carried the email in
/// the clear as a string; v2 carries a [`MemberEmail`].
fn upcast_brand_event(
    event_type: &str,
    version: u32,
    mut payload: serde_json::Value,
) -> Result<serde_json::Value, crate::wire::DecodeError> {
    if event_type == "brand.member_added" && version == 1 {
        if let Some(email) = payload.get_mut("email") {
            *email = serde_json::json!({ "plain": email.take() });
        }
        return Ok(payload);
    }
    crate::wire::refuse_unknown_version::<BrandEvent>(event_type, version, payload)
}

checked_string!(
    /// The public fingerprint of an API client's key: 8 to 24 ASCII letters, digits,
    /// `-` or `_`, e.g. the `gps_3f9a1c2e` a key starts with.
    ///
    /// Long enough to tell keys apart in a list, deliberately too short to be a full
    /// hash of the secret: events are immutable and replicated to every consumer, so
    /// they must never carry material that helps to recover or verify a secret.
    KeyFingerprint, "key fingerprint", check_key_fingerprint,
    {
        "type": "string",
        "pattern": "^[A-Za-z0-9_-]{8,24}$",
        "description": "The public fingerprint of an API key; never the secret or its hash."
    }
);

/// The accepted length of a key fingerprint, in characters.
pub const KEY_FINGERPRINT_LEN: std::ops::RangeInclusive<usize> = 8..=24;

fn check_key_fingerprint(input: &str) -> Result<String, String> {
    if !KEY_FINGERPRINT_LEN.contains(&input.len()) {
        return Err("give the key's 8 to 24 character public prefix, never the secret or its hash".into());
    }
    if let Some(c) = input.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_')) {
        return Err(format!("it contains {c:?}; only letters, digits, '-' and '_' are allowed"));
    }
    Ok(input.to_owned())
}

/// What a member or API client may do for the brand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything, including membership, API clients and presets.
    Owner,
    /// Uploads products, configures shootings, runs generations, exports.
    Producer,
    /// Reviews: approves, rejects, requests revisions, comments.
    Reviewer,
    /// Reads everything, changes nothing.
    Viewer,
    /// Reads the history and verifies the log; changes nothing.
    Auditor,
}

impl Role {
    /// The wire name, for messages.
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Producer => "producer",
            Role::Reviewer => "reviewer",
            Role::Viewer => "viewer",
            Role::Auditor => "auditor",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an API client's key may be used for. A key can do what its role
/// allows *and* its scopes name, so a key can be narrower than its role (a
/// producer key that only streams events, say).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ApiScope {
    /// Read the brand's data through the query API.
    Read,
    /// Create and change products, subjects, styles, shootings, looks; run
    /// generations and exports.
    Produce,
    /// Approve, reject, request revisions, comment.
    Review,
    /// Read audit histories.
    Audit,
    /// Follow the brand's event stream (`GET /api/v1/brands/{brand}/events`).
    Stream,
}

impl ApiScope {
    /// Every scope, in wire order.
    pub const ALL: [ApiScope; 5] =
        [ApiScope::Read, ApiScope::Produce, ApiScope::Review, ApiScope::Audit, ApiScope::Stream];

    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            ApiScope::Read => "read",
            ApiScope::Produce => "produce",
            ApiScope::Review => "review",
            ApiScope::Audit => "audit",
            ApiScope::Stream => "stream",
        }
    }

    /// Parses a wire name, explaining a refusal with the names that exist.
    pub fn parse(raw: &str) -> Result<Self, String> {
        ApiScope::ALL.into_iter().find(|scope| scope.as_str() == raw.trim()).ok_or_else(|| {
            let known: Vec<&str> = ApiScope::ALL.iter().map(|scope| scope.as_str()).collect();
            format!("unknown scope {raw:?}; use {}", known.join(", "))
        })
    }
}

impl std::fmt::Display for ApiScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Brand commands.
#[derive(Debug, Clone, PartialEq)]
pub enum BrandCommand {
    /// Creates the brand with its founding owner.
    CreateBrand {
        /// The new brand's id.
        brand_id: BrandId,
        /// Display name.
        name: Name,
        /// The founding owner's member id.
        owner_member_id: MemberId,
        /// The founding owner's display name.
        owner_display_name: Name,
        /// The founding owner's email address (sealed by the caller).
        owner_email: MemberEmail,
    },
    /// Changes the brand's display name.
    RenameBrand {
        /// The new name.
        name: Name,
    },
    /// Adds a person to the brand.
    AddMember {
        /// The member's id.
        member_id: MemberId,
        /// Display name.
        display_name: Name,
        /// Email address (sealed by the caller); one member per address.
        email: MemberEmail,
        /// Role.
        role: Role,
    },
    /// Gives a member another role.
    ChangeMemberRole {
        /// The member.
        member_id: MemberId,
        /// The new role.
        role: Role,
    },
    /// Removes a person from the brand.
    RemoveMember {
        /// The member.
        member_id: MemberId,
    },
    /// Registers a machine client of the brand's API. The secret itself never
    /// reaches the domain: the gateway generates it, shows it once and keeps only
    /// a verifier; the command carries the key's public fingerprint.
    RegisterApiClient {
        /// The client's id.
        api_client_id: ApiClientId,
        /// What the client is, e.g. "PIM sync".
        name: Name,
        /// What it may do; owners are people, so never [`Role::Owner`].
        role: Role,
        /// The public fingerprint of its key.
        key_fingerprint: KeyFingerprint,
        /// What its key may be used for (at least one scope).
        scopes: BTreeSet<ApiScope>,
    },
    /// Revokes an API client for good.
    RevokeApiClient {
        /// The client.
        api_client_id: ApiClientId,
        /// Why, for the audit trail.
        reason: Option<Text>,
    },
    /// Defines a new channel preset (version 1, or the next version after a removal).
    DefineChannelPreset {
        /// The channel's name.
        channel: Channel,
        /// What the channel requires.
        spec: ChannelPresetSpec,
    },
    /// Records a new version of an existing channel preset.
    RedefineChannelPreset {
        /// The channel's name.
        channel: Channel,
        /// The new, complete spec.
        spec: ChannelPresetSpec,
    },
    /// Removes a channel preset; exports already made keep their rendition specs.
    RemoveChannelPreset {
        /// The channel's name.
        channel: Channel,
    },
}

/// A brand was created. Its founding owner follows as [`MemberAdded`] in the
/// same atomic write, so member read models have one source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BrandCreated {
    /// The brand's id.
    pub brand_id: BrandId,
    /// Display name.
    pub name: Name,
}

/// The brand was renamed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BrandRenamed {
    /// The new name.
    pub name: Name,
}

/// A person became a member of the brand.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MemberAdded {
    /// The member's id.
    pub member_id: MemberId,
    /// Display name.
    pub display_name: Name,
    /// Email address: sealed with the person's key (v2), or in the clear
    /// when upcast from v1.
    pub email: MemberEmail,
    /// Role.
    pub role: Role,
}

/// A member's role changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MemberRoleChanged {
    /// The member.
    pub member_id: MemberId,
    /// The role before the change, so the audit trail reads without replaying.
    pub previous_role: Role,
    /// The new role.
    pub role: Role,
}

/// A person was removed from the brand.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MemberRemoved {
    /// The removed member.
    pub member_id: MemberId,
}

/// An API client was registered. Carries the key's public fingerprint only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ApiClientRegistered {
    /// The client's id.
    pub api_client_id: ApiClientId,
    /// What the client is.
    pub name: Name,
    /// What it may do.
    pub role: Role,
    /// The public fingerprint of its key.
    pub key_fingerprint: KeyFingerprint,
    /// What its key may be used for. Absent in events recorded before scopes
    /// existed: such a client keeps every scope but `stream`, so it works
    /// exactly as it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<BTreeSet<ApiScope>>,
}

/// An API client was revoked for good.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ApiClientRevoked {
    /// The revoked client.
    pub api_client_id: ApiClientId,
    /// Why, if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Text>,
}

/// A channel preset was defined.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChannelPresetDefined {
    /// The channel's name.
    pub channel: Channel,
    /// The version of this definition: 1, or the next one after a removal.
    pub version: u32,
    /// What the channel requires.
    pub spec: ChannelPresetSpec,
}

/// A channel preset got a new version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChannelPresetRedefined {
    /// The channel's name.
    pub channel: Channel,
    /// The new version number.
    pub version: u32,
    /// The new, complete spec.
    pub spec: ChannelPresetSpec,
}

/// A channel preset was removed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChannelPresetRemoved {
    /// The channel's name.
    pub channel: Channel,
}

/// Someone read an aggregate's audit history (the envelope's actor, at the
/// envelope's time). Older records only: the brand grew by one event per read,
/// so reads are now recorded as aggregates of their own
/// (`audit_access.recorded`); the records already on brands stay and decode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AuditAccessed {
    /// The aggregate type read, e.g. `prediction`.
    pub aggregate_type: String,
    /// The aggregate's id.
    pub aggregate_id: String,
    /// The instant the history was cut at, if any (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_of: Option<String>,
}

crate::domain_events! {
    aggregate: Brand,
    upcast: upcast_brand_event,
    /// Brand events.
    pub enum BrandEvent {
        /// See [`BrandCreated`].
        Created(BrandCreated) = ("brand.created", 1),
        /// See [`BrandRenamed`].
        Renamed(BrandRenamed) = ("brand.renamed", 1),
        /// See [`MemberAdded`].
        MemberAdded(MemberAdded) = ("brand.member_added", 2),
        /// See [`MemberRoleChanged`].
        MemberRoleChanged(MemberRoleChanged) = ("brand.member_role_changed", 1),
        /// See [`MemberRemoved`].
        MemberRemoved(MemberRemoved) = ("brand.member_removed", 1),
        /// See [`ApiClientRegistered`].
        ApiClientRegistered(ApiClientRegistered) = ("brand.api_client_registered", 1),
        /// See [`ApiClientRevoked`].
        ApiClientRevoked(ApiClientRevoked) = ("brand.api_client_revoked", 1),
        /// See [`ChannelPresetDefined`].
        ChannelPresetDefined(ChannelPresetDefined) = ("brand.channel_preset_defined", 1),
        /// See [`ChannelPresetRedefined`].
        ChannelPresetRedefined(ChannelPresetRedefined) = ("brand.channel_preset_redefined", 1),
        /// See [`ChannelPresetRemoved`].
        ChannelPresetRemoved(ChannelPresetRemoved) = ("brand.channel_preset_removed", 1),
        /// See [`AuditAccessed`].
        AuditAccessed(AuditAccessed) = ("brand.audit_accessed", 1),
    }
}

/// A member as the state keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Member {
    /// Display name.
    pub display_name: Name,
    /// Email address, as the event carried it.
    pub email: MemberEmail,
    /// Role.
    pub role: Role,
}

/// An API client as the state keeps it; revoked clients stay, so their id and
/// fingerprint are never reused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ApiClient {
    /// What the client is.
    pub name: Name,
    /// What it may do.
    pub role: Role,
    /// The public fingerprint of its key.
    pub key_fingerprint: KeyFingerprint,
    /// Whether it was revoked.
    pub revoked: bool,
    /// Its scopes; `None` for a client registered before scopes existed.
    #[serde(default)]
    pub scopes: Option<BTreeSet<ApiScope>>,
}

impl ApiClient {
    /// The scopes of a client registered before scopes existed: everything
    /// its key could be used for then, which excludes the later `stream`.
    pub const SCOPES_BEFORE_SCOPES_EXISTED: [ApiScope; 4] =
        [ApiScope::Read, ApiScope::Produce, ApiScope::Review, ApiScope::Audit];

    /// Whether the client's key may be used for `scope` (its role decides
    /// separately whether the client may do the thing at all).
    pub fn has_scope(&self, scope: ApiScope) -> bool {
        match &self.scopes {
            Some(scopes) => scopes.contains(&scope),
            None => Self::SCOPES_BEFORE_SCOPES_EXISTED.contains(&scope),
        }
    }
}

/// A channel preset as the state keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ChannelPreset {
    /// The current version.
    pub version: u32,
    /// The current spec.
    pub spec: ChannelPresetSpec,
}

/// The state of a brand, rebuilt from its events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Brand {
    /// Present once created; the name follows renames.
    pub details: Option<BrandCreated>,
    /// Members by id.
    pub members: BTreeMap<MemberId, Member>,
    /// API clients by id, revoked ones included.
    pub api_clients: BTreeMap<ApiClientId, ApiClient>,
    /// Defined channel presets by channel.
    pub channel_presets: BTreeMap<Channel, ChannelPreset>,
    /// The last version each channel ever had, kept across removals.
    pub last_preset_versions: BTreeMap<Channel, u32>,
}

impl Brand {
    /// Whether the brand has been created.
    pub fn exists(&self) -> bool {
        self.details.is_some()
    }

    /// The role of a member, if they belong to the brand.
    pub fn role_of(&self, member_id: &MemberId) -> Option<Role> {
        self.members.get(member_id).map(|member| member.role)
    }

    /// The role of an API client, if it is registered and not revoked.
    pub fn api_client_role(&self, api_client_id: &ApiClientId) -> Option<Role> {
        self.api_clients.get(api_client_id).filter(|client| !client.revoked).map(|client| client.role)
    }

    /// An API client that is registered and not revoked.
    pub fn active_api_client(&self, api_client_id: &ApiClientId) -> Option<&ApiClient> {
        self.api_clients.get(api_client_id).filter(|client| !client.revoked)
    }

    /// The current version and spec of a channel preset, if defined.
    pub fn channel_preset(&self, channel: &Channel) -> Option<(u32, &ChannelPresetSpec)> {
        self.channel_presets.get(channel).map(|preset| (preset.version, &preset.spec))
    }

    fn existing(&self) -> Result<&BrandCreated, DomainError> {
        self.details.as_ref().ok_or(DomainError::NotFound { kind: AggregateKind::Brand })
    }

    fn member(&self, brand: &BrandCreated, member_id: &MemberId) -> Result<&Member, DomainError> {
        self.members.get(member_id).ok_or_else(|| {
            DomainError::rule(format!("brand {} has no member {member_id}; add them first", brand.brand_id))
        })
    }

    /// Refuses to take the owner role away from the last owner.
    fn keep_an_owner(
        &self,
        brand: &BrandCreated,
        member_id: &MemberId,
        member: &Member,
        doing: &str,
    ) -> Result<(), DomainError> {
        let owners = self.members.values().filter(|m| m.role == Role::Owner).count();
        if member.role == Role::Owner && owners == 1 {
            return Err(DomainError::rule(format!(
                "{member_id} is the last owner of brand {}; make another member an owner before {doing} them",
                brand.brand_id
            )));
        }
        Ok(())
    }
}

fn check_preset(channel: &Channel, spec: &ChannelPresetSpec) -> Result<(), DomainError> {
    spec.validate().map_err(|error| DomainError::rule(format!("channel preset {channel}: {error}")))
}

impl Aggregate for Brand {
    const KIND: AggregateKind = AggregateKind::Brand;
    // 2: members keep a `MemberEmail` (sealed or plain) instead of an `Email`.
    // 3: API clients keep their scopes; a snapshot written before would read
    //    every client as one without scopes.
    const STATE_VERSION: u32 = 3;
    type Command = BrandCommand;
    type Event = BrandEvent;

    fn decide(&self, command: &BrandCommand) -> Result<Vec<BrandEvent>, DomainError> {
        match command {
            BrandCommand::CreateBrand {
                brand_id,
                name,
                owner_member_id,
                owner_display_name,
                owner_email,
            } => {
                if self.details.is_some() {
                    return Err(DomainError::AlreadyExists {
                        kind: AggregateKind::Brand,
                        id: brand_id.to_string(),
                    });
                }
                Ok(vec![
                    BrandCreated { brand_id: brand_id.clone(), name: name.clone() }.into(),
                    MemberAdded {
                        member_id: owner_member_id.clone(),
                        display_name: owner_display_name.clone(),
                        email: owner_email.clone(),
                        role: Role::Owner,
                    }
                    .into(),
                ])
            }
            BrandCommand::RenameBrand { name } => {
                let brand = self.existing()?;
                if brand.name == *name {
                    return Ok(vec![]);
                }
                Ok(vec![BrandRenamed { name: name.clone() }.into()])
            }
            BrandCommand::AddMember { member_id, display_name, email, role } => {
                let brand = self.existing()?;
                if let Some(existing) = self.members.get(member_id) {
                    if existing.display_name == *display_name
                        && existing.email.identity() == email.identity()
                        && existing.role == *role
                    {
                        return Ok(vec![]);
                    }
                    return Err(DomainError::rule(format!(
                        "brand {} already has a member {member_id}; change their role, or use another id for another person",
                        brand.brand_id
                    )));
                }
                if let Some((other, _)) =
                    self.members.iter().find(|(_, member)| member.email.identity() == email.identity())
                {
                    return Err(DomainError::rule(format!(
                        "{email} already belongs to member {other} of brand {}; change that member's role instead",
                        brand.brand_id
                    )));
                }
                if self.members.len() >= MAX_MEMBERS {
                    return Err(DomainError::rule(format!(
                        "brand {} already has {MAX_MEMBERS} members, the most allowed; remove one first",
                        brand.brand_id
                    )));
                }
                Ok(vec![
                    MemberAdded {
                        member_id: member_id.clone(),
                        display_name: display_name.clone(),
                        email: email.clone(),
                        role: *role,
                    }
                    .into(),
                ])
            }
            BrandCommand::ChangeMemberRole { member_id, role } => {
                let brand = self.existing()?;
                let member = self.member(brand, member_id)?;
                if member.role == *role {
                    return Ok(vec![]);
                }
                self.keep_an_owner(brand, member_id, member, "demoting")?;
                Ok(vec![
                    MemberRoleChanged {
                        member_id: member_id.clone(),
                        previous_role: member.role,
                        role: *role,
                    }
                    .into(),
                ])
            }
            BrandCommand::RemoveMember { member_id } => {
                let brand = self.existing()?;
                let member = self.member(brand, member_id)?;
                self.keep_an_owner(brand, member_id, member, "removing")?;
                Ok(vec![MemberRemoved { member_id: member_id.clone() }.into()])
            }
            BrandCommand::RegisterApiClient { api_client_id, name, role, key_fingerprint, scopes } => {
                let brand = self.existing()?;
                if *role == Role::Owner {
                    return Err(DomainError::rule(
                        "an API client cannot be an owner, owners are people; \
                         give it the producer, reviewer, viewer or auditor role",
                    ));
                }
                if scopes.is_empty() {
                    return Err(DomainError::rule(
                        "an API client needs at least one scope (read, produce, review, audit or stream)",
                    ));
                }
                if let Some(existing) = self.api_clients.get(api_client_id) {
                    if existing.revoked {
                        return Err(DomainError::invalid_state(format!(
                            "API client {api_client_id} was revoked and cannot be reused; \
                             register a new client under a new id"
                        )));
                    }
                    if existing.name == *name
                        && existing.role == *role
                        && existing.key_fingerprint == *key_fingerprint
                        && existing.scopes.as_ref() == Some(scopes)
                    {
                        return Ok(vec![]);
                    }
                    return Err(DomainError::invalid_state(format!(
                        "brand {} already has an API client {api_client_id}; \
                         revoke it and register a new one to change it",
                        brand.brand_id
                    )));
                }
                if let Some((other, _)) =
                    self.api_clients.iter().find(|(_, client)| client.key_fingerprint == *key_fingerprint)
                {
                    return Err(DomainError::rule(format!(
                        "key fingerprint {key_fingerprint} already belongs to API client {other}; issue a new key"
                    )));
                }
                let active = self.api_clients.values().filter(|client| !client.revoked).count();
                if active >= MAX_API_CLIENTS {
                    return Err(DomainError::rule(format!(
                        "brand {} already has {MAX_API_CLIENTS} active API clients, the most allowed; revoke one first",
                        brand.brand_id
                    )));
                }
                Ok(vec![
                    ApiClientRegistered {
                        api_client_id: api_client_id.clone(),
                        name: name.clone(),
                        role: *role,
                        key_fingerprint: key_fingerprint.clone(),
                        scopes: Some(scopes.clone()),
                    }
                    .into(),
                ])
            }
            BrandCommand::RevokeApiClient { api_client_id, reason } => {
                let brand = self.existing()?;
                let client = self.api_clients.get(api_client_id).ok_or_else(|| {
                    DomainError::rule(format!("brand {} has no API client {api_client_id}", brand.brand_id))
                })?;
                if client.revoked {
                    return Err(DomainError::invalid_state(format!(
                        "API client {api_client_id} is already revoked; register a new client if access is needed again"
                    )));
                }
                Ok(vec![
                    ApiClientRevoked { api_client_id: api_client_id.clone(), reason: reason.clone() }.into(),
                ])
            }
            BrandCommand::DefineChannelPreset { channel, spec } => {
                let brand = self.existing()?;
                check_preset(channel, spec)?;
                if let Some(existing) = self.channel_presets.get(channel) {
                    if existing.spec == *spec {
                        return Ok(vec![]);
                    }
                    return Err(DomainError::rule(format!(
                        "brand {} already defines channel preset {channel} (version {}); redefine it to change it",
                        brand.brand_id, existing.version
                    )));
                }
                if self.channel_presets.len() >= MAX_CHANNEL_PRESETS {
                    return Err(DomainError::rule(format!(
                        "brand {} already has {MAX_CHANNEL_PRESETS} channel presets, the most allowed; remove one first",
                        brand.brand_id
                    )));
                }
                let version = self.last_preset_versions.get(channel).map_or(1, |last| last + 1);
                Ok(vec![
                    ChannelPresetDefined { channel: channel.clone(), version, spec: spec.clone() }.into(),
                ])
            }
            BrandCommand::RedefineChannelPreset { channel, spec } => {
                let brand = self.existing()?;
                check_preset(channel, spec)?;
                let existing = self.channel_presets.get(channel).ok_or_else(|| {
                    DomainError::rule(format!(
                        "brand {} has no channel preset {channel}; define it first",
                        brand.brand_id
                    ))
                })?;
                if existing.spec == *spec {
                    return Ok(vec![]);
                }
                Ok(vec![
                    ChannelPresetRedefined {
                        channel: channel.clone(),
                        version: existing.version + 1,
                        spec: spec.clone(),
                    }
                    .into(),
                ])
            }
            BrandCommand::RemoveChannelPreset { channel } => {
                let brand = self.existing()?;
                if !self.channel_presets.contains_key(channel) {
                    return Err(DomainError::rule(format!(
                        "brand {} has no channel preset {channel}",
                        brand.brand_id
                    )));
                }
                Ok(vec![ChannelPresetRemoved { channel: channel.clone() }.into()])
            }
        }
    }

    fn evolve(mut self, event: &BrandEvent) -> Self {
        match event {
            BrandEvent::Created(created) => self.details = Some(created.clone()),
            BrandEvent::Renamed(renamed) => {
                if let Some(details) = self.details.as_mut() {
                    details.name = renamed.name.clone();
                }
            }
            BrandEvent::MemberAdded(added) => {
                self.members.insert(
                    added.member_id.clone(),
                    Member {
                        display_name: added.display_name.clone(),
                        email: added.email.clone(),
                        role: added.role,
                    },
                );
            }
            BrandEvent::MemberRoleChanged(changed) => {
                if let Some(member) = self.members.get_mut(&changed.member_id) {
                    member.role = changed.role;
                }
            }
            BrandEvent::MemberRemoved(removed) => {
                self.members.remove(&removed.member_id);
            }
            BrandEvent::ApiClientRegistered(registered) => {
                self.api_clients.insert(
                    registered.api_client_id.clone(),
                    ApiClient {
                        name: registered.name.clone(),
                        role: registered.role,
                        key_fingerprint: registered.key_fingerprint.clone(),
                        revoked: false,
                        scopes: registered.scopes.clone(),
                    },
                );
            }
            BrandEvent::ApiClientRevoked(revoked) => {
                if let Some(client) = self.api_clients.get_mut(&revoked.api_client_id) {
                    client.revoked = true;
                }
            }
            BrandEvent::ChannelPresetDefined(ChannelPresetDefined { channel, version, spec })
            | BrandEvent::ChannelPresetRedefined(ChannelPresetRedefined { channel, version, spec }) => {
                self.channel_presets
                    .insert(channel.clone(), ChannelPreset { version: *version, spec: spec.clone() });
                let last = self.last_preset_versions.entry(channel.clone()).or_default();
                *last = (*last).max(*version);
            }
            BrandEvent::ChannelPresetRemoved(removed) => {
                self.channel_presets.remove(&removed.channel);
            }
            // A record of reading; it changes nothing the brand decides with.
            BrandEvent::AuditAccessed(_) => {}
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{given, preset_spec};

    fn spec(quality: u8) -> ChannelPresetSpec {
        ChannelPresetSpec { quality, naming_pattern: "{sku}_{n}.jpg".into(), ..preset_spec() }
    }

    fn id(member: &str) -> MemberId {
        MemberId::parse(member).expect("member id")
    }

    fn client_id(client: &str) -> ApiClientId {
        ApiClientId::parse(client).expect("client id")
    }

    fn name(text: &str) -> Name {
        Name::parse(text).expect("name")
    }

    fn email(address: &str) -> MemberEmail {
        MemberEmail::Plain(Email::parse(address).expect("email"))
    }

    fn fingerprint(text: &str) -> KeyFingerprint {
        KeyFingerprint::parse(text).expect("fingerprint")
    }

    fn channel(text: &str) -> Channel {
        Channel::parse(text).expect("channel")
    }

    fn created() -> BrandEvent {
        BrandCreated { brand_id: BrandId::parse("acme").expect("id"), name: name("Acme") }.into()
    }

    fn owner_added() -> BrandEvent {
        member_added("ana", "ana@acme.example", Role::Owner)
    }

    fn member_added(member: &str, address: &str, role: Role) -> BrandEvent {
        MemberAdded { member_id: id(member), display_name: name(member), email: email(address), role }.into()
    }

    fn founded() -> Vec<BrandEvent> {
        vec![created(), owner_added()]
    }

    fn with(mut history: Vec<BrandEvent>, more: impl IntoIterator<Item = BrandEvent>) -> Vec<BrandEvent> {
        history.extend(more);
        history
    }

    fn add_member(member: &str, address: &str, role: Role) -> BrandCommand {
        BrandCommand::AddMember {
            member_id: id(member),
            display_name: name(member),
            email: email(address),
            role,
        }
    }

    fn pim_scopes() -> BTreeSet<ApiScope> {
        [ApiScope::Read, ApiScope::Produce, ApiScope::Stream].into()
    }

    fn registered(client: &str, key: &str) -> BrandEvent {
        ApiClientRegistered {
            api_client_id: client_id(client),
            name: name("PIM sync"),
            role: Role::Producer,
            key_fingerprint: fingerprint(key),
            scopes: Some(pim_scopes()),
        }
        .into()
    }

    fn register(client: &str, key: &str) -> BrandCommand {
        BrandCommand::RegisterApiClient {
            api_client_id: client_id(client),
            name: name("PIM sync"),
            role: Role::Producer,
            key_fingerprint: fingerprint(key),
            scopes: pim_scopes(),
        }
    }

    fn revoked(client: &str) -> BrandEvent {
        ApiClientRevoked { api_client_id: client_id(client), reason: None }.into()
    }

    fn preset_defined(version: u32, quality: u8) -> BrandEvent {
        ChannelPresetDefined { channel: channel("web-pdp"), version, spec: spec(quality) }.into()
    }

    fn define(quality: u8) -> BrandCommand {
        BrandCommand::DefineChannelPreset { channel: channel("web-pdp"), spec: spec(quality) }
    }

    fn redefine(quality: u8) -> BrandCommand {
        BrandCommand::RedefineChannelPreset { channel: channel("web-pdp"), spec: spec(quality) }
    }

    fn is_rule(error: &DomainError, needle: &str) -> bool {
        matches!(error, DomainError::RuleViolated(message) if message.contains(needle))
    }

    fn is_invalid_state(error: &DomainError, needle: &str) -> bool {
        matches!(error, DomainError::InvalidState(message) if message.contains(needle))
    }

    #[test]
    fn an_email_address_is_trimmed_and_lowercased() {
        assert_eq!(
            Email::parse("  Ana.Lima+gps@Acme.Example ").map(|e| e.to_string()),
            Ok("ana.lima+gps@acme.example".into())
        );
    }

    #[test]
    fn an_email_address_of_the_wrong_shape_is_refused() {
        for bad in [
            "",
            "ana",
            "ana@",
            "@acme.example",
            "ana@acme",
            "a@b@acme.example",
            "ana lima@acme.example",
            "ana@acme..example",
            "ana@-acme.example",
            ".ana@acme.example",
            "ana@10.0.0.1",
            "\"ana\"@acme.example",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn deserializing_an_email_address_checks_it_too() {
        assert!(serde_json::from_str::<Email>("\"ana@acme.example\"").is_ok());
        assert!(serde_json::from_str::<Email>("\"not-an-address\"").is_err());
    }

    #[test]
    fn a_key_fingerprint_too_long_to_be_anything_but_a_hash_is_refused() {
        assert!(KeyFingerprint::parse("gps_3f9a1c2e").is_ok());
        assert!(KeyFingerprint::parse("short").is_err());
        assert!(KeyFingerprint::parse("ab".repeat(32)).is_err());
        assert!(KeyFingerprint::parse("gps key 3f9a").is_err());
    }

    #[test]
    fn creating_a_brand_records_brand_created_and_its_founding_owner() {
        let command = BrandCommand::CreateBrand {
            brand_id: BrandId::parse("acme").expect("id"),
            name: name("Acme"),
            owner_member_id: id("ana"),
            owner_display_name: name("ana"),
            owner_email: email("ana@acme.example"),
        };
        given::<Brand>(&[]).when(&command).then(&founded());
    }

    #[test]
    fn creating_a_brand_that_exists_is_rejected() {
        let command = BrandCommand::CreateBrand {
            brand_id: BrandId::parse("acme").expect("id"),
            name: name("Acme"),
            owner_member_id: id("ana"),
            owner_display_name: name("ana"),
            owner_email: email("ana@acme.example"),
        };
        given::<Brand>(&founded())
            .when(&command)
            .then_rejected(|e| matches!(e, DomainError::AlreadyExists { .. }));
    }

    #[test]
    fn every_command_but_create_on_a_brand_that_does_not_exist_is_rejected() {
        let commands = [
            BrandCommand::RenameBrand { name: name("Acme") },
            add_member("bo", "bo@acme.example", Role::Viewer),
            BrandCommand::ChangeMemberRole { member_id: id("ana"), role: Role::Viewer },
            BrandCommand::RemoveMember { member_id: id("ana") },
            register("pim", "gps_00000001"),
            BrandCommand::RevokeApiClient { api_client_id: client_id("pim"), reason: None },
            define(90),
            redefine(90),
            BrandCommand::RemoveChannelPreset { channel: channel("web-pdp") },
        ];
        for command in &commands {
            given::<Brand>(&[])
                .when(command)
                .then_rejected(|e| *e == DomainError::NotFound { kind: AggregateKind::Brand });
        }
    }

    #[test]
    fn renaming_a_brand_records_brand_renamed() {
        given::<Brand>(&founded())
            .when(&BrandCommand::RenameBrand { name: name("Acme Studio") })
            .then(&[BrandRenamed { name: name("Acme Studio") }.into()]);
    }

    #[test]
    fn renaming_a_brand_to_its_current_name_records_nothing() {
        given::<Brand>(&founded()).when(&BrandCommand::RenameBrand { name: name("Acme") }).then(&[]);
    }

    #[test]
    fn adding_a_member_records_member_added() {
        given::<Brand>(&founded())
            .when(&add_member("bo", "bo@acme.example", Role::Reviewer))
            .then(&[member_added("bo", "bo@acme.example", Role::Reviewer)]);
    }

    #[test]
    fn adding_the_same_member_again_records_nothing() {
        given::<Brand>(&with(founded(), [member_added("bo", "bo@acme.example", Role::Reviewer)]))
            .when(&add_member("bo", "bo@acme.example", Role::Reviewer))
            .then(&[]);
    }

    #[test]
    fn adding_someone_else_under_a_taken_member_id_is_rejected() {
        given::<Brand>(&founded())
            .when(&add_member("ana", "other@acme.example", Role::Viewer))
            .then_rejected(|e| is_rule(e, "already has a member ana"));
    }

    #[test]
    fn adding_a_member_whose_email_already_belongs_to_a_member_is_rejected() {
        given::<Brand>(&founded())
            .when(&add_member("ana-2", "ANA@acme.example", Role::Viewer))
            .then_rejected(|e| is_rule(e, "change that member's role instead"));
    }

    #[test]
    fn adding_more_than_the_member_limit_is_rejected() {
        let history = with(
            founded(),
            (1..MAX_MEMBERS)
                .map(|i| member_added(&format!("m{i}"), &format!("m{i}@acme.example"), Role::Viewer)),
        );
        given::<Brand>(&history)
            .when(&add_member("one-more", "one-more@acme.example", Role::Viewer))
            .then_rejected(|e| is_rule(e, "remove one first"));
    }

    fn sealed(person: &str, seed: char) -> MemberEmail {
        MemberEmail::Sealed(SealedEmail {
            person_id: PersonId::parse(person).expect("person"),
            ciphertext: SealedData::parse(seed.to_string().repeat(64)).expect("sealed"),
        })
    }

    #[test]
    fn the_same_person_sealed_twice_is_one_email_and_adding_them_again_changes_nothing() {
        let mut state = given::<Brand>(&founded()).state();
        state = state.evolve(&BrandEvent::MemberAdded(MemberAdded {
            member_id: id("eva"),
            display_name: name("eva"),
            email: sealed("person-eva", 'a'),
            role: Role::Viewer,
        }));
        // Another sealing of the same address: another nonce, the same person.
        let again = BrandCommand::AddMember {
            member_id: id("eva"),
            display_name: name("eva"),
            email: sealed("person-eva", 'b'),
            role: Role::Viewer,
        };
        assert_eq!(state.decide(&again), Ok(vec![]));
        let other_id = BrandCommand::AddMember {
            member_id: id("eva2"),
            display_name: name("eva"),
            email: sealed("person-eva", 'c'),
            role: Role::Viewer,
        };
        let error = state.decide(&other_id).expect_err("same person");
        assert!(error.to_string().contains("person-eva"), "{error}");
    }

    #[test]
    fn a_version_1_member_added_with_a_plain_email_still_decodes() {
        let payload = serde_json::json!({
            "member_id": "rui", "display_name": "Rui", "email": "rui@acme.example", "role": "reviewer"
        });
        let event: BrandEvent = crate::wire::decode("brand.member_added", 1, payload).expect("upcast");
        let BrandEvent::MemberAdded(added) = event else { panic!("{event:?}") };
        assert_eq!(added.email, MemberEmail::Plain(Email::parse("rui@acme.example").expect("email")));
        assert_eq!(crate::wire::encode(&BrandEvent::MemberAdded(added)).schema_version, 2);
    }

    #[test]
    fn a_removed_members_email_can_join_again() {
        let history = with(
            founded(),
            [
                member_added("bo", "bo@acme.example", Role::Viewer),
                MemberRemoved { member_id: id("bo") }.into(),
            ],
        );
        given::<Brand>(&history)
            .when(&add_member("bo-2", "bo@acme.example", Role::Viewer))
            .then(&[member_added("bo-2", "bo@acme.example", Role::Viewer)]);
    }

    #[test]
    fn changing_a_members_role_records_the_new_and_the_previous_role() {
        given::<Brand>(&with(founded(), [member_added("bo", "bo@acme.example", Role::Viewer)]))
            .when(&BrandCommand::ChangeMemberRole { member_id: id("bo"), role: Role::Producer })
            .then(&[MemberRoleChanged {
                member_id: id("bo"),
                previous_role: Role::Viewer,
                role: Role::Producer,
            }
            .into()]);
    }

    #[test]
    fn changing_a_member_to_the_role_they_have_records_nothing() {
        given::<Brand>(&founded())
            .when(&BrandCommand::ChangeMemberRole { member_id: id("ana"), role: Role::Owner })
            .then(&[]);
    }

    #[test]
    fn changing_the_role_of_someone_who_is_not_a_member_is_rejected() {
        given::<Brand>(&founded())
            .when(&BrandCommand::ChangeMemberRole { member_id: id("zed"), role: Role::Owner })
            .then_rejected(|e| is_rule(e, "add them first"));
    }

    #[test]
    fn demoting_the_last_owner_is_rejected() {
        given::<Brand>(&founded())
            .when(&BrandCommand::ChangeMemberRole { member_id: id("ana"), role: Role::Producer })
            .then_rejected(|e| is_rule(e, "last owner"));
    }

    #[test]
    fn demoting_an_owner_while_another_owner_remains_is_accepted() {
        given::<Brand>(&with(founded(), [member_added("bo", "bo@acme.example", Role::Owner)]))
            .when(&BrandCommand::ChangeMemberRole { member_id: id("ana"), role: Role::Auditor })
            .then(&[MemberRoleChanged {
                member_id: id("ana"),
                previous_role: Role::Owner,
                role: Role::Auditor,
            }
            .into()]);
    }

    #[test]
    fn removing_a_member_records_member_removed() {
        given::<Brand>(&with(founded(), [member_added("bo", "bo@acme.example", Role::Viewer)]))
            .when(&BrandCommand::RemoveMember { member_id: id("bo") })
            .then(&[MemberRemoved { member_id: id("bo") }.into()]);
    }

    #[test]
    fn removing_someone_who_is_not_a_member_is_rejected() {
        given::<Brand>(&founded())
            .when(&BrandCommand::RemoveMember { member_id: id("zed") })
            .then_rejected(|e| is_rule(e, "has no member zed"));
    }

    #[test]
    fn removing_the_last_owner_is_rejected() {
        given::<Brand>(&with(founded(), [member_added("bo", "bo@acme.example", Role::Producer)]))
            .when(&BrandCommand::RemoveMember { member_id: id("ana") })
            .then_rejected(|e| is_rule(e, "make another member an owner before removing"));
    }

    #[test]
    fn registering_an_api_client_records_it_with_its_fingerprint() {
        given::<Brand>(&founded())
            .when(&register("pim", "gps_00000001"))
            .then(&[registered("pim", "gps_00000001")]);
    }

    #[test]
    fn a_registered_api_client_event_carries_no_secret() {
        let encoded = crate::wire::encode(&registered("pim", "gps_00000001"));
        let mut fields: Vec<&str> =
            encoded.payload.as_object().expect("object").keys().map(String::as_str).collect();
        fields.sort_unstable();
        assert_eq!(fields, ["api_client_id", "key_fingerprint", "name", "role", "scopes"]);
    }

    #[test]
    fn registering_the_same_api_client_again_records_nothing() {
        given::<Brand>(&with(founded(), [registered("pim", "gps_00000001")]))
            .when(&register("pim", "gps_00000001"))
            .then(&[]);
    }

    #[test]
    fn registering_another_client_under_a_taken_id_is_rejected() {
        given::<Brand>(&with(founded(), [registered("pim", "gps_00000001")]))
            .when(&register("pim", "gps_00000002"))
            .then_rejected(|e| is_invalid_state(e, "revoke it and register a new one"));
    }

    #[test]
    fn registering_an_api_client_as_an_owner_is_rejected() {
        let command = BrandCommand::RegisterApiClient {
            api_client_id: client_id("pim"),
            name: name("PIM sync"),
            role: Role::Owner,
            key_fingerprint: fingerprint("gps_00000001"),
            scopes: pim_scopes(),
        };
        given::<Brand>(&founded()).when(&command).then_rejected(|e| is_rule(e, "cannot be an owner"));
    }

    /// [`register`] with other scopes.
    fn register_scoped(client: &str, key: &str, scopes: &[ApiScope]) -> BrandCommand {
        let mut command = register(client, key);
        if let BrandCommand::RegisterApiClient { scopes: held, .. } = &mut command {
            *held = scopes.iter().copied().collect();
        }
        command
    }

    #[test]
    fn registering_an_api_client_without_scopes_is_rejected() {
        given::<Brand>(&founded())
            .when(&register_scoped("pim", "gps_00000001", &[]))
            .then_rejected(|e| is_rule(e, "at least one scope"));
    }

    #[test]
    fn registering_the_same_api_client_with_other_scopes_is_rejected() {
        given::<Brand>(&with(founded(), [registered("pim", "gps_00000001")]))
            .when(&register_scoped("pim", "gps_00000001", &[ApiScope::Stream]))
            .then_rejected(|e| is_invalid_state(e, "revoke it and register a new one"));
    }

    #[test]
    fn a_client_registered_before_scopes_existed_keeps_every_scope_but_stream() {
        let payload = serde_json::json!({
            "api_client_id": "dam", "name": "DAM", "role": "viewer", "key_fingerprint": "gps_00000009"
        });
        let event: BrandEvent =
            crate::wire::decode("brand.api_client_registered", 1, payload.clone()).expect("decodes");
        // Re-encoding keeps the stored form: no scopes field appears.
        assert_eq!(crate::wire::encode(&event).payload, payload);
        let state = given::<Brand>(&with(founded(), [event])).state();
        let client = state.active_api_client(&client_id("dam")).expect("active");
        for scope in [ApiScope::Read, ApiScope::Produce, ApiScope::Review, ApiScope::Audit] {
            assert!(client.has_scope(scope), "{scope}");
        }
        assert!(!client.has_scope(ApiScope::Stream));
    }

    #[test]
    fn a_client_has_exactly_the_scopes_it_was_registered_with() {
        let state = given::<Brand>(&with(founded(), [registered("pim", "gps_00000001")])).state();
        let client = state.active_api_client(&client_id("pim")).expect("active");
        let held: Vec<ApiScope> = ApiScope::ALL.into_iter().filter(|s| client.has_scope(*s)).collect();
        assert_eq!(held, [ApiScope::Read, ApiScope::Produce, ApiScope::Stream]);
    }

    #[test]
    fn a_scope_parses_from_its_wire_name_and_an_unknown_one_is_named_with_the_choices() {
        assert_eq!(ApiScope::parse("stream"), Ok(ApiScope::Stream));
        let error = ApiScope::parse("admin").expect_err("unknown");
        assert!(
            error.contains("\"admin\"") && error.contains("read, produce, review, audit, stream"),
            "{error}"
        );
    }

    #[test]
    fn registering_a_key_fingerprint_another_client_has_is_rejected() {
        given::<Brand>(&with(founded(), [registered("pim", "gps_00000001")]))
            .when(&register("dam", "gps_00000001"))
            .then_rejected(|e| is_rule(e, "issue a new key"));
    }

    #[test]
    fn reusing_the_key_fingerprint_of_a_revoked_client_is_rejected() {
        given::<Brand>(&with(founded(), [registered("pim", "gps_00000001"), revoked("pim")]))
            .when(&register("pim-2", "gps_00000001"))
            .then_rejected(|e| is_rule(e, "issue a new key"));
    }

    #[test]
    fn reusing_the_id_of_a_revoked_client_is_rejected() {
        given::<Brand>(&with(founded(), [registered("pim", "gps_00000001"), revoked("pim")]))
            .when(&register("pim", "gps_00000002"))
            .then_rejected(|e| matches!(e, DomainError::InvalidState(m) if m.contains("cannot be reused")));
    }

    #[test]
    fn registering_more_than_the_api_client_limit_is_rejected() {
        let history = with(
            founded(),
            (0..MAX_API_CLIENTS).map(|i| registered(&format!("c{i}"), &format!("gps_{i:08}"))),
        );
        given::<Brand>(&history)
            .when(&register("one-more", "gps_99999999"))
            .then_rejected(|e| is_rule(e, "revoke one first"));
    }

    #[test]
    fn revoking_an_api_client_records_api_client_revoked() {
        let reason = Some(Text::parse("key leaked in a build log").expect("text"));
        given::<Brand>(&with(founded(), [registered("pim", "gps_00000001")]))
            .when(&BrandCommand::RevokeApiClient { api_client_id: client_id("pim"), reason: reason.clone() })
            .then(&[ApiClientRevoked { api_client_id: client_id("pim"), reason }.into()]);
    }

    #[test]
    fn revoking_an_unknown_api_client_is_rejected() {
        given::<Brand>(&founded())
            .when(&BrandCommand::RevokeApiClient { api_client_id: client_id("pim"), reason: None })
            .then_rejected(|e| is_rule(e, "has no API client pim"));
    }

    #[test]
    fn revoking_a_revoked_api_client_again_is_rejected() {
        given::<Brand>(&with(founded(), [registered("pim", "gps_00000001"), revoked("pim")]))
            .when(&BrandCommand::RevokeApiClient { api_client_id: client_id("pim"), reason: None })
            .then_rejected(|e| matches!(e, DomainError::InvalidState(m) if m.contains("already revoked")));
    }

    #[test]
    fn defining_a_channel_preset_records_its_first_version() {
        given::<Brand>(&founded()).when(&define(90)).then(&[preset_defined(1, 90)]);
    }

    #[test]
    fn defining_the_same_channel_preset_again_records_nothing() {
        given::<Brand>(&with(founded(), [preset_defined(1, 90)])).when(&define(90)).then(&[]);
    }

    #[test]
    fn defining_a_channel_preset_that_exists_with_another_spec_is_rejected() {
        given::<Brand>(&with(founded(), [preset_defined(1, 90)]))
            .when(&define(80))
            .then_rejected(|e| is_rule(e, "redefine it to change it"));
    }

    #[test]
    fn defining_an_invalid_channel_preset_is_rejected_with_what_is_wrong() {
        given::<Brand>(&founded()).when(&define(0)).then_rejected(|e| is_rule(e, "quality"));
    }

    #[test]
    fn defining_more_than_the_channel_preset_limit_is_rejected() {
        let history = with(
            founded(),
            (0..MAX_CHANNEL_PRESETS).map(|i| {
                ChannelPresetDefined { channel: channel(&format!("c{i}")), version: 1, spec: spec(90) }.into()
            }),
        );
        given::<Brand>(&history).when(&define(90)).then_rejected(|e| is_rule(e, "remove one first"));
    }

    #[test]
    fn redefining_a_channel_preset_records_the_next_version() {
        let history = with(
            founded(),
            [
                preset_defined(1, 90),
                ChannelPresetRedefined { channel: channel("web-pdp"), version: 2, spec: spec(85) }.into(),
            ],
        );
        given::<Brand>(&history).when(&redefine(80)).then(&[ChannelPresetRedefined {
            channel: channel("web-pdp"),
            version: 3,
            spec: spec(80),
        }
        .into()]);
    }

    #[test]
    fn redefining_a_channel_preset_with_its_current_spec_records_nothing() {
        given::<Brand>(&with(founded(), [preset_defined(1, 90)])).when(&redefine(90)).then(&[]);
    }

    #[test]
    fn redefining_a_channel_preset_that_is_not_defined_is_rejected() {
        given::<Brand>(&founded()).when(&redefine(90)).then_rejected(|e| is_rule(e, "define it first"));
    }

    #[test]
    fn redefining_a_channel_preset_with_an_invalid_spec_is_rejected() {
        given::<Brand>(&with(founded(), [preset_defined(1, 90)]))
            .when(&redefine(101))
            .then_rejected(|e| is_rule(e, "quality"));
    }

    #[test]
    fn removing_a_channel_preset_records_channel_preset_removed() {
        given::<Brand>(&with(founded(), [preset_defined(1, 90)]))
            .when(&BrandCommand::RemoveChannelPreset { channel: channel("web-pdp") })
            .then(&[ChannelPresetRemoved { channel: channel("web-pdp") }.into()]);
    }

    #[test]
    fn removing_a_channel_preset_that_is_not_defined_is_rejected() {
        given::<Brand>(&founded())
            .when(&BrandCommand::RemoveChannelPreset { channel: channel("web-pdp") })
            .then_rejected(|e| is_rule(e, "has no channel preset web-pdp"));
    }

    #[test]
    fn defining_a_removed_channel_preset_again_continues_its_version_numbers() {
        let history = with(
            founded(),
            [
                preset_defined(1, 90),
                ChannelPresetRedefined { channel: channel("web-pdp"), version: 2, spec: spec(85) }.into(),
                ChannelPresetRemoved { channel: channel("web-pdp") }.into(),
            ],
        );
        given::<Brand>(&history).when(&define(70)).then(&[preset_defined(3, 70)]);
    }

    #[test]
    fn replaying_the_events_rebuilds_the_state() {
        let history = with(
            founded(),
            [
                BrandRenamed { name: name("Acme Studio") }.into(),
                member_added("bo", "bo@acme.example", Role::Viewer),
                MemberRoleChanged { member_id: id("bo"), previous_role: Role::Viewer, role: Role::Reviewer }
                    .into(),
                member_added("cy", "cy@acme.example", Role::Viewer),
                MemberRemoved { member_id: id("cy") }.into(),
                registered("pim", "gps_00000001"),
                registered("dam", "gps_00000002"),
                revoked("dam"),
                preset_defined(1, 90),
                ChannelPresetRedefined { channel: channel("web-pdp"), version: 2, spec: spec(85) }.into(),
            ],
        );
        let state = given::<Brand>(&history).state();
        assert_eq!(state.details.as_ref().map(|d| d.name.as_str()), Some("Acme Studio"));
        assert_eq!(state.role_of(&id("ana")), Some(Role::Owner));
        assert_eq!(state.role_of(&id("bo")), Some(Role::Reviewer));
        assert_eq!(state.role_of(&id("cy")), None);
        assert_eq!(state.api_client_role(&client_id("pim")), Some(Role::Producer));
        assert_eq!(state.api_client_role(&client_id("dam")), None);
        assert_eq!(state.channel_preset(&channel("web-pdp")), Some((2, &spec(85))));
        crate::testing::assert_snapshot_round_trip(&state);
    }
}
