//! The demo catalog `gps up` seeds into a freshly created demo brand, so a
//! newcomer sees a full pipeline without bringing files: drawn garments (tops,
//! dresses, trousers, bags in several colours), subjects (figures in two
//! poses) and styles with a reference swatch. Every image is drawn here, not
//! downloaded, and goes through the same intake as an upload (validation,
//! working copy, analysis, content-addressed storage). Everything is labelled
//! as demo data (names end in "(demo)", products carry `demo = true`).

use std::collections::BTreeMap;

use anyhow::Context;
use bytes::Bytes;
use gps_commands::CommandHandler;
use gps_domain::Aggregate;
use gps_domain::ids::{BrandId, ImageId, ProductId, StyleId, SubjectId};
use gps_domain::product::{ImageView, Product, ProductCommand};
use gps_domain::style::{Style, StyleCommand, StyleDefinition};
use gps_domain::subject::{Angle, Pose, Subject, SubjectCommand};
use gps_domain::values::{Category, Colour, Name, Sku, Text};
use gps_domain::wire::Actor;
use gps_gateway::media::Media;
use gps_nats::CommandMeta;
use image::{Rgb, RgbImage};

/// What the demo catalog holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DemoCatalog {
    pub(crate) products: usize,
    pub(crate) subjects: usize,
    pub(crate) styles: usize,
}

const GARMENTS: &[(&str, &str, &str)] = &[
    ("top", "Relaxed tee", "tops"),
    ("dress", "Slip dress", "dresses"),
    ("trousers", "Wide trousers", "trousers"),
    ("bag", "Tote bag", "bags"),
];
const COLOURS: &[(&str, [u8; 3])] =
    &[("terracotta", [196, 98, 64]), ("navy", [32, 48, 96]), ("sage", [140, 168, 130])];

/// Seeds the catalog into `brand`. Command ids are derived from the item, so a
/// repeated seeding records nothing new.
pub(crate) async fn seed_catalog(
    handler: &CommandHandler,
    media: &Media,
    brand: &BrandId,
) -> anyhow::Result<DemoCatalog> {
    let sku_claims = gps_commands::sku_claims::SkuClaims::open(handler.clone()).await?;
    let mut products = 0;
    for (kind, name, category) in GARMENTS {
        for (colour_name, colour) in COLOURS {
            let id = format!("demo-{kind}-{colour_name}");
            let mut attributes = BTreeMap::from([("colour".to_owned(), (*colour_name).to_owned())]);
            attributes.insert("demo".into(), "true".into());
            let create = ProductCommand::CreateProduct {
                product_id: ProductId::parse(&id)?,
                brand_id: brand.clone(),
                sku: Sku::parse(format!("DEMO-{}-{}", kind.to_uppercase(), colour_name.to_uppercase()))?,
                name: Name::parse(format!("{name}, {colour_name} (demo)"))?,
                category: Category::parse(*category)?,
                attributes,
            };
            // Through the SKU claims, like every product creation.
            sku_claims
                .execute_product(brand, &demo_meta(&id, "create"), &create)
                .await
                .with_context(|| format!("seeding demo {id} (create)"))?;
            let image = intake(media, brand, &draw_garment(kind, *colour)).await?;
            let add = ProductCommand::AddProductImage {
                image_id: ImageId::parse("front")?,
                asset: image.asset.clone(),
                view: ImageView::Front,
                analysis: Some(image.analysis.clone()),
            };
            run::<Product>(handler, brand, &id, "front", &add).await?;
            products += 1;
        }
    }
    let mut subjects = 0;
    for (id, name, description, skin) in [
        (
            "demo-ava",
            "Ava (demo)",
            "A drawn figure: tall, slim build, shoulder-length hair.",
            [224, 182, 150],
        ),
        ("demo-noah", "Noah (demo)", "A drawn figure: medium build, short hair.", [150, 104, 78]),
    ] {
        let create = SubjectCommand::CreateSubject {
            subject_id: SubjectId::parse(id)?,
            brand_id: brand.clone(),
            name: Name::parse(name)?,
            description: Text::parse(description)?,
        };
        run::<Subject>(handler, brand, id, "create", &create).await?;
        for (pose, stride) in [(Pose::Standing, 0), (Pose::Walking, 40)] {
            let image = intake(media, brand, &draw_figure(skin, stride)).await?;
            let add = SubjectCommand::AddSubjectBaseImage {
                image_id: ImageId::parse(if stride == 0 { "standing-front" } else { "walking-front" })?,
                asset: image.asset.clone(),
                pose,
                angle: Angle::Front,
                analysis: Some(image.analysis.clone()),
            };
            run::<Subject>(handler, brand, id, &format!("{pose:?}"), &add).await?;
        }
        subjects += 1;
    }
    let mut styles = 0;
    for (id, name, background, colour, mood) in [
        (
            "demo-studio-warm",
            "Studio warm (demo)",
            "seamless paper, warm off-white",
            [245, 240, 232],
            "calm, confident, editorial",
        ),
        (
            "demo-concrete",
            "Concrete (demo)",
            "raw concrete wall, soft daylight",
            [160, 160, 156],
            "urban, relaxed",
        ),
    ] {
        let swatch = intake(media, brand, &draw_swatch(colour)).await?;
        let definition = StyleDefinition {
            background: Text::parse(background)?,
            background_colour: Some(Colour::parse(format!(
                "#{:02X}{:02X}{:02X}",
                colour[0], colour[1], colour[2]
            ))?),
            lighting: Text::parse("soft key from the left, gentle fill")?,
            mood: Text::parse(mood)?,
            positive_prompt: vec![Text::parse("crisp fabric detail")?],
            negative_prompt: vec![Text::parse("harsh shadows")?],
            reference_images: vec![swatch.asset.clone()],
            guidelines: vec![],
        };
        let create = StyleCommand::CreateStyle {
            style_id: StyleId::parse(id)?,
            brand_id: brand.clone(),
            name: Name::parse(name)?,
            definition,
        };
        run::<Style>(handler, brand, id, "create", &create).await?;
        styles += 1;
    }
    Ok(DemoCatalog { products, subjects, styles })
}

