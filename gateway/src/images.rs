//! Image intake: what an uploaded file must be before anything is stored, and
//! what GPS learns from it. Pure functions over bytes, no IO, so the upload
//! endpoints, the catalog import and the demo seeding share one judgement.
//!
//! Order matters: the type is sniffed from the bytes (never from the name or
//! the `Content-Type`), the header is read and the pixel count checked before a
//! single pixel is decoded (decompression bombs), then the pixels are decoded
//! (truncated and corrupt files fail here), EXIF orientation and the ICC profile
//! are applied (the working copy is upright sRGB), and the working copy is
//! re-encoded without any metadata (no GPS position leaks). The original bytes
//! are kept untouched beside it.

use std::io::Cursor;

use gps_domain::values::{Colour, PerceptualHash};
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};

/// What uploads accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageLimits {
    /// The most pixels (width × height) an image may have.
    pub max_pixels: u64,
    /// The longest side an image may have.
    pub max_side: u32,
}

impl Default for ImageLimits {
    fn default() -> Self {
        // 50 megapixels covers medium-format cameras; one side up to 20,000 px.
        ImageLimits { max_pixels: 50_000_000, max_side: 20_000 }
    }
}

/// Why a file is not accepted, in words for the person who sent it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageRejection {
    /// The bytes are not an image format GPS reads.
    #[error("{0}")]
    NotAnImage(String),
    /// The image is larger than the limit.
    #[error("{0}")]
    TooLarge(String),
    /// The file is cut short or damaged.
    #[error("{0}")]
    Corrupt(String),
}

/// The image formats uploads accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcceptedFormat {
    /// JPEG.
    Jpeg,
    /// PNG.
    Png,
    /// WebP.
    WebP,
}

impl AcceptedFormat {
    /// The media type.
    pub fn media_type(self) -> &'static str {
        match self {
            AcceptedFormat::Jpeg => "image/jpeg",
            AcceptedFormat::Png => "image/png",
            AcceptedFormat::WebP => "image/webp",
        }
    }

    fn image_format(self) -> ImageFormat {
        match self {
            AcceptedFormat::Jpeg => ImageFormat::Jpeg,
            AcceptedFormat::Png => ImageFormat::Png,
            AcceptedFormat::WebP => ImageFormat::WebP,
        }
    }
}

/// Names what the bytes are from their signature, and accepts only JPEG, PNG
/// and WebP. The message of a refusal says what the file seems to be.
pub fn sniff(bytes: &[u8]) -> Result<AcceptedFormat, ImageRejection> {
    let starts = |signature: &[u8]| bytes.starts_with(signature);
    if starts(&[0xFF, 0xD8, 0xFF]) {
        return Ok(AcceptedFormat::Jpeg);
    }
    if starts(b"\x89PNG\r\n\x1a\n") {
        return Ok(AcceptedFormat::Png);
    }
    if bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        return Ok(AcceptedFormat::WebP);
    }
    let what = if bytes.is_empty() {
        "the file is empty".to_owned()
    } else if starts(b"%PDF") {
        "the file is a PDF document, not an image".to_owned()
    } else if starts(b"PK\x03\x04") {
        "the file is a ZIP archive (or an Office document), not an image".to_owned()
    } else if starts(b"GIF8") {
        "the file is a GIF; GIFs are not accepted".to_owned()
    } else if starts(b"II*\0") || starts(b"MM\0*") {
        "the file is a TIFF; TIFFs are not accepted".to_owned()
    } else if bytes.len() >= 12 && &bytes[4..8] == b"ftyp" {
        let brand = String::from_utf8_lossy(&bytes[8..12]).to_string();
        match brand.as_str() {
            "avif" | "avis" => "the file is an AVIF image; this server cannot decode AVIF".to_owned(),
            "heic" | "heix" | "mif1" | "msf1" | "hevc" => {
                "the file is a HEIC/HEIF image (as iPhones save them); this server cannot decode HEIC"
                    .to_owned()
            }
            _ => "the file is a video or other ISO media file, not an image".to_owned(),
        }
    } else if starts(b"<")
        || bytes.iter().take(512).all(|b| b.is_ascii() && (*b >= 0x20 || b"\r\n\t".contains(b)))
    {
        "the file is text (HTML, SVG, CSV or similar), not an image".to_owned()
    } else {
        "the file is not a JPEG, PNG or WebP image".to_owned()
    };
    Err(ImageRejection::NotAnImage(format!("{what}; upload a JPEG, PNG or WebP image")))
}

