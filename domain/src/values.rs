//! Value types shared by several aggregates. Each can only hold a valid value:
//! construction goes through `parse`, and deserialization parses too.

use std::borrow::Cow;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use crate::ids::InvalidValue;

/// Declares a trimmed, length-bounded text newtype.
macro_rules! bounded_text {
    ($(#[$meta:meta])* $name:ident, $what:literal, $max:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The longest accepted value, in characters.
            pub const MAX_CHARS: usize = $max;

            /// Trims surrounding whitespace and refuses empty or over-long text.
            pub fn parse(input: impl AsRef<str>) -> Result<Self, InvalidValue> {
                let raw = input.as_ref();
                let trimmed = raw.trim();
                if trimmed.is_empty() {
                    return Err(InvalidValue::new($what, raw, "it is empty"));
                }
                let chars = trimmed.chars().count();
                if chars > $max {
                    return Err(InvalidValue::new(
                        $what,
                        raw,
                        format!("it is {chars} characters long; the limit is {}", $max),
                    ));
                }
                if trimmed.chars().any(|c| c.is_control() && c != '\n') {
                    return Err(InvalidValue::new($what, raw, "it contains control characters"));
                }
                Ok(Self(trimmed.to_owned()))
            }

            /// The text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
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

        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                Cow::Borrowed(stringify!($name))
            }
            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({
                    "type": "string",
                    "description": concat!("A ", $what, ", trimmed, not empty."),
                    "minLength": 1,
                    "maxLength": $max
                })
            }
        }
    };
}

bounded_text!(
    /// A short human-readable name (product, subject, style, shooting, preset…).
    Name, "name", 200
);
bounded_text!(
    /// Free text: descriptions, feedback, comments, prompt fragments, reasons.
    Text, "text", 10_000
);

/// Declares a string newtype checked by a function
/// `fn(&str) -> Result<String, String>` that returns the normalized value or
/// the reason for refusing it. Shared by every module with such values.
macro_rules! checked_string {
    ($(#[$meta:meta])* $name:ident, $what:literal, $check:path, $schema:tt) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Parses the value, explaining any refusal.
            pub fn parse(input: impl AsRef<str>) -> Result<Self, $crate::ids::InvalidValue> {
                let input = input.as_ref();
                match $check(input) {
                    Ok(normalized) => Ok(Self(normalized)),
                    Err(reason) => Err($crate::ids::InvalidValue::new($what, input, reason)),
                }
            }

            /// The value as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl TryFrom<String> for $name {
            type Error = $crate::ids::InvalidValue;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::parse(value)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl schemars::JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                std::borrow::Cow::Borrowed(stringify!($name))
            }
            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!($schema)
            }
        }
    };
}
pub(crate) use checked_string;

fn check_sku(input: &str) -> Result<String, String> {
    let sku = input.trim();
    if sku.is_empty() {
        return Err("it is empty".into());
    }
    if sku.len() > 64 {
        return Err(format!("it is {} characters long; the limit is 64", sku.len()));
    }
    match sku.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))) {
        Some(c) => Err(format!("it contains {c:?}; a SKU is ASCII letters, digits, '-', '_', '.' and '/'")),
        None => Ok(sku.to_owned()),
    }
}

checked_string!(
    /// A stock keeping unit as the brand writes it, e.g. `DR-2041/BLK`.
    Sku, "SKU", check_sku,
    { "type": "string", "pattern": "^[A-Za-z0-9_./-]{1,64}$", "description": "A stock keeping unit." }
);

fn check_slug(input: &str) -> Result<String, String> {
    if input.is_empty() || input.len() > 40 {
        return Err("give 1 to 40 lowercase letters, digits or '-'".into());
    }
    if input.starts_with('-') || input.ends_with('-') {
        return Err("it cannot start or end with '-'".into());
    }
    match input.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')) {
        Some(c) => Err(format!("it contains {c:?}; use lowercase letters, digits and '-'")),
        None => Ok(input.to_owned()),
    }
}

checked_string!(
    /// A product category slug, e.g. `dresses` or `outerwear`.
    Category, "category", check_slug,
    { "type": "string", "pattern": "^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$", "description": "A category slug." }
);
checked_string!(
    /// A shot type slug, e.g. `full-body-front`, `half-body`, `detail`, `lifestyle`.
    /// Brands define their own, so it is a slug rather than a closed enum.
    ShotType, "shot type", check_slug,
    { "type": "string", "pattern": "^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$", "description": "A shot type slug." }
);
checked_string!(
    /// A channel preset's name, e.g. `marketplace-main`, `web-pdp`, `social-square`.
    Channel, "channel", check_slug,
    { "type": "string", "pattern": "^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$", "description": "A channel preset name." }
);
checked_string!(
    /// A workflow name, e.g. `on-model`, `lifestyle`, `revise`, `video`.
    WorkflowName, "workflow name", check_slug,
    { "type": "string", "pattern": "^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$", "description": "A workflow name." }
);

