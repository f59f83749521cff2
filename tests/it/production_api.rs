//! The production loop through the API of `gps up`, as a brand's team would
//! drive it: a shooting of 3 looks × 2 shot types × 4 variants launched over
//! HTTP ends with 24 predictions in the review read model, each with its
//! provenance and quality figures and an image served from a signed `/cdn/`
//! URL; an approved one is animated into a clip by the `video` workflow; the
//! usage report counts the work per month and shooting.

use std::time::Duration;

use image::AnimationDecoder;
use serde_json::{Value, json};

use crate::gps_up::DemoInstallation;
use crate::ingest_support::{RawResponse, raw_request};

/// A signed-in member of the demo brand on a running `gps up`.
struct Member {
    port: u16,
    cookie: String,
    csrf: String,
}

impl Member {
    async fn sign_in(gps: &DemoInstallation) -> Self {
        let port = gps.port;
        let body =
            json!({"email": gps.credential("email"), "password": gps.credential("password")}).to_string();
        let headers = [("Content-Type", "application/json")];
        let signed_in = raw_request(port, "POST", "/api/v1/session", &headers, body.as_bytes()).await;
        assert_eq!(signed_in.status, 200, "{}", signed_in.text());
        let cookie =
            signed_in.header("set-cookie").and_then(|c| c.split(';').next()).expect("cookie").to_owned();
        let csrf = signed_in.json()["csrf_token"].as_str().expect("csrf").to_owned();
        Member { port, cookie, csrf }
    }

    async fn send(&self, method: &str, path: &str, body: Option<Value>) -> RawResponse {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let headers = [
            ("Cookie", self.cookie.as_str()),
            ("x-csrf-token", self.csrf.as_str()),
            ("Content-Type", "application/json"),
        ];
        raw_request(self.port, method, path, &headers, body.as_bytes()).await
    }

