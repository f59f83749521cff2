//! Identifiers. Every id can become a NATS subject token
//! (`gps.evt.<brand>.<aggregate>.<id>`), so parsing is strict: 1 to 64 ASCII
//! letters, digits, `-` or `_`. That excludes `.`, `*`, `>`, whitespace and the
//! empty string, so no id can address another aggregate's subject.

use std::borrow::Cow;

/// A value that failed to parse, with what it was meant to be and why it was
/// refused, worded for the person who typed it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {input:?}: {reason}")]
pub struct InvalidValue {
    /// What the value was meant to be, e.g. `product id`.
    pub what: &'static str,
    /// The refused input (truncated when long).
    pub input: String,
    /// Why it was refused and what is accepted instead.
    pub reason: String,
}

impl InvalidValue {
    /// Builds the error, truncating a long input so messages stay readable.
    pub fn new(what: &'static str, input: &str, reason: impl Into<String>) -> Self {
        let input = if input.chars().count() > 80 {
            let head: String = input.chars().take(77).collect();
            format!("{head}...")
        } else {
            input.to_owned()
        };
        InvalidValue { what, input, reason: reason.into() }
    }
}

/// The longest accepted identifier.
pub const MAX_ID_LEN: usize = 64;

/// Checks that `input` is usable as a subject token; `what` names it in errors.
pub fn check_token(what: &'static str, input: &str) -> Result<(), InvalidValue> {
    if input.is_empty() {
        return Err(InvalidValue::new(what, input, "it is empty; give 1 to 64 letters, digits, '-' or '_'"));
    }
    if input.len() > MAX_ID_LEN {
        return Err(InvalidValue::new(
            what,
            input,
            format!("it is {} characters long; the limit is {MAX_ID_LEN}", input.len()),
        ));
    }
    if let Some(bad) = input.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_')) {
        let shown = match bad {
            c if c.is_whitespace() => "whitespace".to_owned(),
            c => format!("{c:?}"),
        };
        return Err(InvalidValue::new(
            what,
            input,
            format!("it contains {shown}; only letters, digits, '-' and '_' are allowed"),
        ));
    }
    Ok(())
}

/// Declares a subject-token-safe identifier newtype.
macro_rules! token_id {
    ($(#[$meta:meta])* $name:ident, $what:literal $(, also $extra:path)?) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// What this id is called in error messages.
            pub const WHAT: &'static str = $what;

            /// Parses an id, refusing anything that is not a safe subject token.
            pub fn parse(input: impl Into<String>) -> Result<Self, InvalidValue> {
                let input = input.into();
                check_token($what, &input)?;
                $($extra(&input)?;)?
                Ok(Self(input))
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = InvalidValue;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidValue;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::parse(value)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl schemars::JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                Cow::Borrowed(stringify!($name))
            }
            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({
                    "type": "string",
                    "description": concat!("A ", $what, ": 1 to 64 ASCII letters, digits, '-' or '_'."),
                    "pattern": "^[A-Za-z0-9_-]{1,64}$"
                })
            }
        }
    };
}

token_id!(
    /// A brand, the tenant. Every subject starts with it. A brand id never
    /// starts with `_`: that is kept for scopes above every brand (see
    /// [`PLATFORM_SCOPE`]), so no brand can write into their subjects.
    BrandId, "brand id", also check_not_reserved
);

/// The subject token of aggregates that belong to no brand (persons):
/// `gps.evt._platform.<aggregate>.<id>`. Brand ids cannot start with `_`, so
/// no brand's subjects, consumers or permissions (`gps.evt.<brand>.>`) ever
/// reach these.
pub const PLATFORM_SCOPE: &str = "_platform";

fn check_not_reserved(input: &str) -> Result<(), InvalidValue> {
    if input.starts_with('_') {
        return Err(InvalidValue::new(
            "brand id",
            input,
            "it starts with '_', which is kept for platform-level subjects; start it with a letter or digit",
        ));
    }
    Ok(())
}