async fn run<A: Aggregate>(
    handler: &CommandHandler,
    brand: &BrandId,
    id: &str,
    step: &str,
    command: &A::Command,
) -> anyhow::Result<()> {
    let address = CommandHandler::address::<A>(brand, id)?;
    handler
        .execute::<A>(&address, &demo_meta(id, step), command)
        .await
        .with_context(|| format!("seeding demo {id} ({step})"))?;
    Ok(())
}

/// A seeding command's metadata: its id derives from the item and the step.
fn demo_meta(id: &str, step: &str) -> CommandMeta {
    CommandMeta::new(format!("demo-catalog:{id}:{step}"), Actor::System("gps-demo".into()))
}

async fn intake(
    media: &Media,
    brand: &BrandId,
    picture: &RgbImage,
) -> anyhow::Result<gps_gateway::uploads::IngestedImage> {
    let mut png = std::io::Cursor::new(Vec::new());
    picture.write_to(&mut png, image::ImageFormat::Png).context("encoding a demo image")?;
    let image = gps_gateway::uploads::ingest_image(media, Bytes::from(png.into_inner())).await?;
    gps_gateway::uploads::store_image(media, brand, &image).await?;
    Ok(image)
}

const BACKDROP: Rgb<u8> = Rgb([242, 240, 236]);

/// Fills the polygon `points` (even-odd rule).
fn fill(canvas: &mut RgbImage, points: &[(f32, f32)], colour: Rgb<u8>) {
    for y in 0..canvas.height() {
        let scan = y as f32 + 0.5;
        let mut crossings: Vec<f32> = Vec::new();
        for (i, &(x0, y0)) in points.iter().enumerate() {
            let (x1, y1) = points[(i + 1) % points.len()];
            if (y0 <= scan && scan < y1) || (y1 <= scan && scan < y0) {
                crossings.push(x0 + (scan - y0) * (x1 - x0) / (y1 - y0));
            }
        }
        crossings.sort_by(f32::total_cmp);
        for pair in crossings.chunks(2) {
            if let [from, to] = pair {
                for x in (from.max(0.0) as u32)..(to.min(canvas.width() as f32) as u32) {
                    canvas.put_pixel(x, y, colour);
                }
            }
        }
    }
}

fn circle(canvas: &mut RgbImage, centre: (f32, f32), radius: f32, colour: Rgb<u8>) {
    let points: Vec<(f32, f32)> = (0..48)
        .map(|i| {
            let angle = i as f32 / 48.0 * std::f32::consts::TAU;
            (centre.0 + radius * angle.cos(), centre.1 + radius * angle.sin())
        })
        .collect();
    fill(canvas, &points, colour);
}

fn shade(colour: [u8; 3], factor: f32) -> Rgb<u8> {
    Rgb(colour.map(|c| (f32::from(c) * factor).clamp(0.0, 255.0) as u8))
}

