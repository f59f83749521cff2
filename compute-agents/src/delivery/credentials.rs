//! Content credentials: a signed C2PA manifest in every rendition.
//!
//! The EU AI Act (art. 50) requires machine-readable marking of AI-generated
//! images from 2 August 2026, and a formatting step that resizes and
//! re-encodes would strip any credentials the provider embedded — so the
//! delivery worker signs each rendition itself, after formatting. The manifest
//! says how the image came to be:
//! - a `c2pa.created` action with the IPTC digital source type
//!   `trainedAlgorithmicMedia` — or `compositeWithTrainedAlgorithmicMedia`
//!   when the workflow edits an existing image (`revise`) — naming the
//!   provider and model as the software agent;
//! - the product photos as `componentOf` ingredients, each named by SKU and
//!   view and identified by its content hash;
//! - a `com.gps.generation` assertion recording the workflow (name and
//!   version), provider, model, seed, generation, prediction and preset.
//!
//! Signing is ECDSA P-256 (COSE ES256) with aws-lc-rs, the one crypto stack;
//! the c2pa crate only assembles and embeds the manifest (and verifies it
//! when read back, with its RustCrypto verifiers). The key and certificate
//! chain come from configuration (`GPS_C2PA_CERT_FILE`, `GPS_C2PA_KEY_FILE`);
//! `gps up` generates a local development CA and signing certificate once
//! ([`ContentCredentials::development`]) and says so. A development
//! certificate is trusted by nobody else: validators report the manifest as
//! valid but from an untrusted signer until a real certificate is configured.

use std::io::Cursor;
use std::path::Path;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use base64::Engine as _;
use serde_json::json;

/// Why credentials could not be loaded or a manifest not be signed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CredentialsError {
    /// The key or certificate is unusable.
    #[error("C2PA signing credentials: {0}")]
    Invalid(String),
    /// Reading or writing the files failed.
    #[error("C2PA signing credentials at {path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// The c2pa crate refused to build or embed the manifest.
    #[error("C2PA manifest: {0}")]
    Manifest(String),
}

/// A product photo a rendition was made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ingredient {
    /// A readable name, e.g. `DR-2041 front`.
    pub title: String,
    /// Its media type.
    pub media_type: String,
    /// Its content hash (`sha256:…`).
    pub hash: String,
}

/// What a rendition's manifest states.
#[derive(Debug, Clone, PartialEq)]
pub struct ManifestFacts {
    /// The file name.
    pub title: String,
    /// Whether the image edits an existing image (composite) rather than
    /// being generated from references.
    pub edits_existing_image: bool,
    /// The provider and model, e.g. `fal / flux-pro`.
    pub software_agent: String,
    /// The product photos.
    pub ingredients: Vec<Ingredient>,
    /// Workflow, model, seed, generation, prediction, preset (JSON object).
    pub generation: serde_json::Value,
}

/// The IPTC digital source type of a generated image.
pub const TRAINED_ALGORITHMIC_MEDIA: &str =
    "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia";
/// The IPTC digital source type of a real image edited with generative AI.
pub const COMPOSITE_WITH_TRAINED_ALGORITHMIC_MEDIA: &str =
    "http://cv.iptc.org/newscodes/digitalsourcetype/compositeWithTrainedAlgorithmicMedia";
/// The label of GPS's own assertion.
pub const GENERATION_ASSERTION: &str = "com.gps.generation";

/// A signing key and its certificate chain (signing certificate first).
pub struct ContentCredentials {
    key: EcdsaKeyPair,
    chain: Vec<Vec<u8>>,
    chain_pem: String,
    rng: SystemRandom,
}

impl std::fmt::Debug for ContentCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContentCredentials").field("certificates", &self.chain.len()).finish_non_exhaustive()
    }
}

/// The base64 bodies of the PEM blocks labelled `label`.
fn pem_blocks(text: &str, label: &str) -> Result<Vec<Vec<u8>>, CredentialsError> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(&begin) {
        let after = &rest[start + begin.len()..];
        let stop = after
            .find(&end)
            .ok_or_else(|| CredentialsError::Invalid(format!("a {label} block is not closed")))?;
        let body: String = after[..stop].chars().filter(|c| !c.is_whitespace()).collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|e| CredentialsError::Invalid(format!("a {label} block is not base64 ({e})")))?;
        blocks.push(der);
        rest = &after[stop + end.len()..];
    }
    Ok(blocks)
}

