//! Uploads and the CDN route end to end: real HTTP, the real S3 protocol
//! (embedded endpoint), real NATS and Postgres. An upload round trip ends with
//! the image served from `/cdn/…` with immutable caching, 304 and ranges; a
//! derivative is rendered once and then served from storage; signed URLs are
//! required and bind the brand; a corpus of bad files is each refused with a
//! clear 4xx, leaving no object and no event.

use serde_json::json;

use crate::gateway::TestGateway;
use crate::harness::brand;
use crate::ingest_support::{
    brand_with_product, jpeg_of, jpeg_with_exif, last_sequence, picture, png_claiming, png_of, raw_request,
    stored_objects, upload,
};

const PRODUCT_IMAGES: &str = "/api/v1/brands/acme/products/p1/images";

#[tokio::test]
async fn an_uploaded_image_is_served_from_the_cdn_with_immutable_caching_304_and_ranges() {
    let gateway = TestGateway::start().await;
    let owner = brand_with_product(&gateway, "acme", "ana").await;
    // 300 wide, 200 high, but EXIF says: rotate 90° clockwise to display.
    let original = jpeg_with_exif(&picture(300, 200, [180, 40, 40]));

    let uploaded = upload(
        &gateway,
        &owner,
        PRODUCT_IMAGES,
        &[("view", "front")],
        ("photo.jpg", "image/jpeg", &original),
    )
    .await;
    assert_eq!(uploaded.status, 201, "{}", uploaded.text());
    let body = uploaded.json();
    let image = &body["image"];
    assert_eq!(
        (image["width"].as_u64(), image["height"].as_u64()),
        (Some(200), Some(300)),
        "orientation applied"
    );
    assert_eq!(image["media_type"], "image/jpeg");
    assert!(image["dominant_colours"].as_array().is_some_and(|c| !c.is_empty()), "{image}");
    assert_eq!(image["perceptual_hash"].as_str().map(str::len), Some(16));
    assert!(body["warnings"].as_array().is_some_and(Vec::is_empty));

    // The original is kept byte for byte; the working copy has no EXIF (no GPS).
    let key = image["key"].as_str().expect("key").to_owned();
    let original_key = image["original_key"].as_str().expect("original key");
    let stored_original =
        std::fs::read(gateway.storage_dir.join("gps").join(original_key)).expect("original stored");
    assert_eq!(stored_original, original);
    let working = std::fs::read(gateway.storage_dir.join("gps").join(&key)).expect("working copy stored");
    assert!(!working.windows(6).any(|w| w == b"Exif\0\0"), "the working copy must not carry EXIF");
    assert!(stored_original.windows(6).any(|w| w == b"Exif\0\0"));

    // Served from the CDN route with immutable caching and a strong ETag.
    let url = image["url"].as_str().expect("signed url").to_owned();
    assert!(url.starts_with(&format!("/cdn/{key}?exp=")), "{url}");
    let served = raw_request(gateway.port, "GET", &url, &[], b"").await;
    assert_eq!(served.status, 200, "{}", served.text());
    assert_eq!(served.body, working);
    assert_eq!(served.header("content-type"), Some("image/jpeg"));
    assert_eq!(served.header("cache-control"), Some("public, max-age=31536000, immutable"));
    let etag = served.header("etag").expect("etag").to_owned();
    assert!(etag.starts_with('"') && !etag.starts_with("W/"), "a strong ETag: {etag}");

    let revalidated = raw_request(gateway.port, "GET", &url, &[("If-None-Match", etag.as_str())], b"").await;
    assert_eq!(revalidated.status, 304);
    assert!(revalidated.body.is_empty());
    assert_eq!(revalidated.header("etag"), Some(etag.as_str()));
    let other_etag =
        raw_request(gateway.port, "GET", &url, &[("If-None-Match", "\"something-else\"")], b"").await;
    assert_eq!(other_etag.status, 200);

    let ranged = raw_request(gateway.port, "GET", &url, &[("Range", "bytes=10-109")], b"").await;
    assert_eq!(ranged.status, 206);
    assert_eq!(ranged.body, working[10..110]);
    assert_eq!(ranged.header("content-range"), Some(format!("bytes 10-109/{}", working.len()).as_str()));
    let beyond = format!("bytes={}-", working.len() + 10);
    let unsatisfiable = raw_request(gateway.port, "GET", &url, &[("Range", beyond.as_str())], b"").await;
    assert_eq!(unsatisfiable.status, 416);
    assert_eq!(unsatisfiable.header("content-range"), Some(format!("bytes */{}", working.len()).as_str()));

    // The read model shows the image with a signed URL that works.
    let sequence = body["stream_sequence"].as_u64().expect("sequence");
    let detail = gateway
        .as_user(&owner, "GET", &format!("/api/v1/brands/acme/products/p1?min_sequence={sequence}"), None)
        .await;
    assert_eq!(detail.status, 200, "{}", detail.body);
    let listed = detail.json();
    let listed_url = listed["images"][0]["url"].as_str().expect("image url in the read model");
    assert_eq!(
        listed["images"][0]["analysis"]["original"]["hash"],
        image["original_key"].as_str().map(|k| format!("sha256:{}", &k[5..])).expect("hex")
    );
    assert_eq!(raw_request(gateway.port, "GET", listed_url, &[], b"").await.body, working);
}

