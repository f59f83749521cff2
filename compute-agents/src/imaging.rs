//! Deterministic image operations: decode, encode, cut out, composite, fit,
//! grade, hue shift. The `local` provider and the quality gate are built on
//! them; nothing here is generative AI.

use bytes::Bytes;
use image::{DynamicImage, ImageFormat, Rgba, RgbaImage, imageops};

/// Runs CPU-bound work (decoding, measuring, encoding, rendering) on the
/// blocking pool, at most one job per core at once in this process. Unbounded,
/// hundreds of generations in flight start hundreds of blocking threads that
/// starve the async workers, and with them the tasks holding database
/// connections and heartbeats; bounded, the excess waits its turn here.
pub async fn on_cpu<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, tokio::task::JoinError> {
    static CORES: std::sync::OnceLock<std::sync::Arc<tokio::sync::Semaphore>> = std::sync::OnceLock::new();
    let cores = CORES.get_or_init(|| {
        let count = std::thread::available_parallelism().map(usize::from).unwrap_or(2);
        std::sync::Arc::new(tokio::sync::Semaphore::new(count))
    });
    // The semaphore is never closed, so acquiring always succeeds.
    let permit = cores.clone().acquire_owned().await.ok();
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        work()
    })
    .await
}

/// Why an image could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ImagingError {
    /// The bytes are not an image this build reads (PNG, JPEG, WebP).
    #[error("not a readable image (PNG, JPEG or WebP expected): {0}")]
    Decode(String),
    /// Encoding failed.
    #[error("cannot encode the image: {0}")]
    Encode(String),
}

/// The media type the bytes themselves show, among the images and videos GPS
/// stores and serves (JPEG, PNG, WebP, GIF, AVIF; MP4, WebM), or `None` for
/// anything else: what a provider *says* it returned is never trusted, so an
/// HTML page or a script labelled `image/png` is not stored as a result.
pub fn sniffed_media_type(bytes: &[u8]) -> Option<&'static str> {
    if bytes.len() >= 12 && &bytes[4..8] == b"ftyp" {
        // ISO base media: AVIF images and MP4 videos share the container.
        return Some(if &bytes[8..12] == b"avif" || &bytes[8..12] == b"avis" {
            "image/avif"
        } else {
            "video/mp4"
        });
    }
    if bytes.starts_with(&[0x1a, 0x45, 0xdf, 0xa3]) {
        return Some("video/webm");
    }
    match image::guess_format(bytes).ok()? {
        ImageFormat::Jpeg => Some("image/jpeg"),
        ImageFormat::Png => Some("image/png"),
        ImageFormat::WebP => Some("image/webp"),
        ImageFormat::Gif => Some("image/gif"),
        _ => None,
    }
}

/// Decodes PNG, JPEG or WebP bytes.
pub fn decode(bytes: &[u8]) -> Result<RgbaImage, ImagingError> {
    image::load_from_memory(bytes).map(|i| i.to_rgba8()).map_err(|e| ImagingError::Decode(e.to_string()))
}

/// Encodes as `format` (`png`, `jpeg` or `webp`; anything else is written as
/// PNG, and the returned media type says so honestly).
pub fn encode(image: &RgbaImage, format: &str) -> Result<(Bytes, &'static str), ImagingError> {
    let mut out = std::io::Cursor::new(Vec::new());
    let (dynamic, format, media_type) = match format {
        "jpeg" => (
            DynamicImage::ImageRgb8(DynamicImage::ImageRgba8(image.clone()).to_rgb8()),
            ImageFormat::Jpeg,
            "image/jpeg",
        ),
        "webp" => (DynamicImage::ImageRgba8(image.clone()), ImageFormat::WebP, "image/webp"),
        _ => (DynamicImage::ImageRgba8(image.clone()), ImageFormat::Png, "image/png"),
    };
    dynamic.write_to(&mut out, format).map_err(|e| ImagingError::Encode(e.to_string()))?;
    Ok((Bytes::from(out.into_inner()), media_type))
}

/// A small deterministic random source (SplitMix64), so a seed always gives the
/// same variant.
#[derive(Debug, Clone)]
pub struct SeededRng(u64);