fn read(path: &Path) -> Result<String, CredentialsError> {
    std::fs::read_to_string(path)
        .map_err(|e| CredentialsError::Io { path: path.display().to_string(), message: e.to_string() })
}

fn write(path: &Path, contents: &str, private: bool) -> Result<(), CredentialsError> {
    let io =
        |e: std::io::Error| CredentialsError::Io { path: path.display().to_string(), message: e.to_string() };
    if private {
        write_private(path, contents.as_bytes()).map_err(io)
    } else {
        std::fs::write(path, contents).map_err(io)
    }
}

/// Writes `contents` to `path` so that no other local user can read them at
/// any moment: a file created with mode 600 beside it (never a readable file
/// later narrowed), flushed, then renamed over `path`.
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let file_name = path.file_name().and_then(|name| name.to_str()).unwrap_or("private");
    let staging = path.with_file_name(format!(".{file_name}.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&staging);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options.open(&staging).and_then(|mut file| {
        std::io::Write::write_all(&mut file, contents)?;
        file.sync_all()
    });
    match written.and_then(|()| std::fs::rename(&staging, path)) {
        Ok(()) => Ok(()),
        Err(error) => {
            let _ = std::fs::remove_file(&staging);
            Err(error)
        }
    }
}

/// The file names of the development credentials inside their folder.
pub const DEVELOPMENT_CERT_FILE: &str = "c2pa-dev-chain.pem";
/// The private key's file name.
pub const DEVELOPMENT_KEY_FILE: &str = "c2pa-dev-key.pem";
/// The development CA's certificate (what a validator must trust to call
/// development manifests trusted).
pub const DEVELOPMENT_CA_FILE: &str = "c2pa-dev-ca.pem";

