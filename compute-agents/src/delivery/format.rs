//! Formatting an approved image for a channel preset: size, aspect ratio,
//! background, file format, quality and maximum file size.
//!
//! Deterministic: the same source and preset give the same pixels and bytes
//! (before signing), so a redelivered export produces the same rendition.
//!
//! - Size: the long edge is the preset's; the short edge follows from the
//!   aspect ratio (a 4:5 preset with long edge 2000 is 1600×2000).
//! - Background: the generated background is estimated from the border (the
//!   median colour of the outermost pixels); `white` and `colour` replace the
//!   region connected to the border within a tolerance of that colour (a
//!   flood fill, so a white shirt in the middle stays), `keep` leaves it.
//! - Aspect: `crop_to_subject` cuts the largest window of the target aspect
//!   that fits, centred on the subject — the bounding box of the pixels that
//!   differ from the background — and clamped to the image; `pad` scales the
//!   whole image to fit and fills the rest with the background colour.
//! - File: JPEG at the preset's quality; PNG and WebP lossless (the `image`
//!   crate writes lossless WebP only; quality does not apply to them).
//! - Maximum size: checked on the signed file (the manifest adds a few KB).
//!   JPEG quality is lowered in steps of 5 down to 30 until it fits; a
//!   lossless file, or a JPEG that does not fit at 30, fails with a message
//!   saying what to change in the preset.

use std::io::Cursor;

use gps_domain::values::{Background, ChannelPresetSpec, ColourSpace, FitMode, ImageFormat};
use image::imageops::FilterType;
use image::{Rgb, RgbImage};

/// The lowest JPEG quality tried to meet a size limit.
pub const MIN_JPEG_QUALITY: u8 = 30;
/// How far two colours may differ (Euclidean RGB) and still count as the background.
const BACKGROUND_TOLERANCE: u32 = 40;

/// Why an image could not be formatted; never worth retrying.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// The preset asks for something this build cannot write.
    #[error("{0}")]
    Unsupported(String),
    /// The source is not a readable image.
    #[error("the approved image cannot be read: {0}")]
    Undecodable(String),
    /// The file stays larger than the preset allows.
    #[error("{0}")]
    TooLarge(String),
    /// Encoding or signing failed.
    #[error("{0}")]
    Encode(String),
}

/// A formatted (and signed) file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Formatted {
    /// The bytes.
    pub bytes: Vec<u8>,
    /// Pixel width.
    pub width: u32,
    /// Pixel height.
    pub height: u32,
    /// The media type.
    pub media_type: &'static str,
    /// The file extension.
    pub extension: &'static str,
    /// The JPEG quality used (the preset's unless lowered to fit).
    pub quality: u8,
}

/// The media type and extension of `format`, or why it cannot be written.
pub fn file_type(format: ImageFormat) -> Result<(&'static str, &'static str), FormatError> {
    match format {
        ImageFormat::Jpeg => Ok(("image/jpeg", "jpg")),
        ImageFormat::Png => Ok(("image/png", "png")),
        ImageFormat::Webp => Ok(("image/webp", "webp")),
        ImageFormat::Avif => Err(FormatError::Unsupported(
            "AVIF renditions are not supported by this build (its encoder is a long build); choose jpeg, png or webp"
                .into(),
        )),
    }
}

/// Whether `spec` can be rendered by this build, or why not.
pub fn check_supported(spec: &ChannelPresetSpec) -> Result<(), FormatError> {
    file_type(spec.format)?;
    if spec.colour_space != ColourSpace::Srgb {
        return Err(FormatError::Unsupported(
            "Display P3 renditions are not supported yet; use colour_space srgb".into(),
        ));
    }
    Ok(())
}

/// The pixel size a preset asks for.
pub fn target_size(spec: &ChannelPresetSpec) -> (u32, u32) {
    let (w, h) = (u32::from(spec.aspect_ratio.width()), u32::from(spec.aspect_ratio.height()));
    let long = spec.long_edge_px;
    let short = |num: u32, den: u32| {
        ((u64::from(long) * u64::from(num) + u64::from(den) / 2) / u64::from(den)).max(1) as u32
    };
    if w >= h { (long, short(h, w)) } else { (short(w, h), long) }
}