/// A validated upload: the untouched original and the working copy.
#[derive(Debug, Clone)]
pub struct AcceptedImage {
    /// The format of the original.
    pub original_format: AcceptedFormat,
    /// The working copy: upright, sRGB, without metadata.
    pub working: Vec<u8>,
    /// The working copy's format (WebP originals become PNG: the WebP encoder
    /// available here is lossless only, and PNG is as exact and more widely read).
    pub working_format: AcceptedFormat,
    /// Width of the working copy (after orientation).
    pub width: u32,
    /// Height of the working copy (after orientation).
    pub height: u32,
    /// Perceptual hash of the working copy.
    pub perceptual_hash: PerceptualHash,
    /// Up to five dominant colours, most frequent first.
    pub dominant_colours: Vec<Colour>,
    /// Whether the original carried EXIF metadata (dropped from the working copy).
    pub had_metadata: bool,
    /// Whether an ICC profile other than sRGB was converted.
    pub converted_to_srgb: bool,
}

/// Reads the header only: the format and the pixel size, refusing images over
/// the limits before any pixel is decoded.
pub fn check_header(bytes: &[u8], limits: ImageLimits) -> Result<(AcceptedFormat, u32, u32), ImageRejection> {
    let format = sniff(bytes)?;
    let reader = ImageReader::with_format(Cursor::new(bytes), format.image_format());
    let decoder = reader.into_decoder().map_err(|error| corrupt(format, &error))?;
    let (width, height) = decoder.dimensions();
    check_size(width, height, limits)?;
    Ok((format, width, height))
}

fn check_size(width: u32, height: u32, limits: ImageLimits) -> Result<(), ImageRejection> {
    let pixels = u64::from(width) * u64::from(height);
    if width == 0 || height == 0 {
        return Err(ImageRejection::Corrupt(format!("the image declares a size of {width}×{height} pixels")));
    }
    if pixels > limits.max_pixels || width > limits.max_side || height > limits.max_side {
        return Err(ImageRejection::TooLarge(format!(
            "the image is {width}×{height} pixels ({:.1} megapixels); the limit is {:.0} megapixels and {} pixels \
             on the longest side — scale it down and upload it again",
            pixels as f64 / 1e6,
            limits.max_pixels as f64 / 1e6,
            limits.max_side
        )));
    }
    Ok(())
}

fn corrupt(format: AcceptedFormat, error: &image::ImageError) -> ImageRejection {
    match error {
        image::ImageError::Limits(_) => ImageRejection::TooLarge(format!(
            "the {} image needs more memory to decode than an upload may use; scale it down",
            format.media_type()
        )),
        _ => ImageRejection::Corrupt(format!(
            "the {} file is truncated or corrupt and cannot be read ({error}); export it again and re-upload",
            format.media_type()
        )),
    }
}

/// Validates `bytes` and produces the working copy and its analysis.
pub fn accept(bytes: &[u8], limits: ImageLimits) -> Result<AcceptedImage, ImageRejection> {
    let (format, width, height) = check_header(bytes, limits)?;
    if format == AcceptedFormat::Jpeg && !jpeg_is_complete(bytes) {
        return Err(ImageRejection::Corrupt(
            "the JPEG file is truncated (it has no end-of-image marker); export it again and re-upload"
                .into(),
        ));
    }
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format.image_format());
    let mut decode_limits = Limits::default();
    decode_limits.max_image_width = Some(width);
    decode_limits.max_image_height = Some(height);
    // Room for the decoded pixels in 16-bit RGBA plus the decoder's own buffers.
    decode_limits.max_alloc = Some((u64::from(width) * u64::from(height) * 8).max(64 << 20));
    reader.limits(decode_limits);
    let mut decoder = reader.into_decoder().map_err(|error| corrupt(format, &error))?;
    let orientation = decoder.orientation().map_err(|error| corrupt(format, &error))?;
    let icc_profile = decoder.icc_profile().ok().flatten();
    let had_metadata = decoder.exif_metadata().ok().flatten().is_some();
    let mut image = DynamicImage::from_decoder(decoder).map_err(|error| corrupt(format, &error))?;
    image.apply_orientation(orientation);

    let (image, converted_to_srgb) = to_srgb(image, icc_profile.as_deref());
    let working_format = match format {
        AcceptedFormat::Jpeg => AcceptedFormat::Jpeg,
        AcceptedFormat::Png | AcceptedFormat::WebP => AcceptedFormat::Png,
    };
    let working = encode(&image, working_format, 92)
        .map_err(|error| ImageRejection::Corrupt(format!("the image cannot be re-encoded: {error}")))?;
    Ok(AcceptedImage {
        original_format: format,
        width: image.width(),
        height: image.height(),
        perceptual_hash: perceptual_hash(&image),
        dominant_colours: dominant_colours(&image),
        working,
        working_format,
        had_metadata,
        converted_to_srgb,
    })
}