impl ContentCredentials {
    /// Credentials from a PEM certificate chain (signing certificate first,
    /// then intermediates) and a PKCS#8 PEM ECDSA P-256 private key.
    pub fn from_pem(chain_pem: &str, key_pem: &str) -> Result<Self, CredentialsError> {
        let chain = pem_blocks(chain_pem, "CERTIFICATE")?;
        if chain.is_empty() {
            return Err(CredentialsError::Invalid("the certificate file holds no CERTIFICATE block".into()));
        }
        let key_der = pem_blocks(key_pem, "PRIVATE KEY")?.into_iter().next().ok_or_else(|| {
            CredentialsError::Invalid(
                "the key file holds no PKCS#8 'PRIVATE KEY' block; convert it with `openssl pkcs8 -topk8 -nocrypt`"
                    .into(),
            )
        })?;
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &key_der).map_err(|_| {
            CredentialsError::Invalid("the private key is not an ECDSA P-256 key in PKCS#8 form".into())
        })?;
        Ok(ContentCredentials { key, chain, chain_pem: chain_pem.to_owned(), rng: SystemRandom::new() })
    }

    /// Credentials from the two files.
    pub fn from_files(chain: &Path, key: &Path) -> Result<Self, CredentialsError> {
        Self::from_pem(&read(chain)?, &read(key)?)
    }

    /// The local development credentials in `dir`, generated on first use:
    /// a development CA and a signing certificate it issued (ECDSA P-256,
    /// key usage digitalSignature, extended key usage emailProtection, as
    /// C2PA's certificate profile requires). Returns whether they were
    /// generated now.
    pub fn development(dir: &Path) -> Result<(Self, bool), CredentialsError> {
        let (chain_path, key_path) = (dir.join(DEVELOPMENT_CERT_FILE), dir.join(DEVELOPMENT_KEY_FILE));
        if chain_path.exists() && key_path.exists() {
            return Ok((Self::from_files(&chain_path, &key_path)?, false));
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| CredentialsError::Io { path: dir.display().to_string(), message: e.to_string() })?;
        let generated = generate_development_chain()?;
        write(&dir.join(DEVELOPMENT_CA_FILE), &generated.ca_pem, false)?;
        write(&key_path, &generated.key_pem, true)?;
        write(&chain_path, &generated.chain_pem, false)?;
        Ok((Self::from_pem(&generated.chain_pem, &generated.key_pem)?, true))
    }

    /// The certificate chain as PEM.
    pub fn chain_pem(&self) -> &str {
        &self.chain_pem
    }

    /// `asset` (of `media_type`: image/jpeg, image/png or image/webp) with a
    /// signed manifest stating `facts` embedded.
    pub fn sign(
        &self,
        asset: &[u8],
        media_type: &str,
        facts: &ManifestFacts,
    ) -> Result<Vec<u8>, CredentialsError> {
        let source_type = if facts.edits_existing_image {
            COMPOSITE_WITH_TRAINED_ALGORITHMIC_MEDIA
        } else {
            TRAINED_ALGORITHMIC_MEDIA
        };
        let ingredients: Vec<serde_json::Value> = facts
            .ingredients
            .iter()
            .map(|ingredient| {
                json!({
                    "title": ingredient.title,
                    "format": ingredient.media_type,
                    "relationship": "componentOf",
                    "instance_id": format!("gps:asset:{}", ingredient.hash),
                    "description": format!("product photo {}", ingredient.hash),
                })
            })
            .collect();
        let definition = json!({
            "title": facts.title,
            "format": media_type,
            "claim_generator_info": [{ "name": "GPS", "version": env!("CARGO_PKG_VERSION") }],
            "ingredients": ingredients,
            "assertions": [
                {
                    "label": "c2pa.actions.v2",
                    "data": { "actions": [
                        {
                            "action": "c2pa.created",
                            "digitalSourceType": source_type,
                            "softwareAgent": { "name": facts.software_agent },
                            "description": "generated by GPS from product photos",
                        },
                        {
                            "action": "c2pa.resized",
                            "softwareAgent": { "name": "GPS delivery" },
                            "description": "formatted for the channel preset",
                        },
                    ] },
                },
                { "label": GENERATION_ASSERTION, "data": facts.generation },
            ],
        });
        let manifest = |e: c2pa::Error| CredentialsError::Manifest(e.to_string());
        let context = c2pa::Context::new()
            .with_settings(json!({ "builder": { "thumbnail": { "enabled": false } } }))
            .map_err(manifest)?;
        let mut builder =
            c2pa::Builder::from_context(context).with_definition(definition).map_err(manifest)?;
        let mut source = Cursor::new(asset);
        let mut signed = Cursor::new(Vec::with_capacity(asset.len() + 32 * 1024));
        builder.sign(&AwsLcSigner(self), media_type, &mut source, &mut signed).map_err(manifest)?;
        Ok(signed.into_inner())
    }
}

/// ES256 over aws-lc-rs; the signature is the fixed-size r‖s COSE expects.
struct AwsLcSigner<'a>(&'a ContentCredentials);

impl c2pa::Signer for AwsLcSigner<'_> {
    fn sign(&self, data: &[u8]) -> c2pa::Result<Vec<u8>> {
        let credentials = self.0;
        credentials
            .key
            .sign(&credentials.rng, data)
            .map(|signature| signature.as_ref().to_vec())
            .map_err(|_| c2pa::Error::CoseSignature)
    }

    fn alg(&self) -> c2pa::SigningAlg {
        c2pa::SigningAlg::Es256
    }

    fn certs(&self) -> c2pa::Result<Vec<Vec<u8>>> {
        Ok(self.0.chain.clone())
    }

    fn reserve_size(&self) -> usize {
        // The COSE structure, the chain, and room for the signature.
        2048 + self.0.chain.iter().map(Vec::len).sum::<usize>()
    }
}

/// A generated development chain in PEM.
struct DevelopmentChain {
    ca_pem: String,
    chain_pem: String,
    key_pem: String,
}

