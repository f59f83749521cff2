//! The automatic quality gate: minimum resolution, blur (variance of the
//! Laplacian) and garment colour fidelity (each dominant product colour must
//! appear in the output within a CIEDE2000 ΔE threshold). A failing image is
//! not thrown away: its prediction is produced flagged with the figures, so a
//! reviewer sees why.

use gps_domain::prediction::{QualityCheck, QualityReport};
use gps_domain::values::{Name, Text};
use image::RgbaImage;
use serde::{Deserialize, Serialize};

use crate::imaging;

/// The gate's thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GateSettings {
    /// The long edge must be at least this many pixels.
    pub min_long_edge_px: u32,
    /// The variance of the Laplacian (0–255 grey levels) must be at least this.
    pub min_sharpness: f64,
    /// Every dominant product colour must appear within this CIEDE2000 ΔE.
    pub max_colour_delta_e: f64,
}

impl Default for GateSettings {
    fn default() -> Self {
        GateSettings { min_long_edge_px: 256, min_sharpness: 10.0, max_colour_delta_e: 12.0 }
    }
}

/// A colour in CIE L*a*b* (D65).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Lab {
    /// Lightness.
    pub l: f64,
    /// Green–red.
    pub a: f64,
    /// Blue–yellow.
    pub b: f64,
}