/// A JPEG ends with an end-of-image marker after its scan data; a file cut
/// short has none (the decoder would quietly paint the missing part grey).
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let Some(scan_start) = bytes.windows(2).position(|pair| pair == [0xFF, 0xDA]) else {
        return false;
    };
    bytes[scan_start..].windows(2).any(|pair| pair == [0xFF, 0xD9])
}

/// Converts pixels described by an embedded ICC profile to sRGB. Images
/// without a profile, or with an sRGB one, are sRGB already.
fn to_srgb(image: DynamicImage, icc_profile: Option<&[u8]>) -> (DynamicImage, bool) {
    let Some(icc) = icc_profile else { return (image, false) };
    let Ok(source) = moxcms::ColorProfile::new_from_slice(icc) else {
        // An unreadable profile: the pixels are most likely sRGB; keep them.
        return (image, false);
    };
    let srgb = moxcms::ColorProfile::new_srgb();
    let is_srgb_already = source
        .description
        .as_ref()
        .is_some_and(|text| format!("{text:?}").to_ascii_lowercase().contains("srgb"));
    if is_srgb_already || source.color_space != moxcms::DataColorSpace::Rgb {
        return (image, false);
    }
    let has_alpha = image.color().has_alpha();
    let (layout, mut pixels, width, height) = if has_alpha {
        let rgba = image.to_rgba8();
        (moxcms::Layout::Rgba, rgba.as_raw().clone(), rgba.width(), rgba.height())
    } else {
        let rgb = image.to_rgb8();
        (moxcms::Layout::Rgb, rgb.as_raw().clone(), rgb.width(), rgb.height())
    };
    let Ok(transform) =
        source.create_transform_8bit(layout, &srgb, layout, moxcms::TransformOptions::default())
    else {
        return (image, false);
    };
    let mut converted = vec![0u8; pixels.len()];
    if transform.transform(&pixels, &mut converted).is_err() {
        return (image, false);
    }
    std::mem::swap(&mut pixels, &mut converted);
    let result = if has_alpha {
        image::RgbaImage::from_raw(width, height, pixels).map(DynamicImage::ImageRgba8)
    } else {
        image::RgbImage::from_raw(width, height, pixels).map(DynamicImage::ImageRgb8)
    };
    match result {
        Some(converted) => (converted, true),
        None => (image, false),
    }
}

/// Encodes pixels without metadata. `quality` (1–100) applies to JPEG only.
pub fn encode(
    image: &DynamicImage,
    format: AcceptedFormat,
    quality: u8,
) -> Result<Vec<u8>, image::ImageError> {
    let mut out = Cursor::new(Vec::new());
    match format {
        AcceptedFormat::Jpeg => {
            // JPEG has no alpha: flatten onto white, as product shots expect.
            let rgb = flatten_on_white(image);
            let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality.clamp(1, 100));
            rgb.write_with_encoder(encoder)?;
        }
        AcceptedFormat::Png => image.write_to(&mut out, ImageFormat::Png)?,
        AcceptedFormat::WebP => {
            let rgba = DynamicImage::ImageRgba8(image.to_rgba8());
            rgba.write_to(&mut out, ImageFormat::WebP)?;
        }
    }
    Ok(out.into_inner())
}

fn flatten_on_white(image: &DynamicImage) -> DynamicImage {
    if !image.color().has_alpha() {
        return DynamicImage::ImageRgb8(image.to_rgb8());
    }
    let rgba = image.to_rgba8();
    let rgb = image::RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        let [r, g, b, a] = rgba.get_pixel(x, y).0;
        let blend = |c: u8| ((u16::from(c) * u16::from(a) + 255 * (255 - u16::from(a))) / 255) as u8;
        image::Rgb([blend(r), blend(g), blend(b)])
    });
    DynamicImage::ImageRgb8(rgb)
}

/// A 64-bit difference hash: the picture shrunk to 9×8 grey pixels, one bit
/// per horizontal neighbour pair (is the left one brighter?). Robust to
/// resizing and re-compression, cheap, and comparable by Hamming distance.
pub fn perceptual_hash(image: &DynamicImage) -> PerceptualHash {
    let small = image.resize_exact(9, 8, image::imageops::FilterType::Triangle).to_luma8();
    let mut bits = 0u64;
    for y in 0..8 {
        for x in 0..8 {
            bits <<= 1;
            if small.get_pixel(x, y).0[0] > small.get_pixel(x + 1, y).0[0] {
                bits |= 1;
            }
        }
    }
    PerceptualHash::parse(format!("{bits:016x}")).expect("16 hex digits")
}