impl BrandId {
    /// The scope of platform-level aggregates ([`PLATFORM_SCOPE`]) in the
    /// place of a brand: only the command path and subject parsing use it, and
    /// [`BrandId::parse`] refuses it, so no request can name it.
    pub fn platform() -> Self {
        BrandId(PLATFORM_SCOPE.to_owned())
    }

    /// Whether this is [`PLATFORM_SCOPE`] rather than a brand.
    pub fn is_platform(&self) -> bool {
        self.0 == PLATFORM_SCOPE
    }

    /// Reads the brand token of a stored subject: a brand id, or
    /// [`PLATFORM_SCOPE`].
    pub fn parse_scope(input: &str) -> Result<Self, InvalidValue> {
        if input == PLATFORM_SCOPE { Ok(Self::platform()) } else { Self::parse(input) }
    }
}
token_id!(
    /// A product of a brand's catalog.
    ProductId, "product id"
);
token_id!(
    /// One image of a product, subject or style.
    ImageId, "image id"
);
token_id!(
    /// A virtual model identity.
    SubjectId, "subject id"
);
token_id!(
    /// A style.
    StyleId, "style id"
);
token_id!(
    /// A shooting.
    ShootingId, "shooting id"
);
token_id!(
    /// A look of a shooting.
    LookId, "look id"
);
token_id!(
    /// A generation run.
    GenerationId, "generation id"
);
token_id!(
    /// A prediction (one produced variant).
    PredictionId, "prediction id"
);
token_id!(
    /// An export.
    ExportId, "export id"
);
token_id!(
    /// A catalog import (one background job).
    ImportId, "import id"
);
token_id!(
    /// A person who is a member of a brand.
    MemberId, "member id"
);
token_id!(
    /// A machine client of the brand's API.
    ApiClientId, "API client id"
);
token_id!(
    /// A comment on a prediction.
    CommentId, "comment id"
);
token_id!(
    /// A rendition produced by an export.
    RenditionId, "rendition id"
);
token_id!(
    /// A natural person whose personal data the privacy vault holds a key
    /// for (crypto-shredding); not a member id, which names a role in a brand.
    PersonId, "person id"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_of_letters_digits_dashes_and_underscores_parses() {
        assert_eq!(ProductId::parse("sku-123_A").map(|id| id.to_string()), Ok("sku-123_A".to_owned()));
    }

    #[test]
    fn subject_wildcards_dots_whitespace_and_empty_ids_are_refused() {
        for bad in ["", "a.b", "a*", ">", "a b", "tab\t", "new\nline", "ü"] {
            let error = BrandId::parse(bad).expect_err(bad);
            assert_eq!(error.what, "brand id");
        }
    }

    #[test]
    fn a_brand_id_cannot_take_the_platform_scope_or_any_underscore_prefix() {
        for reserved in [PLATFORM_SCOPE, "_acme", "_"] {
            let error = BrandId::parse(reserved).expect_err(reserved);
            assert!(error.reason.contains("platform-level"), "{error}");
        }
        assert!(BrandId::parse("acme_").is_ok());
        assert!(BrandId::parse_scope(PLATFORM_SCOPE).expect("scope").is_platform());
        assert!(!BrandId::parse_scope("acme").expect("brand").is_platform());
        let deserialized: Result<BrandId, _> = serde_json::from_str("\"_platform\"");
        assert!(deserialized.is_err(), "a payload cannot name the platform scope as a brand");
    }

    #[test]
    fn the_error_names_the_offending_character() {
        let error = LookId::parse("look.1").expect_err("dot");
        assert!(error.to_string().contains("'.'"), "{error}");
    }

    #[test]
    fn an_id_longer_than_64_characters_is_refused() {
        assert!(ShootingId::parse("a".repeat(64)).is_ok());
        assert!(ShootingId::parse("a".repeat(65)).is_err());
    }

    #[test]
    fn deserializing_checks_the_id_too() {
        let result: Result<BrandId, _> = serde_json::from_str("\"gps.evt\"");
        assert!(result.is_err());
    }
}