fn generate_development_chain() -> Result<DevelopmentChain, CredentialsError> {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
    };
    let invalid =
        |e: rcgen::Error| CredentialsError::Invalid(format!("generating the development certificate: {e}"));
    let now = time::OffsetDateTime::now_utc();
    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(invalid)?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(invalid)?;
    ca.distinguished_name.push(DnType::CommonName, "GPS local development C2PA CA");
    ca.distinguished_name.push(DnType::OrganizationName, "GPS development (not trusted)");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    ca.not_before = now - time::Duration::days(1);
    ca.not_after = now + time::Duration::days(3650);
    let ca = CertifiedIssuer::self_signed(ca, ca_key).map_err(invalid)?;

    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(invalid)?;
    let mut signing = CertificateParams::new(Vec::<String>::new()).map_err(invalid)?;
    signing.distinguished_name.push(DnType::CommonName, "GPS local development content credentials");
    signing.distinguished_name.push(DnType::OrganizationName, "GPS development (not trusted)");
    signing.is_ca = IsCa::ExplicitNoCa;
    signing.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    signing.extended_key_usages = vec![ExtendedKeyUsagePurpose::EmailProtection];
    signing.use_authority_key_identifier_extension = true;
    signing.not_before = now - time::Duration::days(1);
    signing.not_after = now + time::Duration::days(825);
    let certificate = signing.signed_by(&key, &ca).map_err(invalid)?;
    Ok(DevelopmentChain {
        ca_pem: ca.pem(),
        chain_pem: format!("{}{}", certificate.pem(), ca.pem()),
        key_pem: key.serialize_pem(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn a_private_file_replaces_a_readable_one_and_is_never_readable_by_others() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("demo-credentials.txt");
        std::fs::write(&path, "old").expect("old file");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        write_private(&path, b"password: secret\n").expect("write");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "password: secret\n");
        assert_eq!(std::fs::metadata(&path).expect("metadata").permissions().mode() & 0o777, 0o600);
        let leftovers: Vec<_> =
            std::fs::read_dir(dir.path()).expect("list").map(|e| e.expect("entry").file_name()).collect();
        assert_eq!(leftovers.len(), 1, "no staging file left: {leftovers:?}");
    }

    fn facts() -> ManifestFacts {
        ManifestFacts {
            title: "DR-2041_front_1.png".into(),
            edits_existing_image: false,
            software_agent: "local / local-composite-v1".into(),
            ingredients: vec![Ingredient {
                title: "DR-2041 front".into(),
                media_type: "image/png".into(),
                hash: format!("sha256:{}", "ab".repeat(32)),
            }],
            generation: json!({ "workflow": "on-model", "workflow_version": 1 }),
        }
    }

    #[test]
    fn a_signed_png_reads_back_as_created_by_generative_ai_with_its_ingredients_and_a_trusted_signature() {
        let dir = tempfile::tempdir().expect("dir");
        let (credentials, generated) = ContentCredentials::development(dir.path()).expect("credentials");
        assert!(generated);
        let (_, again) = ContentCredentials::development(dir.path()).expect("loads the same files");
        assert!(!again, "generated once, loaded afterwards");
        let mut png = Vec::new();
        image::RgbImage::from_pixel(64, 48, image::Rgb([200, 30, 30]))
            .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
            .expect("png");
        let signed = credentials.sign(&png, "image/png", &facts()).expect("signed");
        let ca = std::fs::read_to_string(dir.path().join(DEVELOPMENT_CA_FILE)).expect("ca");
        let context = c2pa::Context::new()
            .with_settings(json!({ "trust": { "trust_anchors": ca } }))
            .expect("settings");
        let reader = c2pa::Reader::from_context(context)
            .with_stream("image/png", Cursor::new(&signed))
            .expect("reads the manifest");
        assert_eq!(
            reader.validation_state(),
            c2pa::ValidationState::Trusted,
            "{:?}",
            reader.validation_status()
        );
        let manifest = reader.active_manifest().expect("a manifest");
        let titles: Vec<&str> = manifest.ingredients().iter().filter_map(|i| i.title()).collect();
        assert_eq!(titles, ["DR-2041 front"]);
        let actions: serde_json::Value = manifest.find_assertion("c2pa.actions.v2").expect("actions");
        assert_eq!(actions["actions"][0]["action"], "c2pa.created");
        assert_eq!(actions["actions"][0]["digitalSourceType"], TRAINED_ALGORITHMIC_MEDIA);
        let generation: serde_json::Value =
            manifest.find_assertion(GENERATION_ASSERTION).expect("generation");
        assert_eq!(generation["workflow"], "on-model");
    }

    #[test]
    fn a_key_that_is_not_p256_pkcs8_is_refused_with_how_to_convert_it() {
        let error = ContentCredentials::from_pem(
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            "",
        )
        .expect_err("no key");
        assert!(error.to_string().contains("pkcs8"), "{error}");
    }
}