fn check_colour(input: &str) -> Result<String, String> {
    let hex = input.strip_prefix('#').ok_or("write it as #RRGGBB, e.g. #F5F0E8")?;
    if hex.len() != 6 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err("write it as # followed by six hex digits, e.g. #F5F0E8".into());
    }
    Ok(format!("#{}", hex.to_ascii_uppercase()))
}

checked_string!(
    /// An sRGB colour as `#RRGGBB` (stored uppercase).
    Colour, "colour", check_colour,
    { "type": "string", "pattern": "^#[0-9A-F]{6}$", "description": "An sRGB colour, #RRGGBB." }
);

fn check_content_hash(input: &str) -> Result<String, String> {
    let hex = input.strip_prefix("sha256:").ok_or("write it as sha256:<64 hex digits>")?;
    if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err("a sha256 digest is 64 hex digits".into());
    }
    Ok(format!("sha256:{}", hex.to_ascii_lowercase()))
}

checked_string!(
    /// The content address of stored bytes: `sha256:<64 lowercase hex digits>`.
    ContentHash, "content hash", check_content_hash,
    { "type": "string", "pattern": "^sha256:[0-9a-f]{64}$", "description": "sha256 content address." }
);

/// A reference to bytes in object storage. Keys are content addressed, so an
/// asset reference never changes meaning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AssetRef {
    /// The sha256 of the bytes; the storage key is derived from it.
    pub hash: ContentHash,
    /// The media type sniffed from the bytes, e.g. `image/jpeg`.
    pub media_type: String,
    /// Size in bytes.
    pub bytes: u64,
    /// Pixel width, for images and videos.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    /// Pixel height, for images and videos.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
}

checked_string!(
    /// A 64-bit perceptual hash (difference hash) of an image as 16 lowercase
    /// hex digits: similar pictures have hashes a few bits apart, so a
    /// re-upload of a resized or re-compressed picture is recognised.
    PerceptualHash, "perceptual hash", check_perceptual_hash,
    { "type": "string", "pattern": "^[0-9a-f]{16}$", "description": "A 64-bit difference hash, 16 hex digits." }
);

fn check_perceptual_hash(input: &str) -> Result<String, String> {
    if input.len() != 16 || !input.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err("a perceptual hash is 16 hex digits".into());
    }
    Ok(input.to_ascii_lowercase())
}

impl PerceptualHash {
    /// The number of differing bits: 0 for the same picture, up to about 10
    /// for a resized or re-compressed copy, around 32 for unrelated pictures.
    pub fn distance(&self, other: &PerceptualHash) -> u32 {
        let parse = |hash: &PerceptualHash| u64::from_str_radix(hash.as_str(), 16).unwrap_or(0);
        (parse(self) ^ parse(other)).count_ones()
    }
}

/// What ingest learned about an uploaded image, recorded with the image.
/// The asset next to it is the working copy (orientation applied, sRGB,
/// metadata stripped); `original` is the upload byte for byte.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ImageAnalysis {
    /// The file exactly as uploaded, metadata included, kept untouched.
    pub original: AssetRef,
    /// The perceptual hash of the working copy.
    pub perceptual_hash: PerceptualHash,
    /// Up to five dominant colours, most frequent first.
    pub dominant_colours: Vec<Colour>,
}

/// An aspect ratio `W:H` with both sides between 1 and 100, e.g. `4:5`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AspectRatio {
    width: u16,
    height: u16,
}

impl AspectRatio {
    /// Parses `W:H`.
    pub fn parse(input: &str) -> Result<Self, InvalidValue> {
        let refuse = |reason: &str| InvalidValue::new("aspect ratio", input, reason);
        let (w, h) = input.trim().split_once(':').ok_or_else(|| refuse("write it as W:H, e.g. 4:5"))?;
        let side = |s: &str| s.trim().parse::<u16>().ok().filter(|n| (1..=100).contains(n));
        match (side(w), side(h)) {
            (Some(width), Some(height)) => Ok(AspectRatio { width, height }),
            _ => Err(refuse("both sides must be whole numbers from 1 to 100, e.g. 4:5 or 16:9")),
        }
    }