#[tokio::test]
async fn a_derivative_is_rendered_once_stored_back_and_then_served_from_storage() {
    let gateway = TestGateway::start().await;
    let owner = brand_with_product(&gateway, "acme", "ana").await;
    let png = png_of(&picture(800, 600, [20, 90, 160]));
    let uploaded = upload(&gateway, &owner, PRODUCT_IMAGES, &[], ("shot.png", "image/png", &png)).await;
    assert_eq!(uploaded.status, 201, "{}", uploaded.text());
    let image = uploaded.json()["image"].clone();
    let url = format!("{}&w=320&fmt=webp", image["url"].as_str().expect("url"));

    let first = raw_request(gateway.port, "GET", &url, &[], b"").await;
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(first.header("x-gps-derivative"), Some("created"));
    assert_eq!(first.header("content-type"), Some("image/webp"));
    let decoded = image::load_from_memory(&first.body).expect("a webp");
    assert_eq!((decoded.width(), decoded.height()), (320, 240));

    let hex = image["key"].as_str().expect("key").trim_start_matches("acme/").to_owned();
    let derivative =
        gateway.storage_dir.join("gps/acme/derivatives").join(&hex).join("w320-h0-contain-q85.webp");
    assert_eq!(std::fs::read(&derivative).expect("derivative stored back"), first.body);
    let written = std::fs::metadata(&derivative).expect("metadata").modified().expect("mtime");

    let second = raw_request(gateway.port, "GET", &url, &[], b"").await;
    assert_eq!(second.status, 200);
    assert_eq!(second.header("x-gps-derivative"), Some("stored"));
    assert_eq!(second.body, first.body);
    assert_eq!(
        std::fs::metadata(&derivative).expect("metadata").modified().expect("mtime"),
        written,
        "not re-encoded"
    );
    let derivatives = stored_objects(&gateway.storage_dir)
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("derivatives"))
        .count();
    assert_eq!(derivatives, 1);

    // Only allowlisted renditions: an arbitrary size is refused, nothing rendered.
    let odd = format!("{}&w=321", image["url"].as_str().expect("url"));
    let refused = raw_request(gateway.port, "GET", &odd, &[], b"").await;
    assert_eq!(refused.status, 400, "{}", refused.text());
    assert!(refused.text().contains("320"), "the refusal lists the offered sizes: {}", refused.text());
    assert_eq!(refused.header("cache-control"), Some("no-store"));
}

