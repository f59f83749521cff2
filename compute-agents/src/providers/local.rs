//! `local`: the embedded, offline default provider.
//!
//! Honest about what it is: deterministic image operations, not generative AI.
//! Generate composites the first product image (its backdrop removed by colour
//! distance from the border) onto the subject's base image, or onto the style's
//! background colour, at the requested size; the seed varies scale, position and
//! light grade, so variants differ and the same seed repeats exactly. Edit
//! re-grades the source image; enhance sharpens it and fits it to the size;
//! video is a short looping animated WebP of the source image (a seeded
//! push-in and drift, see [`crate::animation`]), not generated motion. Its
//! model names say `image-ops` so provenance never suggests otherwise.

use futures::future::BoxFuture;

use super::{Capability, InputRole, Output, Provider, ProviderError, Submitted, Task};
use crate::imaging;

/// The local provider.
#[derive(Debug, Clone, Default)]
pub struct LocalProvider {
    /// Output format of generated images (`png`, `jpeg` or `webp`).
    pub format: String,
}

const NAME: &str = "local";
const CAPABILITIES: &[Capability] =
    &[Capability::Generate, Capability::Edit, Capability::Enhance, Capability::Video];

impl LocalProvider {
    /// A local provider writing `format` images.
    pub fn new(format: impl Into<String>) -> Self {
        LocalProvider { format: format.into() }
    }

    fn run(&self, task: &Task) -> Result<Output, ProviderError> {
        let decode = |role: InputRole| -> Result<Option<image::RgbaImage>, ProviderError> {
            task.image(role)
                .map(|i| {
                    imaging::decode(&i.bytes)
                        .map_err(|e| ProviderError::invalid(NAME, format!("{role:?} image: {e}")))
                })
                .transpose()
        };
        let image = match task.capability {
            Capability::Generate => {
                let product = decode(InputRole::Product)?
                    .ok_or_else(|| ProviderError::invalid(NAME, "generate needs a product image"))?;
                let base = decode(InputRole::Subject)?;
                imaging::composite(
                    base.as_ref(),
                    &product,
                    task.background.unwrap_or([236, 232, 226]),
                    task.width,
                    task.height,
                    task.seed,
                )
            }
            Capability::Edit => {
                let source = decode(InputRole::Source)?
                    .ok_or_else(|| ProviderError::invalid(NAME, "edit needs the image to edit"))?;
                let mut rng = imaging::SeededRng::new(task.seed);
                let mut edited = imaging::fit_cover(&source, task.width, task.height);
                let lift = rng.range(0.97, 1.05);
                imaging::grade(&mut edited, [lift, lift, lift]);
                edited
            }
            Capability::Enhance => {
                let source = decode(InputRole::Source)?
                    .ok_or_else(|| ProviderError::invalid(NAME, "enhance needs the image to enhance"))?;
                imaging::sharpen(&imaging::fit_cover(&source, task.width, task.height))
            }
            Capability::Video => {
                let source = decode(InputRole::Source)?
                    .ok_or_else(|| ProviderError::invalid(NAME, "video needs the image to animate"))?;
                let clip = crate::animation::animate(&source, task.width, task.height, task.seed)
                    .map_err(|e| ProviderError::invalid(NAME, e.to_string()))?;
                return Ok(Output {
                    bytes: clip,
                    media_type: "image/webp".to_owned(),
                    model: self.model(task.capability),
                    usage_units: 0,
                    seed: Some(task.seed),
                });
            }
            other => {
                return Err(ProviderError::invalid(NAME, format!("the local provider cannot {other}")));
            }
        };
        let (bytes, media_type) =
            imaging::encode(&image, &self.format).map_err(|e| ProviderError::invalid(NAME, e.to_string()))?;
        Ok(Output {
            bytes,
            media_type: media_type.to_owned(),
            model: self.model(task.capability),
            usage_units: 0,
            seed: Some(task.seed),
        })
    }
}

impl Provider for LocalProvider {
    fn name(&self) -> &str {
        NAME
    }

    fn capabilities(&self) -> &[Capability] {
        CAPABILITIES
    }

    fn model(&self, capability: Capability) -> String {
        match capability {
            Capability::Generate => "image-ops-composite-v1",
            Capability::Edit => "image-ops-regrade-v1",
            Capability::Enhance => "image-ops-sharpen-v1",
            Capability::Video => "image-ops-pan-zoom-v1",
            _ => "image-ops-v1",
        }
        .to_owned()
    }

    fn idempotent(&self, _capability: Capability) -> bool {
        // Deterministic, offline, free: repeating it changes nothing.
        true
    }

    fn submit<'a>(&'a self, task: &'a Task) -> BoxFuture<'a, Result<Submitted, ProviderError>> {
        Box::pin(async move {
            // Image work is CPU-bound; keep it off the async workers.
            let provider = self.clone();
            let task = task.clone();
            crate::imaging::on_cpu(move || provider.run(&task).map(Submitted::Done))
                .await
                .map_err(|e| ProviderError::retryable(NAME, format!("image worker stopped: {e}"), None))?
        })
    }
}