impl Lab {
    /// Converts an sRGB colour.
    pub fn from_srgb(rgb: [u8; 3]) -> Lab {
        let linear = rgb.map(|c| {
            let c = f64::from(c) / 255.0;
            if c <= 0.04045 { c / 12.92 } else { ((c + 0.055) / 1.055).powf(2.4) }
        });
        let [r, g, b] = linear;
        let x = (0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047;
        let y = 0.2126 * r + 0.7152 * g + 0.0722 * b;
        let z = (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883;
        let f = |t: f64| if t > 216.0 / 24389.0 { t.cbrt() } else { (24389.0 / 27.0 * t + 16.0) / 116.0 };
        let (fx, fy, fz) = (f(x), f(y), f(z));
        Lab { l: 116.0 * fy - 16.0, a: 500.0 * (fx - fy), b: 200.0 * (fy - fz) }
    }
}

/// CIEDE2000 colour difference (Sharma, Wu and Dalal, 2005), kL = kC = kH = 1.
pub fn ciede2000(x: Lab, y: Lab) -> f64 {
    use std::f64::consts::PI;
    let deg = |r: f64| r * 180.0 / PI;
    let rad = |d: f64| d * PI / 180.0;
    let c1 = x.a.hypot(x.b);
    let c2 = y.a.hypot(y.b);
    let c_mean = (c1 + c2) / 2.0;
    let g = 0.5 * (1.0 - (c_mean.powi(7) / (c_mean.powi(7) + 25f64.powi(7))).sqrt());
    let a1 = (1.0 + g) * x.a;
    let a2 = (1.0 + g) * y.a;
    let c1p = a1.hypot(x.b);
    let c2p = a2.hypot(y.b);
    let hue = |b: f64, a: f64| if b == 0.0 && a == 0.0 { 0.0 } else { deg(b.atan2(a)).rem_euclid(360.0) };
    let h1p = hue(x.b, a1);
    let h2p = hue(y.b, a2);
    let dl = y.l - x.l;
    let dc = c2p - c1p;
    let dh = if c1p * c2p == 0.0 {
        0.0
    } else if (h2p - h1p).abs() <= 180.0 {
        h2p - h1p
    } else if h2p - h1p > 180.0 {
        h2p - h1p - 360.0
    } else {
        h2p - h1p + 360.0
    };
    let dh_big = 2.0 * (c1p * c2p).sqrt() * (rad(dh) / 2.0).sin();
    let l_mean = (x.l + y.l) / 2.0;
    let cp_mean = (c1p + c2p) / 2.0;
    let hp_mean = if c1p * c2p == 0.0 {
        h1p + h2p
    } else if (h1p - h2p).abs() <= 180.0 {
        (h1p + h2p) / 2.0
    } else if h1p + h2p < 360.0 {
        (h1p + h2p + 360.0) / 2.0
    } else {
        (h1p + h2p - 360.0) / 2.0
    };
    let t = 1.0 - 0.17 * rad(hp_mean - 30.0).cos()
        + 0.24 * rad(2.0 * hp_mean).cos()
        + 0.32 * rad(3.0 * hp_mean + 6.0).cos()
        - 0.20 * rad(4.0 * hp_mean - 63.0).cos();
    let d_theta = 30.0 * (-((hp_mean - 275.0) / 25.0).powi(2)).exp();
    let rc = 2.0 * (cp_mean.powi(7) / (cp_mean.powi(7) + 25f64.powi(7))).sqrt();
    let sl = 1.0 + 0.015 * (l_mean - 50.0).powi(2) / (20.0 + (l_mean - 50.0).powi(2)).sqrt();
    let sc = 1.0 + 0.045 * cp_mean;
    let sh = 1.0 + 0.015 * cp_mean * t;
    let rt = -(rad(2.0 * d_theta)).sin() * rc;
    ((dl / sl).powi(2) + (dc / sc).powi(2) + (dh_big / sh).powi(2) + rt * (dc / sc) * (dh_big / sh)).sqrt()
}

/// The dominant colours of a product photo (its backdrop removed): colours
/// binned coarsely, the bins holding at least 8 % of the garment, their mean
/// colour, most common first, at most `max`.
pub fn dominant_colours(product: &RgbaImage, max: usize) -> Vec<[u8; 3]> {
    let cut = imaging::cut_out(product);
    let small = image::imageops::thumbnail(&cut, 96, 96);
    let mut bins: std::collections::HashMap<u16, (u64, [u64; 3])> = std::collections::HashMap::new();
    let mut total = 0u64;
    for pixel in small.pixels() {
        if pixel.0[3] < 200 {
            continue;
        }
        let key = (u16::from(pixel.0[0] >> 4) << 8)
            | (u16::from(pixel.0[1] >> 4) << 4)
            | u16::from(pixel.0[2] >> 4);
        let entry = bins.entry(key).or_insert((0, [0; 3]));
        entry.0 += 1;
        for (s, c) in entry.1.iter_mut().zip(pixel.0) {
            *s += u64::from(c);
        }
        total += 1;
    }
    let mut ranked: Vec<(u64, [u64; 3])> =
        bins.into_values().filter(|(n, _)| *n * 100 >= total * 8).collect();
    ranked.sort_by_key(|b| std::cmp::Reverse(b.0));
    ranked.into_iter().take(max).map(|(n, sum)| sum.map(|s| (s / n.max(1)) as u8)).collect()
}

/// Variance of the Laplacian of the grey image: low means blurry.
pub fn sharpness(image: &RgbaImage) -> f64 {
    let grey = image::DynamicImage::ImageRgba8(image.clone()).to_luma8();
    let (w, h) = grey.dimensions();
    if w < 3 || h < 3 {
        return 0.0;
    }
    let at = |x: u32, y: u32| f64::from(grey.get_pixel(x, y).0[0]);
    let mut values = Vec::with_capacity(((w - 2) * (h - 2)) as usize);
    for y in 1..h - 1 {
        for x in 1..w - 1 {
            values.push(at(x - 1, y) + at(x + 1, y) + at(x, y - 1) + at(x, y + 1) - 4.0 * at(x, y));
        }
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n
}

/// The smallest ΔE between `colour` and any pixel of `image` (sampled on a
/// 128-pixel thumbnail).
fn closest_delta_e(colours: &[Lab], colour: Lab) -> f64 {
    colours.iter().map(|c| ciede2000(colour, *c)).fold(f64::INFINITY, f64::min)
}

fn name(s: &str) -> Name {
    Name::parse(s).unwrap_or_else(|_| unreachable!("check names are short literals"))
}

fn text(s: String) -> Option<Text> {
    Text::parse(s).ok()
}

/// Runs every check on `image` against `product_colours` (from the analyse step).
pub fn assess(image: &RgbaImage, product_colours: &[[u8; 3]], settings: &GateSettings) -> QualityReport {
    let mut checks = Vec::new();
    let (w, h) = image.dimensions();
    let long_edge = f64::from(w.max(h));
    checks.push(QualityCheck {
        check: name("resolution"),
        passed: long_edge >= f64::from(settings.min_long_edge_px),
        measured: long_edge,
        threshold: f64::from(settings.min_long_edge_px),
        detail: text(format!("{w}×{h} px; the long edge must be at least {} px", settings.min_long_edge_px)),
    });
    let blur = sharpness(image);
    checks.push(QualityCheck {
        check: name("sharpness"),
        passed: blur >= settings.min_sharpness,
        measured: (blur * 100.0).round() / 100.0,
        threshold: settings.min_sharpness,
        detail: text(format!(
            "variance of the Laplacian {blur:.1}; below {} reads as blurry",
            settings.min_sharpness
        )),
    });
    if !product_colours.is_empty() {
        let thumb = image::imageops::thumbnail(image, 128, 128);
        let mut seen = std::collections::HashSet::new();
        let palette: Vec<Lab> = thumb
            .pixels()
            .filter(|p| p.0[3] > 200)
            .map(|p| [p.0[0] >> 1, p.0[1] >> 1, p.0[2] >> 1])
            .filter(|key| seen.insert(*key))
            .map(|key| Lab::from_srgb(key.map(|c| (c << 1) | 1)))
            .collect();
        let (worst, worst_colour) = product_colours
            .iter()
            .map(|c| (closest_delta_e(&palette, Lab::from_srgb(*c)), *c))
            .fold((0.0, [0u8; 3]), |acc, x| if x.0 > acc.0 { x } else { acc });
        let worst = (worst * 100.0).round() / 100.0;
        checks.push(QualityCheck {
            check: name("colour_fidelity"),
            passed: worst <= settings.max_colour_delta_e,
            measured: worst,
            threshold: settings.max_colour_delta_e,
            detail: text(format!(
                "product colour #{:02X}{:02X}{:02X} is ΔE2000 {worst:.1} from its closest match in the image (at most {} allowed)",
                worst_colour[0], worst_colour[1], worst_colour[2], settings.max_colour_delta_e
            )),
        });
    }
    QualityReport { passed: checks.iter().all(|c| c.passed), checks }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ciede2000_matches_the_published_test_pairs() {
        // Pairs 1, 7 and 17 of Sharma, Wu and Dalal's table.
        let pairs = [
            ((50.0, 2.6772, -79.7751), (50.0, 0.0, -82.7485), 2.0425),
            ((50.0, 0.0, 0.0), (50.0, -1.0, 2.0), 2.3669),
            ((50.0, 2.5, 0.0), (73.0, 25.0, -18.0), 27.1492),
        ];
        for ((l1, a1, b1), (l2, a2, b2), expected) in pairs {
            let got = ciede2000(Lab { l: l1, a: a1, b: b1 }, Lab { l: l2, a: a2, b: b2 });
            assert!((got - expected).abs() < 1e-3, "expected {expected}, got {got}");
        }
    }

    #[test]
    fn the_dominant_colour_of_a_blue_garment_on_white_is_blue() {
        let mut photo = RgbaImage::from_pixel(40, 40, image::Rgba([250, 250, 250, 255]));
        for x in 10..30 {
            for y in 5..35 {
                photo.put_pixel(x, y, image::Rgba([30, 60, 170, 255]));
            }
        }
        let colours = dominant_colours(&photo, 3);
        let first = colours.first().copied().expect("a dominant colour");
        assert!(ciede2000(Lab::from_srgb(first), Lab::from_srgb([30, 60, 170])) < 2.0, "{first:?}");
        assert!(colours.iter().all(|c| c[2] > c[0]), "no white backdrop colour: {colours:?}");
    }

    #[test]
    fn a_flat_image_is_blurry_and_a_checkerboard_is_sharp() {
        let flat = RgbaImage::from_pixel(32, 32, image::Rgba([128, 128, 128, 255]));
        assert_eq!(sharpness(&flat), 0.0);
        let checker = RgbaImage::from_fn(32, 32, |x, y| {
            if (x + y) % 2 == 0 { image::Rgba([0, 0, 0, 255]) } else { image::Rgba([255, 255, 255, 255]) }
        });
        assert!(sharpness(&checker) > 1000.0);
    }
}