/// A flat-lay drawing of one garment on a light backdrop, 600×800.
fn draw_garment(kind: &str, colour: [u8; 3]) -> RgbImage {
    let mut canvas = RgbImage::from_pixel(600, 800, BACKDROP);
    let main = Rgb(colour);
    let dark = shade(colour, 0.75);
    match kind {
        "top" => {
            fill(
                &mut canvas,
                &[
                    (180.0, 200.0),
                    (420.0, 200.0),
                    (520.0, 300.0),
                    (460.0, 360.0),
                    (420.0, 320.0),
                    (420.0, 620.0),
                    (180.0, 620.0),
                    (180.0, 320.0),
                    (140.0, 360.0),
                    (80.0, 300.0),
                ],
                main,
            );
            circle(&mut canvas, (300.0, 200.0), 45.0, BACKDROP);
        }
        "dress" => {
            fill(
                &mut canvas,
                &[
                    (230.0, 160.0),
                    (370.0, 160.0),
                    (380.0, 340.0),
                    (470.0, 700.0),
                    (130.0, 700.0),
                    (220.0, 340.0),
                ],
                main,
            );
            fill(&mut canvas, &[(220.0, 330.0), (380.0, 330.0), (382.0, 350.0), (218.0, 350.0)], dark);
            fill(&mut canvas, &[(235.0, 100.0), (245.0, 100.0), (245.0, 160.0), (235.0, 160.0)], dark);
            fill(&mut canvas, &[(355.0, 100.0), (365.0, 100.0), (365.0, 160.0), (355.0, 160.0)], dark);
        }
        "trousers" => {
            fill(
                &mut canvas,
                &[
                    (190.0, 140.0),
                    (410.0, 140.0),
                    (450.0, 720.0),
                    (320.0, 720.0),
                    (300.0, 330.0),
                    (280.0, 720.0),
                    (150.0, 720.0),
                ],
                main,
            );
            fill(&mut canvas, &[(190.0, 140.0), (410.0, 140.0), (412.0, 175.0), (188.0, 175.0)], dark);
        }
        _ => {
            circle(&mut canvas, (300.0, 300.0), 110.0, dark);
            circle(&mut canvas, (300.0, 300.0), 85.0, BACKDROP);
            fill(&mut canvas, &[(150.0, 320.0), (450.0, 320.0), (480.0, 660.0), (120.0, 660.0)], main);
        }
    }
    canvas
}

/// A simple figure (head, torso, arms, legs), 500×900; `stride` spreads the legs.
fn draw_figure(skin: [u8; 3], stride: i32) -> RgbImage {
    let mut canvas = RgbImage::from_pixel(500, 900, BACKDROP);
    let skin = Rgb(skin);
    let clothes = Rgb([70, 70, 78]);
    let s = stride as f32;
    circle(&mut canvas, (250.0, 120.0), 60.0, skin);
    fill(&mut canvas, &[(235.0, 175.0), (265.0, 175.0), (265.0, 210.0), (235.0, 210.0)], skin);
    fill(&mut canvas, &[(170.0, 210.0), (330.0, 210.0), (320.0, 500.0), (180.0, 500.0)], clothes);
    fill(
        &mut canvas,
        &[(170.0, 215.0), (140.0, 215.0), (120.0 - s / 2.0, 480.0), (150.0 - s / 2.0, 480.0)],
        skin,
    );
    fill(
        &mut canvas,
        &[(330.0, 215.0), (360.0, 215.0), (380.0 + s / 2.0, 480.0), (350.0 + s / 2.0, 480.0)],
        skin,
    );
    fill(&mut canvas, &[(185.0, 500.0), (245.0, 500.0), (235.0 - s, 860.0), (185.0 - s, 860.0)], clothes);
    fill(&mut canvas, &[(255.0, 500.0), (315.0, 500.0), (315.0 + s, 860.0), (265.0 + s, 860.0)], clothes);
    canvas
}

/// A reference swatch: the style's background colour with a soft light fall-off.
fn draw_swatch(colour: [u8; 3]) -> RgbImage {
    RgbImage::from_fn(480, 360, |x, y| {
        let light = 1.05 - (x as f32 / 480.0) * 0.2 - (y as f32 / 360.0) * 0.1;
        shade(colour, light)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_garment_is_drawn_in_its_colour_on_the_backdrop() {
        for (kind, _, _) in GARMENTS {
            let picture = draw_garment(kind, [196, 98, 64]);
            let painted = picture.pixels().filter(|p| **p == Rgb([196, 98, 64])).count();
            assert!(painted > 20_000, "{kind}: {painted} pixels in the garment colour");
            assert_eq!(*picture.get_pixel(5, 5), BACKDROP);
        }
        assert_ne!(draw_figure([224, 182, 150], 0), draw_figure([224, 182, 150], 40), "the poses differ");
    }
}