#[tokio::test]
async fn one_image_gets_a_bounded_number_of_stored_derivatives_and_those_made_stay_served() {
    let gateway = TestGateway::start().await;
    let owner = brand_with_product(&gateway, "acme", "ana").await;
    let png = png_of(&picture(96, 64, [120, 40, 200]));
    let uploaded = upload(&gateway, &owner, PRODUCT_IMAGES, &[], ("small.png", "image/png", &png)).await;
    assert_eq!(uploaded.status, 201, "{}", uploaded.text());
    let url = uploaded.json()["image"]["url"].as_str().expect("url").to_owned();
    // Distinct renditions: every offered quality in each of three formats.
    let renditions: Vec<String> = ["webp", "jpeg", "png"]
        .iter()
        .flat_map(|format| {
            gps_gateway::cdn::ALLOWED_QUALITIES.iter().map(move |q| format!("&w=64&fmt={format}&q={q}"))
        })
        .collect();
    let cap = gps_gateway::cdn::MAX_DERIVATIVES_PER_SOURCE;
    assert!(renditions.len() > cap);
    for rendition in &renditions[..cap] {
        let made = raw_request(gateway.port, "GET", &format!("{url}{rendition}"), &[], b"").await;
        assert_eq!(made.status, 200, "{rendition}: {}", made.text());
    }
    let refused = raw_request(gateway.port, "GET", &format!("{url}{}", renditions[cap]), &[], b"").await;
    assert_eq!(refused.status, 409, "{}", refused.text());
    assert!(refused.text().contains("stored derivatives"), "{}", refused.text());
    let stored = stored_objects(&gateway.storage_dir)
        .into_iter()
        .filter(|path| path.to_string_lossy().contains("derivatives"))
        .count();
    assert_eq!(stored, cap, "nothing rendered past the cap");
    let again = raw_request(gateway.port, "GET", &format!("{url}{}", renditions[0]), &[], b"").await;
    assert_eq!(again.status, 200);
    assert_eq!(again.header("x-gps-derivative"), Some("stored"));
}

