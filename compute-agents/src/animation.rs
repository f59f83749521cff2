//! A short looping animation of a still image, written as an animated WebP.
//!
//! This is the `local` provider's answer to image-to-video: a slow, seeded
//! push-in and drift over the approved image (a "Ken Burns" move), honest
//! image operations rather than generated motion. Animated WebP plays in every
//! current browser from an `<img>` tag, so the review screens show it without a
//! video player, and it needs no encoder beyond the lossless WebP one the
//! `image` crate already has: each frame is encoded on its own and its `VP8L`
//! bitstream is wrapped in the animation container (RIFF `VP8X` + `ANIM` +
//! one `ANMF` per frame, as the WebP container specification lays out).

use bytes::Bytes;
use image::codecs::webp::WebPEncoder;
use image::{ExtendedColorType, RgbaImage, imageops};

use crate::imaging::{ImagingError, SeededRng};

/// The longest edge of an animation frame: a preview clip, kept small because
/// every frame is stored losslessly.
pub const MAX_LONG_EDGE: u32 = 480;
/// Frames per clip.
pub const FRAMES: u32 = 16;
/// How long each frame shows, in milliseconds.
pub const FRAME_MS: u32 = 90;
/// How far the camera pushes in over the clip (8 % closer at the end).
const PUSH_IN: f32 = 0.08;

/// The frame size for a requested `width` × `height`: the same aspect, at most
/// [`MAX_LONG_EDGE`] on the long side.
pub fn frame_size(width: u32, height: u32) -> (u32, u32) {
    let long = width.max(height).max(1);
    if long <= MAX_LONG_EDGE {
        return (width.max(1), height.max(1));
    }
    let scale = MAX_LONG_EDGE as f32 / long as f32;
    (((width as f32 * scale).round() as u32).max(1), ((height as f32 * scale).round() as u32).max(1))
}

/// Animates `still` into a looping animated WebP of [`FRAMES`] frames at the
/// frame size for `width` × `height`; the seed picks the drift's direction.
pub fn animate(still: &RgbaImage, width: u32, height: u32, seed: u64) -> Result<Bytes, ImagingError> {
    let (frame_width, frame_height) = frame_size(width, height);
    // Work from a copy that already covers the frame, so every crop below is inside it.
    let base = crate::imaging::fit_cover(still, frame_width, frame_height);
    let mut rng = SeededRng::new(seed);
    let drift_x = rng.range(-1.0, 1.0);
    let drift_y = rng.range(-1.0, 1.0);
    let mut frames = Vec::with_capacity(FRAMES as usize);
    for index in 0..FRAMES {
        let t = index as f32 / (FRAMES - 1) as f32;
        let zoom = 1.0 + PUSH_IN * t;
        let crop_width = ((frame_width as f32 / zoom).round() as u32).clamp(1, frame_width);
        let crop_height = ((frame_height as f32 / zoom).round() as u32).clamp(1, frame_height);
        let slack_x = (frame_width - crop_width) as f32 / 2.0;
        let slack_y = (frame_height - crop_height) as f32 / 2.0;
        let x =
            (slack_x + drift_x * slack_x * t).round().clamp(0.0, (frame_width - crop_width) as f32) as u32;
        let y =
            (slack_y + drift_y * slack_y * t).round().clamp(0.0, (frame_height - crop_height) as f32) as u32;
        let crop = imageops::crop_imm(&base, x, y, crop_width, crop_height).to_image();
        let frame = imageops::resize(&crop, frame_width, frame_height, imageops::FilterType::Triangle);
        frames.push(lossless_bitstream(&frame)?);
    }
    Ok(container(frame_width, frame_height, &frames))
}