impl SeededRng {
    /// Starts at `seed`.
    pub fn new(seed: u64) -> Self {
        SeededRng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A float in `[low, high)`.
    pub fn range(&mut self, low: f32, high: f32) -> f32 {
        let unit = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        low + (high - low) * unit
    }
}

fn distance(a: Rgba<u8>, b: [f32; 3]) -> f32 {
    let d = |i: usize| f32::from(a.0[i]) - b[i];
    (d(0) * d(0) + d(1) * d(1) + d(2) * d(2)).sqrt()
}

/// The mean colour of the image's border pixels: the backdrop of a product photo.
pub fn border_colour(image: &RgbaImage) -> [f32; 3] {
    let (w, h) = image.dimensions();
    let mut sum = [0f64; 3];
    let mut count = 0f64;
    let mut add = |p: &Rgba<u8>| {
        for (s, c) in sum.iter_mut().zip(p.0) {
            *s += f64::from(c);
        }
        count += 1.0;
    };
    for x in 0..w {
        add(image.get_pixel(x, 0));
        add(image.get_pixel(x, h - 1));
    }
    for y in 0..h {
        add(image.get_pixel(0, y));
        add(image.get_pixel(w - 1, y));
    }
    sum.map(|s| (s / count.max(1.0)) as f32)
}

/// Removes the backdrop of a product photo: pixels close to the border colour
/// become transparent, with a soft edge so cut-outs do not look jagged.
pub fn cut_out(product: &RgbaImage) -> RgbaImage {
    const HARD: f32 = 28.0;
    const SOFT: f32 = 56.0;
    let backdrop = border_colour(product);
    let mut out = product.clone();
    for pixel in out.pixels_mut() {
        let d = distance(*pixel, backdrop);
        let keep = ((d - HARD) / (SOFT - HARD)).clamp(0.0, 1.0);
        pixel.0[3] = (f32::from(pixel.0[3]) * keep) as u8;
    }
    out
}

/// Scales and crops `image` to exactly `width` × `height`, covering the frame.
pub fn fit_cover(image: &RgbaImage, width: u32, height: u32) -> RgbaImage {
    let (w, h) = image.dimensions();
    let scale = (width as f32 / w as f32).max(height as f32 / h as f32);
    let (sw, sh) =
        (((w as f32 * scale).ceil() as u32).max(width), ((h as f32 * scale).ceil() as u32).max(height));
    let scaled = imageops::resize(image, sw, sh, imageops::FilterType::Triangle);
    imageops::crop_imm(&scaled, (sw - width) / 2, (sh - height) / 2, width, height).to_image()
}

/// Multiplies every channel by `gain` (a light grade).
pub fn grade(image: &mut RgbaImage, gain: [f32; 3]) {
    for pixel in image.pixels_mut() {
        for (c, g) in pixel.0.iter_mut().take(3).zip(gain) {
            *c = (f32::from(*c) * g).round().clamp(0.0, 255.0) as u8;
        }
    }
}

/// Places the product cut-out on the subject's base image (or a solid
/// backdrop) at `width` × `height`; the seed varies scale, position and grade.
pub fn composite(
    base: Option<&RgbaImage>,
    product: &RgbaImage,
    background: [u8; 3],
    width: u32,
    height: u32,
    seed: u64,
) -> RgbaImage {
    let mut rng = SeededRng::new(seed);
    let mut canvas = match base {
        Some(base) => fit_cover(base, width, height),
        None => {
            RgbaImage::from_pixel(width, height, Rgba([background[0], background[1], background[2], 255]))
        }
    };
    let cutout = cut_out(product);
    let share = rng.range(0.55, 0.75);
    let (pw, ph) = cutout.dimensions();
    let scale = (height as f32 * share / ph as f32).min(width as f32 * 0.9 / pw as f32);
    let (tw, th) = (((pw as f32 * scale) as u32).max(1), ((ph as f32 * scale) as u32).max(1));
    let resized = imageops::resize(&cutout, tw, th, imageops::FilterType::Triangle);
    let slack_x = width.saturating_sub(tw) as f32;
    let slack_y = height.saturating_sub(th) as f32;
    let x = (slack_x * rng.range(0.35, 0.65)) as i64;
    let y = (slack_y * rng.range(0.4, 0.7)) as i64;
    imageops::overlay(&mut canvas, &resized, x, y);
    let warmth = rng.range(-0.03, 0.03);
    grade(&mut canvas, [1.0 + warmth, 1.0, 1.0 - warmth]);
    canvas
}

/// Rotates every pixel's hue by `degrees` (saturation and value kept).
pub fn hue_shift(image: &mut RgbaImage, degrees: f32) {
    for pixel in image.pixels_mut() {
        let [r, g, b, _] = pixel.0.map(|c| f32::from(c) / 255.0);
        let max = r.max(g).max(b);
        let min = r.min(g).min(b);
        let delta = max - min;
        if delta <= f32::EPSILON {
            continue;
        }
        let mut hue = if max == r {
            60.0 * ((g - b) / delta).rem_euclid(6.0)
        } else if max == g {
            60.0 * ((b - r) / delta + 2.0)
        } else {
            60.0 * ((r - g) / delta + 4.0)
        };
        hue = (hue + degrees).rem_euclid(360.0);
        let chroma = delta;
        let x = chroma * (1.0 - ((hue / 60.0).rem_euclid(2.0) - 1.0).abs());
        let (r1, g1, b1) = match (hue / 60.0) as u32 {
            0 => (chroma, x, 0.0),
            1 => (x, chroma, 0.0),
            2 => (0.0, chroma, x),
            3 => (0.0, x, chroma),
            4 => (x, 0.0, chroma),
            _ => (chroma, 0.0, x),
        };
        let m = max - chroma;
        for (c, v) in pixel.0.iter_mut().take(3).zip([r1, g1, b1]) {
            *c = ((v + m) * 255.0).round().clamp(0.0, 255.0) as u8;
        }
    }
}

/// Sharpens lightly (unsharp mask), as an enhancement pass.
pub fn sharpen(image: &RgbaImage) -> RgbaImage {
    imageops::unsharpen(image, 1.2, 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_images_and_videos_are_recognised_whatever_they_claim() {
        let mut png = Vec::new();
        RgbaImage::new(2, 2).write_to(&mut std::io::Cursor::new(&mut png), ImageFormat::Png).expect("png");
        assert_eq!(sniffed_media_type(&png), Some("image/png"));
        let mp4 = [&[0, 0, 0, 0x18][..], b"ftypisom", &[0; 8]].concat();
        assert_eq!(sniffed_media_type(&mp4), Some("video/mp4"));
        assert_eq!(sniffed_media_type(&[0x1a, 0x45, 0xdf, 0xa3, 0x01]), Some("video/webm"));
        for other in
            [&b"<html><script>alert(1)</script></html>"[..], b"<svg onload=alert(1)>", b"%PDF-1.7", b""]
        {
            assert_eq!(sniffed_media_type(other), None, "{:?}", String::from_utf8_lossy(other));
        }
    }

    #[test]
    fn a_hue_shift_of_360_degrees_changes_nothing_and_120_turns_red_green() {
        let mut image = RgbaImage::from_pixel(2, 2, Rgba([200, 30, 30, 255]));
        hue_shift(&mut image, 360.0);
        assert_eq!(image.get_pixel(0, 0).0, [200, 30, 30, 255]);
        hue_shift(&mut image, 120.0);
        assert_eq!(image.get_pixel(0, 0).0, [30, 200, 30, 255]);
    }

    #[test]
    fn the_backdrop_of_a_product_photo_becomes_transparent() {
        let mut photo = RgbaImage::from_pixel(20, 20, Rgba([250, 250, 250, 255]));
        for x in 5..15 {
            for y in 5..15 {
                photo.put_pixel(x, y, Rgba([20, 40, 160, 255]));
            }
        }
        let cut = cut_out(&photo);
        assert_eq!(cut.get_pixel(0, 0).0[3], 0);
        assert_eq!(cut.get_pixel(10, 10).0[3], 255);
    }

    #[test]
    fn the_same_seed_composites_the_same_image_and_another_seed_does_not() {
        let mut product = RgbaImage::from_pixel(30, 40, Rgba([250, 250, 250, 255]));
        for x in 8..22 {
            for y in 5..35 {
                product.put_pixel(x, y, Rgba([10, 10, 200, 255]));
            }
        }
        let a = composite(None, &product, [240, 240, 240], 64, 80, 7);
        let b = composite(None, &product, [240, 240, 240], 64, 80, 7);
        let c = composite(None, &product, [240, 240, 240], 64, 80, 8);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.dimensions(), (64, 80));
    }
}
