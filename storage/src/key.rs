//! Object keys. Every object lives under its brand's prefix, and a key can only
//! be built from parsed parts, so no caller can name another brand's object or
//! escape the prefix with `..`.
//!
//! Layout (the bucket holds nothing else):
//! - content object: `<brand>/<sha256 hex>` — 64 lowercase hex digits of the
//!   sha256 of the object's bytes, e.g. `acme/9f86d0…0f00a08`;
//! - derivative: `<brand>/derivatives/<sha256 hex of the source>/<variant>` —
//!   a resized / re-encoded rendition of a content object of the same brand;
//!   `<variant>` is 1–64 characters of `[a-z0-9.-]` chosen by the caller from
//!   the rendition's parameters (e.g. `w400-h0-fit-contain-q80.webp`), so the
//!   same request always finds the same stored rendition.

use std::fmt;

use gps_domain::ids::BrandId;
use gps_domain::values::ContentHash;

/// A key that does not follow the layout, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key:?} is not an object key: {reason}")]
pub struct InvalidKey {
    /// The refused text (cut to 200 characters).
    pub key: String,
    /// Why it was refused.
    pub reason: &'static str,
}

/// The name of one object in the bucket. See the module docs for the layout.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    brand: BrandId,
    source: String,
    variant: Option<String>,
}

/// The folder name that separates derivatives from content objects.
const DERIVATIVES: &str = "derivatives";

fn is_sha256_hex(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn is_variant(text: &str) -> bool {
    (1..=64).contains(&text.len())
        && text.bytes().all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-'))
        && !text.contains("..")
        && !text.starts_with('.')
}

impl ObjectKey {
    /// The key of a content object: `<brand>/<sha256 hex>`.
    pub fn content(brand: &BrandId, hash: &ContentHash) -> Self {
        let hex = hash.as_str().trim_start_matches("sha256:").to_owned();
        ObjectKey { brand: brand.clone(), source: hex, variant: None }
    }

    /// The key of a rendition of `source` (a content object of the same brand).
    pub fn derivative(source: &ObjectKey, variant: &str) -> Result<Self, InvalidKey> {
        if source.variant.is_some() {
            return Err(invalid(
                variant,
                "a derivative is made from a content object, not from another derivative",
            ));
        }
        if !is_variant(variant) {
            return Err(invalid(variant, "a variant is 1 to 64 characters of a-z, 0-9, '.' and '-'"));
        }
        Ok(ObjectKey {
            brand: source.brand.clone(),
            source: source.source.clone(),
            variant: Some(variant.to_owned()),
        })
    }

    /// Parses a key in either form of the layout, refusing anything else
    /// (other prefixes, `..`, empty segments, upper case, wrong lengths).
    pub fn parse(text: &str) -> Result<Self, InvalidKey> {
        let parts: Vec<&str> = text.split('/').collect();
        let brand = |part: &str| {
            BrandId::parse(part).map_err(|_| invalid(text, "the first segment is not a brand id"))
        };
        match parts.as_slice() {
            [brand_part, hex] => {
                if !is_sha256_hex(hex) {
                    return Err(invalid(
                        text,
                        "the second segment is not 64 lowercase hex digits (a sha256)",
                    ));
                }
                Ok(ObjectKey { brand: brand(brand_part)?, source: (*hex).to_owned(), variant: None })
            }
            [brand_part, folder, hex, variant] if *folder == DERIVATIVES => {
                if !is_sha256_hex(hex) {
                    return Err(invalid(
                        text,
                        "the source segment is not 64 lowercase hex digits (a sha256)",
                    ));
                }
                if !is_variant(variant) {
                    return Err(invalid(
                        text,
                        "the variant is not 1 to 64 characters of a-z, 0-9, '.' and '-'",
                    ));
                }
                Ok(ObjectKey {
                    brand: brand(brand_part)?,
                    source: (*hex).to_owned(),
                    variant: Some((*variant).to_owned()),
                })
            }
            _ => Err(invalid(
                text,
                "expected <brand>/<sha256 hex> or <brand>/derivatives/<sha256 hex>/<variant>",
            )),
        }
    }

    /// The brand that owns the object.
    pub fn brand(&self) -> &BrandId {
        &self.brand
    }

    /// The content hash of the object (of the source, for a derivative).
    pub fn source_hash(&self) -> ContentHash {
        ContentHash::parse(format!("sha256:{}", self.source)).expect("a key holds a valid sha256")
    }

    /// The variant, for a derivative.
    pub fn variant(&self) -> Option<&str> {
        self.variant.as_deref()
    }

    /// The content object this key is, or is derived from.
    pub fn source_key(&self) -> ObjectKey {
        ObjectKey { brand: self.brand.clone(), source: self.source.clone(), variant: None }
    }
}

impl ObjectKey {
    /// The prefix every derivative of this (content) object's source shares.
    pub fn derivatives_prefix(&self) -> String {
        format!("{}/{DERIVATIVES}/{}/", self.brand, self.source)
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.variant {
            None => write!(f, "{}/{}", self.brand, self.source),
            Some(variant) => write!(f, "{}/{DERIVATIVES}/{}/{variant}", self.brand, self.source),
        }
    }
}

fn invalid(text: &str, reason: &'static str) -> InvalidKey {
    InvalidKey { key: text.chars().take(200).collect(), reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    #[test]
    fn content_and_derivative_keys_round_trip_through_parse() {
        let brand = BrandId::parse("acme").expect("brand");
        let hash = ContentHash::parse(format!("sha256:{HEX}")).expect("hash");
        let content = ObjectKey::content(&brand, &hash);
        assert_eq!(content.to_string(), format!("acme/{HEX}"));
        assert_eq!(ObjectKey::parse(&content.to_string()), Ok(content.clone()));
        let derived = ObjectKey::derivative(&content, "w400-q80.webp").expect("variant");
        assert_eq!(derived.to_string(), format!("acme/derivatives/{HEX}/w400-q80.webp"));
        assert_eq!(ObjectKey::parse(&derived.to_string()), Ok(derived.clone()));
        assert_eq!(derived.source_key(), content);
        assert_eq!(derived.source_hash(), hash);
    }

    #[test]
    fn keys_outside_the_layout_are_refused() {
        for text in [
            "",
            "acme",
            &format!("../{HEX}"),
            &format!("acme/../{HEX}"),
            &format!("acme/{}", HEX.to_uppercase()),
            &format!("acme/{HEX}/extra"),
            &format!("acme//{HEX}"),
            &format!("/acme/{HEX}"),
            &format!("acme/derivatives/{HEX}/../x"),
            &format!("acme/derivatives/{HEX}/.."),
            &format!("acme/other/{HEX}/x"),
            "acme/abc",
        ] {
            assert!(ObjectKey::parse(text).is_err(), "{text:?} should be refused");
        }
    }
}