/// Up to five dominant colours: the picture shrunk to 64×64, colours grouped
/// into 4×4×4 buckets (64 levels), the fullest buckets' mean colours, most
/// frequent first. Fully transparent pixels do not count.
pub fn dominant_colours(image: &DynamicImage) -> Vec<Colour> {
    let small = image.resize(64, 64, image::imageops::FilterType::Triangle).to_rgba8();
    let mut buckets = [(0u32, [0u64; 3]); 64];
    for pixel in small.pixels() {
        let [r, g, b, a] = pixel.0;
        if a < 128 {
            continue;
        }
        let index = usize::from(r >> 6) * 16 + usize::from(g >> 6) * 4 + usize::from(b >> 6);
        buckets[index].0 += 1;
        buckets[index].1[0] += u64::from(r);
        buckets[index].1[1] += u64::from(g);
        buckets[index].1[2] += u64::from(b);
    }
    let total: u32 = buckets.iter().map(|(count, _)| count).sum();
    let mut filled: Vec<_> = buckets.iter().filter(|(count, _)| *count > 0).collect();
    filled.sort_by_key(|b| std::cmp::Reverse(b.0));
    filled
        .into_iter()
        // A colour covering under 2 % of the picture is a detail, not dominant.
        .filter(|(count, _)| u64::from(*count) * 50 >= u64::from(total))
        .take(5)
        .map(|(count, sums)| {
            let mean = |sum: u64| (sum / u64::from(*count)) as u8;
            Colour::parse(format!("#{:02X}{:02X}{:02X}", mean(sums[0]), mean(sums[1]), mean(sums[2])))
                .expect("#RRGGBB")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32, colour: [u8; 3]) -> Vec<u8> {
        let image = DynamicImage::ImageRgb8(image::RgbImage::from_pixel(width, height, image::Rgb(colour)));
        encode(&image, AcceptedFormat::Png, 90).expect("encode")
    }

    #[test]
    fn a_png_is_accepted_with_its_size_colour_and_hash() {
        let accepted = accept(&png(40, 30, [200, 10, 10]), ImageLimits::default()).expect("accepted");
        assert_eq!((accepted.width, accepted.height), (40, 30));
        assert_eq!(accepted.working_format, AcceptedFormat::Png);
        assert_eq!(accepted.dominant_colours, vec![Colour::parse("#C80A0A").expect("colour")]);
        assert_eq!(accepted.perceptual_hash.as_str().len(), 16);
    }

    #[test]
    fn files_that_are_not_images_are_named() {
        let refusal = |bytes: &[u8]| sniff(bytes).expect_err("refused").to_string();
        assert!(refusal(b"%PDF-1.7\n...").contains("PDF"));
        assert!(refusal(b"PK\x03\x04rest").contains("ZIP"));
        assert!(refusal(b"\0\0\0\x1cftypheic\0\0").contains("HEIC"));
        assert!(refusal(b"").contains("empty"));
        assert!(refusal(b"sku,name\nA,B\n").contains("text"));
    }

    #[test]
    fn a_resized_copy_is_a_near_duplicate_and_another_picture_is_not() {
        let mut gradient = image::RgbImage::new(120, 90);
        for (x, y, pixel) in gradient.enumerate_pixels_mut() {
            *pixel = image::Rgb([(x * 2) as u8, (y * 2) as u8, ((x + y) % 256) as u8]);
        }
        let original = DynamicImage::ImageRgb8(gradient);
        let resized = original.resize_exact(60, 45, image::imageops::FilterType::Lanczos3);
        let flipped = original.fliph();
        let hash = perceptual_hash(&original);
        assert!(hash.distance(&perceptual_hash(&resized)) <= 6);
        assert!(hash.distance(&perceptual_hash(&flipped)) > 20);
    }

    #[test]
    fn a_jpeg_without_its_end_marker_is_truncated() {
        let image = DynamicImage::ImageRgb8(image::RgbImage::from_pixel(64, 64, image::Rgb([1, 2, 3])));
        let jpeg = encode(&image, AcceptedFormat::Jpeg, 90).expect("encode");
        assert!(accept(&jpeg, ImageLimits::default()).is_ok());
        let cut = &jpeg[..jpeg.len() - 40];
        assert!(matches!(accept(cut, ImageLimits::default()), Err(ImageRejection::Corrupt(_))));
    }
}
