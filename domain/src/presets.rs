//! Built-in channel presets: the common targets a brand can export to without
//! defining anything. A brand's own preset of the same name wins (brands
//! define theirs with events, like everything else); these are code, not
//! events, because they are the product's defaults and every brand shares them.
//!
//! The numbers, and where they come from:
//!
//! | name | size | aspect | fit | background | format | max size |
//! |---|---|---|---|---|---|---|
//! | `marketplace-main` | 2000×2000 | 1:1 | pad | white #FFFFFF | JPEG q90 sRGB | 10 MB |
//! | `web-pdp` | 1600×2000 | 4:5 | crop around subject | keep | JPEG q85 sRGB | 2 MB |
//! | `social-square` | 1080×1080 | 1:1 | crop around subject | keep | JPEG q85 sRGB | 8 MB |
//! | `social-story` | 1080×1920 | 9:16 | crop around subject | keep | JPEG q85 sRGB | 8 MB |
//!
//! - Marketplace main image: marketplaces ask for the product on pure white
//!   (RGB 255,255,255), at least 1000 px on the long side so zoom works
//!   (2000 px is the usual recommendation), JPEG, under 10 MB; padding keeps
//!   the whole product in frame instead of cutting into it.
//! - Web product detail page: 4:5 portrait is the common PDP tile; 2000 px on
//!   the long edge serves retina zoom; 2 MB keeps pages fast.
//! - Social 1:1 and 9:16: feed posts are 1080×1080, stories and reels
//!   1080×1920; 8 MB is the common upload limit for images.

use crate::values::{AspectRatio, Background, Channel, ChannelPresetSpec, ColourSpace, FitMode, ImageFormat};

/// The names of the built-in presets, in the order they are listed.
pub const BUILT_IN: [&str; 4] = ["marketplace-main", "web-pdp", "social-square", "social-story"];

fn ratio(width: u16, height: u16) -> AspectRatio {
    AspectRatio::parse(&format!("{width}:{height}")).unwrap_or_else(|_| unreachable!("a valid ratio"))
}

/// The built-in preset called `channel`, if there is one.
pub fn built_in(channel: &Channel) -> Option<ChannelPresetSpec> {
    let social = |width, height, long_edge_px, suffix: &str| ChannelPresetSpec {
        long_edge_px,
        aspect_ratio: ratio(width, height),
        fit: FitMode::CropToSubject,
        background: Background::Keep,
        format: ImageFormat::Jpeg,
        quality: 85,
        colour_space: ColourSpace::Srgb,
        max_bytes: Some(8_000_000),
        naming_pattern: format!("{{sku}}_{{view}}_{{n}}_{suffix}.jpg"),
    };
    match channel.as_str() {
        "marketplace-main" => Some(ChannelPresetSpec {
            long_edge_px: 2000,
            aspect_ratio: ratio(1, 1),
            fit: FitMode::Pad,
            background: Background::White,
            format: ImageFormat::Jpeg,
            quality: 90,
            colour_space: ColourSpace::Srgb,
            max_bytes: Some(10_000_000),
            naming_pattern: "{sku}_main_{n}.jpg".into(),
        }),
        "web-pdp" => Some(ChannelPresetSpec {
            long_edge_px: 2000,
            aspect_ratio: ratio(4, 5),
            fit: FitMode::CropToSubject,
            background: Background::Keep,
            format: ImageFormat::Jpeg,
            quality: 85,
            colour_space: ColourSpace::Srgb,
            max_bytes: Some(2_000_000),
            naming_pattern: "{sku}_{view}_{n}.jpg".into(),
        }),
        "social-square" => Some(social(1, 1, 1080, "square")),
        "social-story" => Some(social(9, 16, 1920, "story")),
        _ => None,
    }
}

/// Every built-in preset with its name.
pub fn all_built_in() -> Vec<(Channel, ChannelPresetSpec)> {
    BUILT_IN
        .iter()
        .filter_map(|name| {
            let channel = Channel::parse(name).ok()?;
            built_in(&channel).map(|spec| (channel, spec))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_in_preset_is_valid_and_has_the_documented_numbers() {
        let all = all_built_in();
        assert_eq!(all.len(), BUILT_IN.len());
        for (channel, spec) in &all {
            assert_eq!(spec.validate(), Ok(()), "{channel}");
        }
        let numbers: Vec<(String, u32, String)> = all
            .iter()
            .map(|(channel, spec)| (channel.to_string(), spec.long_edge_px, spec.aspect_ratio.to_string()))
            .collect();
        assert_eq!(
            numbers,
            [
                ("marketplace-main".to_owned(), 2000, "1:1".to_owned()),
                ("web-pdp".to_owned(), 2000, "4:5".to_owned()),
                ("social-square".to_owned(), 1080, "1:1".to_owned()),
                ("social-story".to_owned(), 1920, "9:16".to_owned()),
            ]
        );
        let marketplace = &all[0].1;
        assert_eq!((marketplace.fit, &marketplace.background), (FitMode::Pad, &Background::White));
    }

    #[test]
    fn an_unknown_name_is_no_built_in_preset() {
        assert_eq!(built_in(&Channel::parse("print-catalog").expect("channel")), None);
    }
}