#[tokio::test]
async fn a_stored_object_that_is_not_an_image_or_video_is_served_as_an_inert_download() {
    let gateway = TestGateway::start().await;
    let ana = brand_with_product(&gateway, "acme", "ana").await;
    let png = png_of(&picture(32, 32, [10, 120, 200]));
    let image = upload(&gateway, &ana, PRODUCT_IMAGES, &[], ("a.png", "image/png", &png)).await.json();
    let shown =
        raw_request(gateway.port, "GET", image["image"]["url"].as_str().expect("url"), &[], b"").await;
    assert_eq!(shown.status, 200);
    assert_eq!(shown.header("content-type"), Some("image/png"));
    assert_eq!(shown.header("content-disposition"), None, "an image is shown inline");
    assert_eq!(shown.header("content-security-policy"), Some("default-src 'none'; sandbox"));

    // A file of another type under the brand (an older release, a provider
    // that answered HTML): never rendered on GPS's origin.
    let page = bytes::Bytes::from_static(b"<html><script>fetch('/api/v1/me')</script></html>");
    let stored =
        gateway.state.media.store().put(&brand(), page, "text/html; charset=utf-8").await.expect("put");
    let url = gateway.state.media.signed_url(&stored.key);
    let served = raw_request(gateway.port, "GET", &url, &[], b"").await;
    assert_eq!(served.status, 200);
    assert_eq!(served.header("content-type"), Some("application/octet-stream"));
    assert_eq!(served.header("content-disposition"), Some("attachment"));
    assert_eq!(served.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(served.header("content-security-policy"), Some("default-src 'none'; sandbox"));
}

#[tokio::test]
async fn unsigned_expired_forged_and_traversing_cdn_urls_are_refused_and_brands_stay_apart() {
    let gateway = TestGateway::start().await;
    let ana = brand_with_product(&gateway, "acme", "ana").await;
    let bob = brand_with_product(&gateway, "beta", "bob").await;
    let png = png_of(&picture(64, 64, [200, 200, 20]));
    let a = upload(&gateway, &ana, PRODUCT_IMAGES, &[], ("a.png", "image/png", &png)).await.json();
    let other_png = png_of(&picture(64, 64, [20, 200, 200]));
    let b = upload(
        &gateway,
        &bob,
        "/api/v1/brands/beta/products/p1/images",
        &[],
        ("b.png", "image/png", &other_png),
    )
    .await
    .json();
    let a_key = a["image"]["key"].as_str().expect("key").to_owned();
    let a_url = a["image"]["url"].as_str().expect("url").to_owned();
    let b_url = b["image"]["url"].as_str().expect("url").to_owned();
    assert_eq!(raw_request(gateway.port, "GET", &a_url, &[], b"").await.status, 200);

    let unsigned = raw_request(gateway.port, "GET", &format!("/cdn/{a_key}"), &[], b"").await;
    assert_eq!(unsigned.status, 403);
    assert!(unsigned.text().contains("not signed"), "{}", unsigned.text());

    let key = gps_storage::ObjectKey::parse(&a_key).expect("key");
    let past =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() - 10;
    let expired = gateway.state.media.signed_url_expiring(&key, past);
    let refused = raw_request(gateway.port, "GET", &expired, &[], b"").await;
    assert_eq!(refused.status, 403);
    assert!(refused.text().contains("expired"), "{}", refused.text());

    // A later expiry with the old signature, or a flipped signature digit: forged.
    let (path, query) = a_url.split_once('?').expect("query");
    let signature = query.split("sig=").nth(1).expect("sig");
    let stretched = format!("{path}?exp=99999999999&sig={signature}");
    assert_eq!(raw_request(gateway.port, "GET", &stretched, &[], b"").await.status, 403);
    let flipped = format!("{}{}", &a_url[..a_url.len() - 1], if a_url.ends_with('0') { '1' } else { '0' });
    assert_eq!(raw_request(gateway.port, "GET", &flipped, &[], b"").await.status, 403);

    // Brand B knows A's key and holds a valid URL of its own: neither opens A's object.
    let b_query = b_url.split_once('?').expect("query").1;
    let borrowed = raw_request(gateway.port, "GET", &format!("/cdn/{a_key}?{b_query}"), &[], b"").await;
    assert_eq!(borrowed.status, 403);
    let a_hex = a_key.trim_start_matches("acme/");
    let rehomed = raw_request(gateway.port, "GET", &format!("/cdn/beta/{a_hex}?{b_query}"), &[], b"").await;
    assert_eq!(rehomed.status, 403);
    let through_api = gateway.as_user(&bob, "GET", "/api/v1/brands/acme/products/p1", None).await;
    assert_eq!(through_api.status, 404);

    // Traversal and keys outside the layout never reach storage.
    for path in [
        format!("/cdn/acme/%2e%2e/beta/{a_hex}?{b_query}"),
        format!("/cdn/acme/derivatives/{a_hex}/..%2f..%2fx?{b_query}"),
        "/cdn/..%2f..%2fetc%2fpasswd".to_owned(),
        format!("/cdn/ACME/{a_hex}"),
    ] {
        let response = raw_request(gateway.port, "GET", &path, &[], b"").await;
        assert!((400..500).contains(&response.status), "{path} -> {} {}", response.status, response.text());
        assert_ne!(response.body, png);
    }
}

#[tokio::test]
async fn every_bad_upload_is_refused_with_a_clear_4xx_and_leaves_no_object_and_no_event() {
    let gateway = TestGateway::start_configured(|media| media.max_upload_bytes = 256 * 1024).await;
    let owner = brand_with_product(&gateway, "acme", "ana").await;
    let valid = png_of(&picture(64, 48, [90, 90, 90]));
    let mut truncated = valid.clone();
    truncated.truncate(valid.len() / 2);
    let truncated_jpeg = {
        let jpeg = jpeg_of(&picture(128, 128, [10, 120, 10]));
        jpeg[..jpeg.len() * 2 / 3].to_vec()
    };
    let oversize = {
        let mut bytes = valid.clone();
        bytes.resize(300 * 1024, 0);
        bytes
    };
    let corpus: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
        (
            "PDF renamed .jpg",
            "image/jpeg",
            b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n".to_vec(),
            415,
            "PDF",
        ),
        ("truncated PNG", "image/png", truncated, 422, "truncated or corrupt"),
        ("truncated JPEG", "image/jpeg", truncated_jpeg, 422, "truncated"),
        (
            "1×1 PNG declaring 100000×100000",
            "image/png",
            png_claiming(100_000, 100_000),
            422,
            "100000×100000 pixels",
        ),
        ("oversize body", "image/png", oversize, 413, "limit"),
        ("HEIC", "image/heic", b"\0\0\0\x18ftypheic\0\0\0\0mif1heic".to_vec(), 415, "HEIC"),
        ("empty file", "image/png", Vec::new(), 415, "empty"),
    ];
    let objects_before = stored_objects(&gateway.storage_dir);
    let sequence_before = last_sequence(&gateway).await;
    for (name, content_type, bytes, status, words) in &corpus {
        let response =
            upload(&gateway, &owner, PRODUCT_IMAGES, &[], ("upload.jpg", content_type, bytes)).await;
        assert_eq!(response.status, *status, "{name}: {}", response.text());
        assert_eq!(response.header("content-type"), Some("application/problem+json"), "{name}");
        let detail = response.json()["detail"].as_str().unwrap_or_default().to_owned();
        assert!(detail.contains(words), "{name}: the message should say {words:?}: {detail}");
        assert_eq!(stored_objects(&gateway.storage_dir), objects_before, "{name} stored something");
        assert_eq!(last_sequence(&gateway).await, sequence_before, "{name} wrote an event");
    }

    // Refusals that depend on the target, not the file: nothing stored either.
    let unknown_product = upload(
        &gateway,
        &owner,
        "/api/v1/brands/acme/products/nope/images",
        &[],
        ("a.png", "image/png", &valid),
    )
    .await;
    assert_eq!(unknown_product.status, 404, "{}", unknown_product.text());
    let bad_view =
        upload(&gateway, &owner, PRODUCT_IMAGES, &[("view", "sideways")], ("a.png", "image/png", &valid))
            .await;
    assert_eq!(bad_view.status, 400);
    assert!(bad_view.text().contains("sideways"));
    let no_file = gateway.as_user(&owner, "POST", PRODUCT_IMAGES, Some(json!({"file": "x"}))).await;
    assert_eq!(no_file.status, 400, "{}", no_file.body);
    assert_eq!(stored_objects(&gateway.storage_dir), objects_before);
    assert_eq!(last_sequence(&gateway).await, sequence_before);

    // The same valid file is then accepted.
    let accepted = upload(&gateway, &owner, PRODUCT_IMAGES, &[], ("a.png", "image/png", &valid)).await;
    assert_eq!(accepted.status, 201, "{}", accepted.text());
    assert!(last_sequence(&gateway).await > sequence_before);
}