    /// Width over height.
    pub fn ratio(self) -> f64 {
        f64::from(self.width) / f64::from(self.height)
    }

    /// The width part.
    pub fn width(self) -> u16 {
        self.width
    }

    /// The height part.
    pub fn height(self) -> u16 {
        self.height
    }
}

impl std::fmt::Display for AspectRatio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.width, self.height)
    }
}

impl TryFrom<String> for AspectRatio {
    type Error = InvalidValue;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<AspectRatio> for String {
    fn from(value: AspectRatio) -> String {
        value.to_string()
    }
}

impl JsonSchema for AspectRatio {
    fn schema_name() -> Cow<'static, str> {
        Cow::Borrowed("AspectRatio")
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^[0-9]{1,3}:[0-9]{1,3}$",
            "description": "Aspect ratio W:H, each side 1..=100."
        })
    }
}

/// An image file format the pipeline can write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    /// JPEG.
    Jpeg,
    /// PNG.
    Png,
    /// WebP.
    Webp,
    /// AVIF.
    Avif,
}

/// What a generation must output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OutputSpec {
    /// Aspect ratio of the output.
    pub aspect_ratio: AspectRatio,
    /// Long edge in pixels (256..=8192).
    pub long_edge_px: u32,
    /// File format.
    pub format: ImageFormat,
}

impl OutputSpec {
    /// The accepted long-edge range in pixels.
    pub const LONG_EDGE_PX: std::ops::RangeInclusive<u32> = 256..=8192;

    /// Builds an output spec, checking the long edge.
    pub fn new(
        aspect_ratio: AspectRatio,
        long_edge_px: u32,
        format: ImageFormat,
    ) -> Result<Self, InvalidValue> {
        if !Self::LONG_EDGE_PX.contains(&long_edge_px) {
            return Err(InvalidValue::new(
                "long edge",
                &long_edge_px.to_string(),
                "it must be between 256 and 8192 pixels",
            ));
        }
        Ok(OutputSpec { aspect_ratio, long_edge_px, format })
    }
}

/// A reference to a versioned workflow definition, e.g. `on-model` v1.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub struct WorkflowRef {
    /// The workflow's name.
    pub name: WorkflowName,
    /// Its version (1, 2, …).
    pub version: u32,
}

/// A cost in millionths of a currency unit, so sums stay exact.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize, JsonSchema,
)]
pub struct CostMicros(pub u64);

/// How a rendition reaches the preset's aspect ratio.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FitMode {
    /// Crop around the subject.
    CropToSubject,
    /// Pad with the background colour.
    Pad,
}

/// The background of a rendition.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", content = "colour", rename_all = "snake_case")]
pub enum Background {
    /// Keep the generated background.
    Keep,
    /// Pure white (#FFFFFF).
    White,
    /// A solid colour.
    Colour(Colour),
}

/// The colour space a rendition is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ColourSpace {
    /// sRGB, the web default.
    Srgb,
    /// Display P3.
    DisplayP3,
}

/// What a channel requires of an image: the numbers a formatting step needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ChannelPresetSpec {
    /// Long edge in pixels.
    pub long_edge_px: u32,
    /// Target aspect ratio.
    pub aspect_ratio: AspectRatio,
    /// How to reach it.
    pub fit: FitMode,
    /// Background treatment.
    pub background: Background,
    /// File format.
    pub format: ImageFormat,
    /// Encoder quality 1..=100 (ignored by lossless formats).
    pub quality: u8,
    /// Colour space.
    pub colour_space: ColourSpace,
    /// Largest accepted file, in bytes, if the channel has a limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
    /// File naming pattern, e.g. `{sku}_{view}_{n}.jpg`; placeholders `{sku}`,
    /// `{view}`, `{n}`, `{preset}`, `{prediction}`.
    pub naming_pattern: String,
}