    async fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let response = self.send(method, path, body).await;
        assert!(
            (200..300).contains(&response.status),
            "{method} {path}: {} {}",
            response.status,
            response.text()
        );
        response.json()
    }

    /// Polls `path` until `done` holds for its JSON (up to `seconds`).
    async fn until(&self, path: &str, seconds: u64, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
        loop {
            let value = self.ok("GET", path, None).await;
            if done(&value) {
                return value;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{path} did not get there in {seconds} s: {value}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

fn items(page: &Value) -> &Vec<Value> {
    page["items"].as_array().expect("a page")
}

#[tokio::test]
async fn a_shooting_launched_over_http_yields_24_predictions_with_provenance_served_from_the_cdn_and_a_clip()
{
    let gps = DemoInstallation::start().await;
    let member = Member::sign_in(&gps).await;
    member.until("/api/v1/brands/demo/products?limit=50", 60, |page| items(page).len() >= 12).await;
    member.until("/api/v1/brands/demo/styles", 60, |page| items(page).len() >= 2).await;

    let base = "/api/v1/brands/demo/shootings";
    let defaults = json!({
        "subject": "demo-ava",
        "style": "demo-studio-warm",
        "shot_types": ["front", "back"],
        "output": {"aspect_ratio": "4:5", "long_edge_px": 512, "format": "jpeg"}
    });
    member
        .ok("POST", base, Some(json!({"shooting_id": "e2e", "name": "End to end", "defaults": defaults})))
        .await;
    let rules =
        json!({"rules": {"quality_gates": {"require_automatic_checks": true}, "variants_per_shot": 4}});
    member.ok("PUT", &format!("{base}/e2e/rules"), Some(rules)).await;
    let mut last = Value::Null;
    for (index, product) in
        ["demo-dress-navy", "demo-top-terracotta", "demo-trousers-sage"].iter().enumerate()
    {
        let look = json!({"look_id": format!("look-{index}"), "name": format!("Look {index}"), "products": [product]});
        last = member.ok("POST", &format!("{base}/e2e/looks"), Some(look)).await;
    }
    let launch = json!({"min_sequence": last["stream_sequence"]});
    member.ok("POST", &format!("{base}/e2e/launch"), Some(launch)).await;

    let generations = member
        .until("/api/v1/brands/demo/generations?shooting=e2e&limit=50", 300, |page| {
            items(page).len() == 6
                && items(page).iter().all(|g| g["status"] != "requested" && g["status"] != "running")
        })
        .await;
    for generation in items(&generations) {
        assert_eq!(generation["status"], "completed", "{generation}");
    }
    let page =
        member.until("/api/v1/brands/demo/predictions?limit=50", 120, |page| items(page).len() >= 24).await;
    let predictions = items(&page);
    assert_eq!(predictions.len(), 24, "3 looks × 2 shot types × 4 variants");
    let mut hashes = std::collections::BTreeSet::new();
    for prediction in predictions {
        let provenance = &prediction["provenance"];
        assert_eq!(provenance["workflow"]["name"], "on-model", "{prediction}");
        assert_eq!(provenance["provider"], "local");
        assert!(
            provenance["model"].as_str().is_some_and(|m| m.starts_with("image-ops")),
            "honest: {provenance}"
        );
        assert!(provenance["input_hashes"].as_array().is_some_and(|h| !h.is_empty()), "{provenance}");
        assert!(provenance["prompt"].as_str().is_some_and(|p| !p.is_empty()));
        assert!(prediction["quality"]["checks"].as_array().is_some_and(|c| !c.is_empty()), "{prediction}");
        assert_eq!(prediction["quality_passed"], prediction["quality"]["passed"]);
        hashes.insert(prediction["content_hash"].as_str().expect("hash").to_owned());
        let url = prediction["url"].as_str().expect("a signed CDN url");
        assert!(url.starts_with("/cdn/"), "{url}");
        let image = raw_request(gps.port, "GET", url, &[], b"").await;
        assert_eq!(image.header("content-type"), Some("image/jpeg"));
        assert!(image.header("cache-control").is_some_and(|c| c.contains("immutable")));
        let decoded = image::load_from_memory(&image.body).expect("an image");
        assert_eq!((decoded.width(), decoded.height()), (410, 512));
    }
    assert_eq!(hashes.len(), 24, "every variant is a different image");
    let flagged = member.ok("GET", "/api/v1/brands/demo/predictions?limit=50&quality=flagged", None).await;
    let passed = member.ok("GET", "/api/v1/brands/demo/predictions?limit=50&quality=passed", None).await;
    assert_eq!(items(&flagged).len() + items(&passed).len(), 24, "every prediction has a verdict");
    let bad_filter = member.send("GET", "/api/v1/brands/demo/predictions?quality=maybe", None).await;
    assert_eq!(bad_filter.status, 400, "{}", bad_filter.text());

    // An unreviewed prediction is not animated; an approved one is.
    let chosen = predictions[0]["prediction_id"].as_str().expect("id").to_owned();
    let early = member.send("POST", &format!("/api/v1/brands/demo/predictions/{chosen}/video"), None).await;
    assert_eq!(early.status, 409, "{}", early.text());
    assert!(early.text().contains("approve it first"), "{}", early.text());
    member.ok("POST", &format!("/api/v1/brands/demo/predictions/{chosen}/approve"), None).await;
    let requested = member.ok("POST", &format!("/api/v1/brands/demo/predictions/{chosen}/video"), None).await;
    let clip_generation = requested["id"].as_str().expect("generation id").to_owned();
    let again = member.ok("POST", &format!("/api/v1/brands/demo/predictions/{chosen}/video"), None).await;
    assert_eq!(again["id"], clip_generation.as_str(), "asking twice requests one clip");
    // Read-your-writes: the first read waits for the request to be visible.
    let visible = requested["stream_sequence"].as_u64().expect("stream sequence");
    let generation = member
        .until(
            &format!("/api/v1/brands/demo/generations/{clip_generation}?min_sequence={visible}"),
            120,
            |g| g["status"] == "completed" || g["status"] == "failed",
        )
        .await;
    assert_eq!(generation["status"], "completed", "{generation}");
    let clip_id = generation["prediction_ids"][0].as_str().expect("a clip").to_owned();
    let clip = member
        .until(&format!("/api/v1/brands/demo/predictions/{clip_id}"), 60, |p| p["url"].is_string())
        .await;
    assert_eq!(clip["provenance"]["workflow"]["name"], "video");
    let served = raw_request(gps.port, "GET", clip["url"].as_str().expect("url"), &[], b"").await;
    assert_eq!(served.status, 200);
    assert_eq!(served.header("content-type"), Some("image/webp"));
    let decoder =
        image::codecs::webp::WebPDecoder::new(std::io::Cursor::new(served.body.clone())).expect("webp");
    let frames = decoder.into_frames().collect_frames().expect("frames");
    assert!(frames.len() > 1, "an animation, not a still");

    // The usage report has the work of this month under this shooting.
    let usage = member.ok("GET", "/api/v1/brands/demo/usage", None).await;
    let shooting = usage["shootings"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["shooting_id"] == "e2e"))
        .unwrap_or_else(|| panic!("the shooting is in the report: {usage}"));
    assert_eq!(shooting["name"], "End to end");
    assert!(shooting["steps"].as_i64().is_some_and(|s| s >= 24), "{usage}");
    assert_eq!(usage["months"].as_array().map(Vec::len), Some(1), "{usage}");
    let bad_period = member.send("GET", "/api/v1/brands/demo/usage?from=2026-13", None).await;
    assert_eq!(bad_period.status, 400, "{}", bad_period.text());
    assert!(bad_period.text().contains("YYYY-MM"));

    gps.stop().await;
}