#[tokio::test]
async fn a_re_upload_is_idempotent_and_a_near_duplicate_is_reported() {
    let gateway = TestGateway::start().await;
    let owner = brand_with_product(&gateway, "acme", "ana").await;
    let base = picture(400, 300, [120, 60, 200]);
    let png = png_of(&base);
    let first = upload(&gateway, &owner, PRODUCT_IMAGES, &[], ("a.png", "image/png", &png)).await;
    assert_eq!(first.status, 201, "{}", first.text());
    let objects = stored_objects(&gateway.storage_dir);
    let image = first.json()["image"].clone();
    let keys: std::collections::BTreeSet<&str> =
        [image["key"].as_str().expect("key"), image["original_key"].as_str().expect("original")].into();
    // A PNG without metadata re-encodes to the very same bytes: then one object serves both.
    assert_eq!(objects.len(), keys.len(), "the original and the working copy, each stored once: {objects:?}");

    let again = upload(&gateway, &owner, PRODUCT_IMAGES, &[], ("a.png", "image/png", &png)).await;
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!(again.json()["events"], 0);
    assert_eq!(stored_objects(&gateway.storage_dir), objects, "same bytes, stored once");

    // A resized JPEG of the same picture on another product: accepted, with a warning.
    let sequence = first.json()["stream_sequence"].as_u64().expect("sequence");
    let created = gateway
        .as_user(&owner, "POST", "/api/v1/brands/acme/products", Some(crate::gateway::product("p2")))
        .await;
    assert_eq!(created.status, 201);
    let smaller = image::imageops::resize(&base, 200, 150, image::imageops::FilterType::Triangle);
    // Wait until the first image is in the catalog read model.
    let visible = gateway
        .as_user(&owner, "GET", &format!("/api/v1/brands/acme/products/p1?min_sequence={sequence}"), None)
        .await;
    assert_eq!(visible.status, 200);
    let similar = upload(
        &gateway,
        &owner,
        "/api/v1/brands/acme/products/p2/images",
        &[],
        ("small.jpg", "image/jpeg", &jpeg_of(&smaller)),
    )
    .await;
    assert_eq!(similar.status, 201, "{}", similar.text());
    let warnings = similar.json()["warnings"].clone();
    assert_eq!(warnings[0]["kind"], "near_duplicate", "{warnings}");
    assert_eq!(warnings[0]["owner_id"], "p1");
}