/// Formats `source` for `spec`, signing each candidate file with `sign`
/// (which gets the encoded bytes and the media type) before checking its size.
pub fn render(
    source: &[u8],
    spec: &ChannelPresetSpec,
    sign: impl Fn(&[u8], &str) -> Result<Vec<u8>, String>,
) -> Result<Formatted, FormatError> {
    check_supported(spec)?;
    let (media_type, extension) = file_type(spec.format)?;
    let decoded = image::ImageReader::new(Cursor::new(source))
        .with_guessed_format()
        .map_err(|e| FormatError::Undecodable(e.to_string()))?
        .decode()
        .map_err(|e| FormatError::Undecodable(e.to_string()))?;
    let pixels = compose(&decoded.to_rgb8(), spec);
    let (width, height) = pixels.dimensions();
    let mut quality = spec.quality;
    loop {
        let encoded = encode(&pixels, spec.format, quality)?;
        let signed = sign(&encoded, media_type).map_err(FormatError::Encode)?;
        let size = signed.len() as u64;
        match spec.max_bytes {
            Some(limit) if size > limit => {
                if spec.format != ImageFormat::Jpeg {
                    return Err(FormatError::TooLarge(format!(
                        "the {extension} rendition is {size} bytes, over the preset's limit of {limit}; {extension} is lossless here, so lower long_edge_px, raise max_bytes or use jpeg"
                    )));
                }
                if quality <= MIN_JPEG_QUALITY {
                    return Err(FormatError::TooLarge(format!(
                        "even at JPEG quality {MIN_JPEG_QUALITY} the rendition is {size} bytes, over the preset's limit of {limit}; lower long_edge_px or raise max_bytes"
                    )));
                }
                quality = quality.saturating_sub(5).max(MIN_JPEG_QUALITY);
            }
            _ => return Ok(Formatted { bytes: signed, width, height, media_type, extension, quality }),
        }
    }
}

/// Encodes `pixels` as `format` (quality applies to JPEG only).
pub fn encode(pixels: &RgbImage, format: ImageFormat, quality: u8) -> Result<Vec<u8>, FormatError> {
    let mut out = Vec::new();
    let failed = |e: image::ImageError| FormatError::Encode(format!("encoding the rendition failed: {e}"));
    match format {
        ImageFormat::Jpeg => {
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality.clamp(1, 100))
                .encode_image(pixels)
                .map_err(failed)?;
        }
        ImageFormat::Png => {
            pixels.write_with_encoder(image::codecs::png::PngEncoder::new(&mut out)).map_err(failed)?;
        }
        ImageFormat::Webp => {
            pixels
                .write_with_encoder(image::codecs::webp::WebPEncoder::new_lossless(&mut out))
                .map_err(failed)?;
        }
        ImageFormat::Avif => return Err(file_type(format).err().unwrap_or_else(|| unreachable!())),
    }
    Ok(out)
}

fn distance(a: Rgb<u8>, b: Rgb<u8>) -> u32 {
    let d = |i: usize| (i32::from(a.0[i]) - i32::from(b.0[i])).unsigned_abs();
    ((d(0) * d(0) + d(1) * d(1) + d(2) * d(2)) as f64).sqrt() as u32
}