impl ChannelPresetSpec {
    /// Checks the numbers and the naming pattern, explaining the first problem.
    pub fn validate(&self) -> Result<(), InvalidValue> {
        if !OutputSpec::LONG_EDGE_PX.contains(&self.long_edge_px) {
            return Err(InvalidValue::new(
                "long edge",
                &self.long_edge_px.to_string(),
                "it must be between 256 and 8192 pixels",
            ));
        }
        if !(1..=100).contains(&self.quality) {
            return Err(InvalidValue::new("quality", &self.quality.to_string(), "it must be 1 to 100"));
        }
        if self.max_bytes == Some(0) {
            return Err(InvalidValue::new("maximum file size", "0", "leave it out or give a positive size"));
        }
        let pattern = &self.naming_pattern;
        if pattern.is_empty()
            || pattern.len() > 200
            || pattern.contains(['/', '\\'])
            || pattern.contains("..")
        {
            return Err(InvalidValue::new(
                "naming pattern",
                pattern,
                "give a file name of at most 200 characters without '/', '\\' or '..'",
            ));
        }
        let mut rest = pattern.as_str();
        while let Some(open) = rest.find('{') {
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| InvalidValue::new("naming pattern", pattern, "a '{' has no matching '}'"))?;
            let placeholder = &rest[open + 1..open + close];
            if !["sku", "view", "n", "preset", "prediction"].contains(&placeholder) {
                return Err(InvalidValue::new(
                    "naming pattern",
                    pattern,
                    format!(
                        "unknown placeholder {{{placeholder}}}; use {{sku}}, {{view}}, {{n}}, {{preset}} or {{prediction}}"
                    ),
                ));
            }
            rest = &rest[open + close + 1..];
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sku_keeps_its_case_and_refuses_spaces() {
        assert_eq!(Sku::parse(" DR-2041/BLK ").map(|s| s.to_string()), Ok("DR-2041/BLK".to_owned()));
        assert!(Sku::parse("DR 2041").is_err());
        assert!(Sku::parse("").is_err());
    }

    #[test]
    fn an_aspect_ratio_parses_w_colon_h_within_bounds() {
        let ratio = AspectRatio::parse("4:5").expect("valid");
        assert_eq!((ratio.width(), ratio.height()), (4, 5));
        for bad in ["4/5", "0:5", "4:", "101:1", "a:b", ""] {
            assert!(AspectRatio::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_colour_is_normalised_to_uppercase_hex() {
        assert_eq!(Colour::parse("#f5f0e8").map(|c| c.to_string()), Ok("#F5F0E8".to_owned()));
        for bad in ["f5f0e8", "#f5f0e", "#GGGGGG", "red"] {
            assert!(Colour::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_content_hash_is_sha256_with_64_hex_digits() {
        let hash = format!("sha256:{}", "AB".repeat(32));
        assert_eq!(
            ContentHash::parse(&hash).map(|h| h.to_string()),
            Ok(format!("sha256:{}", "ab".repeat(32)))
        );
        assert!(ContentHash::parse("md5:abc").is_err());
    }

    #[test]
    fn slugs_refuse_uppercase_and_edge_dashes() {
        assert!(ShotType::parse("full-body").is_ok());
        assert!(ShotType::parse("Full-Body").is_err());
        assert!(Channel::parse("-web").is_err());
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(Name::parse("  Summer dress ").map(|n| n.to_string()), Ok("Summer dress".to_owned()));
        assert!(Name::parse("   ").is_err());
        assert!(Name::parse("x".repeat(201)).is_err());
    }

    #[test]
    fn an_output_spec_refuses_an_out_of_range_long_edge() {
        let ratio = AspectRatio::parse("1:1").expect("valid");
        assert!(OutputSpec::new(ratio, 2048, ImageFormat::Jpeg).is_ok());
        assert!(OutputSpec::new(ratio, 100, ImageFormat::Jpeg).is_err());
    }

    fn preset() -> ChannelPresetSpec {
        ChannelPresetSpec { max_bytes: Some(10_000_000), ..crate::testing::preset_spec() }
    }

    #[test]
    fn a_channel_preset_with_known_placeholders_is_valid() {
        assert_eq!(preset().validate(), Ok(()));
    }

    #[test]
    fn a_channel_preset_with_an_unknown_placeholder_or_a_path_is_refused() {
        for bad in ["{colour}.jpg", "../x.jpg", "a/b.jpg", "{sku", ""] {
            let spec = ChannelPresetSpec { naming_pattern: bad.into(), ..preset() };
            assert!(spec.validate().is_err(), "{bad}");
        }
        assert!(ChannelPresetSpec { quality: 0, ..preset() }.validate().is_err());
    }

    #[test]
    fn deserializing_a_value_parses_it() {
        assert!(serde_json::from_str::<AspectRatio>("\"4:5\"").is_ok());
        assert!(serde_json::from_str::<AspectRatio>("\"4-5\"").is_err());
        assert!(serde_json::from_str::<Colour>("\"#zzzzzz\"").is_err());
    }
}