/// The `VP8L` chunk (header included) of `frame` encoded losslessly.
fn lossless_bitstream(frame: &RgbaImage) -> Result<Vec<u8>, ImagingError> {
    let mut file = Vec::new();
    WebPEncoder::new_lossless(&mut file)
        .encode(frame.as_raw(), frame.width(), frame.height(), ExtendedColorType::Rgba8)
        .map_err(|e| ImagingError::Encode(e.to_string()))?;
    // A RIFF file: "RIFF", size, "WEBP", then chunks of fourcc, size, data (padded to even).
    let mut at = 12;
    while at + 8 <= file.len() {
        let size = u32::from_le_bytes([file[at + 4], file[at + 5], file[at + 6], file[at + 7]]) as usize;
        let end = at + 8 + size + (size & 1);
        if &file[at..at + 4] == b"VP8L" {
            return Ok(file[at..end.min(file.len())].to_vec());
        }
        at = end;
    }
    Err(ImagingError::Encode("the WebP encoder wrote no lossless bitstream".into()))
}

fn push_u24(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_le_bytes()[..3]);
}

fn push_chunk(out: &mut Vec<u8>, fourcc: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(fourcc);
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(data);
    if data.len() % 2 == 1 {
        out.push(0);
    }
}

fn container(width: u32, height: u32, frames: &[Vec<u8>]) -> Bytes {
    let mut chunks = Vec::new();
    // VP8X: animation and alpha flags, then the canvas size minus one.
    let mut vp8x = vec![0b0001_0010, 0, 0, 0];
    push_u24(&mut vp8x, width - 1);
    push_u24(&mut vp8x, height - 1);
    push_chunk(&mut chunks, b"VP8X", &vp8x);
    // ANIM: transparent background, loop forever.
    let mut anim = vec![0, 0, 0, 0];
    anim.extend_from_slice(&0u16.to_le_bytes());
    push_chunk(&mut chunks, b"ANIM", &anim);
    for bitstream in frames {
        let mut frame = Vec::with_capacity(16 + bitstream.len());
        push_u24(&mut frame, 0);
        push_u24(&mut frame, 0);
        push_u24(&mut frame, width - 1);
        push_u24(&mut frame, height - 1);
        push_u24(&mut frame, FRAME_MS);
        // Every frame covers the whole canvas: no blending, no disposal.
        frame.push(0b0000_0010);
        frame.extend_from_slice(bitstream);
        push_chunk(&mut chunks, b"ANMF", &frame);
    }
    let mut file = Vec::with_capacity(12 + chunks.len());
    file.extend_from_slice(b"RIFF");
    file.extend_from_slice(&((4 + chunks.len()) as u32).to_le_bytes());
    file.extend_from_slice(b"WEBP");
    file.extend_from_slice(&chunks);
    Bytes::from(file)
}

#[cfg(test)]
mod tests {
    use image::AnimationDecoder;
    use image::codecs::webp::WebPDecoder;

    use super::*;

    fn still() -> RgbaImage {
        RgbaImage::from_fn(300, 400, |x, y| image::Rgba([(x % 256) as u8, (y % 256) as u8, 120, 255]))
    }

    #[test]
    fn the_clip_is_an_animated_webp_that_decoders_read_frame_by_frame() {
        let clip = animate(&still(), 1024, 1280, 7).expect("animate");
        assert_eq!(&clip[..4], b"RIFF");
        assert_eq!(&clip[8..16], b"WEBPVP8X");
        let decoder = WebPDecoder::new(std::io::Cursor::new(clip.to_vec())).expect("a WebP");
        assert!(decoder.has_animation());
        let frames = decoder.into_frames().collect_frames().expect("frames");
        assert_eq!(frames.len(), FRAMES as usize);
        let (width, height) = frame_size(1024, 1280);
        assert_eq!((width, height), (384, 480));
        for frame in &frames {
            assert_eq!(frame.buffer().dimensions(), (width, height));
            assert_eq!(frame.delay().numer_denom_ms(), (FRAME_MS, 1));
        }
        assert_ne!(frames[0].buffer(), frames[FRAMES as usize - 1].buffer(), "the camera moves");
    }

    #[test]
    fn the_same_seed_gives_the_same_clip_and_another_seed_another() {
        let a = animate(&still(), 300, 400, 1).expect("animate");
        assert_eq!(a, animate(&still(), 300, 400, 1).expect("animate"));
        assert_ne!(a, animate(&still(), 300, 400, 2).expect("animate"));
    }
}