/// The median colour of the image's outermost pixels: the background, for a
/// product or model shot.
pub fn border_colour(image: &RgbImage) -> Rgb<u8> {
    let (w, h) = image.dimensions();
    let mut channels: [Vec<u8>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    let mut push = |x: u32, y: u32| {
        let p = image.get_pixel(x, y);
        for (c, values) in channels.iter_mut().enumerate() {
            values.push(p.0[c]);
        }
    };
    for x in 0..w {
        push(x, 0);
        push(x, h - 1);
    }
    for y in 0..h {
        push(0, y);
        push(w - 1, y);
    }
    let median = |values: &mut Vec<u8>| {
        values.sort_unstable();
        values[values.len() / 2]
    };
    let [r, g, b] = &mut channels;
    Rgb([median(r), median(g), median(b)])
}

/// Paints the background region (connected to the border, within the
/// tolerance of `background`) with `colour`.
fn replace_background(image: &mut RgbImage, background: Rgb<u8>, colour: Rgb<u8>) {
    let (w, h) = image.dimensions();
    let mut seen = vec![false; (w as usize) * (h as usize)];
    let mut stack: Vec<(u32, u32)> = Vec::new();
    for x in 0..w {
        stack.push((x, 0));
        stack.push((x, h - 1));
    }
    for y in 0..h {
        stack.push((0, y));
        stack.push((w - 1, y));
    }
    while let Some((x, y)) = stack.pop() {
        let index = (y as usize) * (w as usize) + x as usize;
        if seen[index] {
            continue;
        }
        seen[index] = true;
        if distance(*image.get_pixel(x, y), background) > BACKGROUND_TOLERANCE {
            continue;
        }
        image.put_pixel(x, y, colour);
        if x > 0 {
            stack.push((x - 1, y));
        }
        if x + 1 < w {
            stack.push((x + 1, y));
        }
        if y > 0 {
            stack.push((x, y - 1));
        }
        if y + 1 < h {
            stack.push((x, y + 1));
        }
    }
}

/// The bounding box (x, y, width, height) of the pixels that differ from the
/// background, or the whole image when nothing does.
pub fn subject_box(image: &RgbImage, background: Rgb<u8>) -> (u32, u32, u32, u32) {
    let (w, h) = image.dimensions();
    let (mut left, mut top, mut right, mut bottom) = (w, h, 0u32, 0u32);
    for (x, y, pixel) in image.enumerate_pixels() {
        if distance(*pixel, background) > BACKGROUND_TOLERANCE {
            left = left.min(x);
            top = top.min(y);
            right = right.max(x);
            bottom = bottom.max(y);
        }
    }
    if left > right || top > bottom {
        return (0, 0, w, h);
    }
    (left, top, right - left + 1, bottom - top + 1)
}

fn rgb(colour: &gps_domain::values::Colour) -> Rgb<u8> {
    let hex = colour.to_string();
    let channel = |i: usize| u8::from_str_radix(&hex[1 + 2 * i..3 + 2 * i], 16).unwrap_or(255);
    Rgb([channel(0), channel(1), channel(2)])
}

/// The pixels of the rendition: background, aspect and size applied.
pub fn compose(source: &RgbImage, spec: &ChannelPresetSpec) -> RgbImage {
    let mut image = source.clone();
    let background = border_colour(&image);
    let fill = match &spec.background {
        Background::Keep => background,
        Background::White => Rgb([255, 255, 255]),
        Background::Colour(colour) => rgb(colour),
    };
    if !matches!(spec.background, Background::Keep) {
        replace_background(&mut image, background, fill);
    }
    let (target_w, target_h) = target_size(spec);
    let (w, h) = image.dimensions();
    match spec.fit {
        FitMode::Pad => {
            let scale = (f64::from(target_w) / f64::from(w)).min(f64::from(target_h) / f64::from(h));
            let (scaled_w, scaled_h) = (
                ((f64::from(w) * scale).round() as u32).clamp(1, target_w),
                ((f64::from(h) * scale).round() as u32).clamp(1, target_h),
            );
            let scaled = image::imageops::resize(&image, scaled_w, scaled_h, FilterType::Lanczos3);
            let mut canvas = RgbImage::from_pixel(target_w, target_h, fill);
            image::imageops::overlay(
                &mut canvas,
                &scaled,
                i64::from((target_w - scaled_w) / 2),
                i64::from((target_h - scaled_h) / 2),
            );
            canvas
        }
        FitMode::CropToSubject => {
            let target_ratio = f64::from(target_w) / f64::from(target_h);
            let (crop_w, crop_h) = if f64::from(w) / f64::from(h) > target_ratio {
                (((f64::from(h) * target_ratio).round() as u32).clamp(1, w), h)
            } else {
                (w, ((f64::from(w) / target_ratio).round() as u32).clamp(1, h))
            };
            let (bx, by, bw, bh) = subject_box(&image, background);
            let centre = |start: u32, size: u32, window: u32, total: u32| {
                let middle = i64::from(start) + i64::from(size) / 2;
                (middle - i64::from(window) / 2).clamp(0, i64::from(total - window)) as u32
            };
            let x = centre(bx, bw, crop_w, w);
            let y = centre(by, bh, crop_h, h);
            let cropped = image::imageops::crop_imm(&image, x, y, crop_w, crop_h).to_image();
            image::imageops::resize(&cropped, target_w, target_h, FilterType::Lanczos3)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gps_domain::values::{AspectRatio, Colour};

    fn spec(
        ratio: &str,
        long_edge_px: u32,
        fit: FitMode,
        background: Background,
        format: ImageFormat,
    ) -> ChannelPresetSpec {
        ChannelPresetSpec {
            long_edge_px,
            aspect_ratio: AspectRatio::parse(ratio).expect("ratio"),
            fit,
            background,
            format,
            quality: 90,
            colour_space: ColourSpace::Srgb,
            max_bytes: None,
            naming_pattern: "{sku}.jpg".into(),
        }
    }

    /// A grey studio backdrop with a red garment right of centre.
    fn shot() -> RgbImage {
        let mut image = RgbImage::from_pixel(600, 400, Rgb([128, 128, 128]));
        for y in 100..300 {
            for x in 380..480 {
                image.put_pixel(x, y, Rgb([200, 20, 20]));
            }
        }
        image
    }

    #[test]
    fn the_target_size_follows_the_long_edge_and_the_aspect_ratio() {
        let pdp = spec("4:5", 2000, FitMode::Pad, Background::Keep, ImageFormat::Jpeg);
        assert_eq!(target_size(&pdp), (1600, 2000));
        let story = spec("9:16", 1920, FitMode::Pad, Background::Keep, ImageFormat::Jpeg);
        assert_eq!(target_size(&story), (1080, 1920));
        let wide = spec("16:9", 1920, FitMode::Pad, Background::Keep, ImageFormat::Jpeg);
        assert_eq!(target_size(&wide), (1920, 1080));
    }

    #[test]
    fn padding_on_white_keeps_the_whole_subject_and_whitens_the_backdrop() {
        let out = compose(&shot(), &spec("1:1", 300, FitMode::Pad, Background::White, ImageFormat::Png));
        assert_eq!(out.dimensions(), (300, 300));
        assert_eq!(*out.get_pixel(5, 5), Rgb([255, 255, 255]), "padding is white");
        assert_eq!(*out.get_pixel(150, 150), Rgb([255, 255, 255]), "the grey backdrop became white");
        let red = out.pixels().filter(|p| p.0[0] > 150 && p.0[1] < 80).count();
        // 100×200 garment scaled by 0.5 → about 50×100 pixels.
        assert!((4000..6000).contains(&red), "{red}");
    }

    #[test]
    fn cropping_keeps_the_subject_in_frame_when_it_is_off_centre() {
        let out =
            compose(&shot(), &spec("1:2", 400, FitMode::CropToSubject, Background::Keep, ImageFormat::Png));
        assert_eq!(out.dimensions(), (200, 400));
        let red: Vec<(u32, u32)> = out
            .enumerate_pixels()
            .filter(|(_, _, p)| p.0[0] > 150 && p.0[1] < 80)
            .map(|(x, y, _)| (x, y))
            .collect();
        assert!(!red.is_empty(), "the subject is in the crop");
        let xs: Vec<u32> = red.iter().map(|(x, _)| *x).collect();
        let (min, max) = (*xs.iter().min().expect("x"), *xs.iter().max().expect("x"));
        assert!(min > 10 && max < 190, "the whole garment is inside: {min}..{max}");
    }

    #[test]
    fn a_colour_background_replaces_only_the_region_connected_to_the_border() {
        let mut image = RgbImage::from_pixel(100, 100, Rgb([250, 250, 250]));
        for y in 20..80 {
            for x in 20..80 {
                image.put_pixel(x, y, Rgb([10, 10, 10]));
            }
        }
        // A near-white hole inside the dark subject is not background.
        for y in 45..55 {
            for x in 45..55 {
                image.put_pixel(x, y, Rgb([250, 250, 250]));
            }
        }
        let beige = Colour::parse("#F5F0E8").expect("colour");
        let out =
            compose(&image, &spec("1:1", 256, FitMode::Pad, Background::Colour(beige), ImageFormat::Png));
        assert_eq!(*out.get_pixel(2, 2), Rgb([0xF5, 0xF0, 0xE8]));
        assert_eq!(*out.get_pixel(128, 128), Rgb([250, 250, 250]), "the hole keeps its colour");
    }

    #[test]
    fn a_size_limit_lowers_jpeg_quality_until_the_file_fits_and_fails_clearly_when_it_cannot() {
        let mut noisy = RgbImage::new(800, 800);
        for (x, y, p) in noisy.enumerate_pixels_mut() {
            *p = Rgb([(x * 7 + y * 13) as u8, (x * y) as u8, (x ^ y) as u8]);
        }
        let mut source = Vec::new();
        noisy.write_to(&mut Cursor::new(&mut source), image::ImageFormat::Png).expect("png");
        let unsigned = |bytes: &[u8], _: &str| Ok(bytes.to_vec());
        let mut limited = spec("1:1", 800, FitMode::Pad, Background::Keep, ImageFormat::Jpeg);
        let full = render(&source, &limited, unsigned).expect("renders");
        limited.max_bytes = Some(full.bytes.len() as u64 * 2 / 3);
        let fitted = render(&source, &limited, unsigned).expect("fits at a lower quality");
        assert!(fitted.quality < 90 && fitted.bytes.len() as u64 <= limited.max_bytes.expect("limit"));
        limited.max_bytes = Some(1000);
        let refused = render(&source, &limited, unsigned).expect_err("cannot fit");
        assert!(refused.to_string().contains("lower long_edge_px or raise max_bytes"), "{refused}");
        let mut png = limited.clone();
        png.format = ImageFormat::Png;
        let refused = render(&source, &png, unsigned).expect_err("lossless cannot shrink");
        assert!(refused.to_string().contains("lossless"), "{refused}");
    }

    #[test]
    fn avif_and_display_p3_are_refused_with_what_to_choose_instead() {
        let avif = spec("1:1", 512, FitMode::Pad, Background::Keep, ImageFormat::Avif);
        assert!(check_supported(&avif).expect_err("avif").to_string().contains("choose jpeg, png or webp"));
        let mut p3 = spec("1:1", 512, FitMode::Pad, Background::Keep, ImageFormat::Jpeg);
        p3.colour_space = ColourSpace::DisplayP3;
        assert!(check_supported(&p3).expect_err("p3").to_string().contains("srgb"));
    }
}