#[tokio::test]
async fn subject_and_style_reference_uploads_record_their_events() {
    let gateway = TestGateway::start().await;
    let owner = gateway.brand_with_owner("acme", "ana").await;
    let subject = gateway
        .as_user(
            &owner,
            "POST",
            "/api/v1/brands/acme/subjects",
            Some(json!({"subject_id": "mia", "name": "Mia", "description": "Tall, dark hair"})),
        )
        .await;
    assert_eq!(subject.status, 201, "{}", subject.body);
    let style = gateway
        .as_user(
            &owner,
            "POST",
            "/api/v1/brands/acme/styles",
            Some(json!({"style_id": "warm", "name": "Warm", "definition": crate::gateway_configure::style_definition("calm")})),
        )
        .await;
    assert_eq!(style.status, 201, "{}", style.body);

    let figure = png_of(&picture(200, 400, [230, 200, 180]));
    let base = upload(
        &gateway,
        &owner,
        "/api/v1/brands/acme/subjects/mia/images",
        &[("pose", "seated"), ("angle", "three_quarter")],
        ("mia.png", "image/png", &figure),
    )
    .await;
    assert_eq!(base.status, 201, "{}", base.text());
    let sequence = base.json()["stream_sequence"].as_u64().expect("sequence");
    let detail = gateway
        .as_user(&owner, "GET", &format!("/api/v1/brands/acme/subjects/mia?min_sequence={sequence}"), None)
        .await;
    assert_eq!(detail.json()["images"][0]["kind"], "seated/three_quarter", "{}", detail.body);

    let reference = png_of(&picture(300, 300, [40, 40, 40]));
    let revised = upload(
        &gateway,
        &owner,
        "/api/v1/brands/acme/styles/warm/reference-images",
        &[],
        ("ref.png", "image/png", &reference),
    )
    .await;
    assert_eq!(revised.status, 201, "{}", revised.text());
    let body = revised.json();
    assert_eq!(body["version"], 2, "a new style version: {body}");
    let sequence = body["stream_sequence"].as_u64().expect("sequence");
    let style = gateway
        .as_user(&owner, "GET", &format!("/api/v1/brands/acme/styles/warm?min_sequence={sequence}"), None)
        .await
        .json();
    let references = style["definition"]["reference_images"].as_array().expect("references").clone();
    assert!(references.iter().any(|r| r["hash"] == body["image"]["hash"]), "{style}");
}
