//! `gps up` on a fresh installation seeds the demo catalog: the API lists the
//! drawn products, subjects and styles, and their image URLs serve images.

use crate::gps_up::DemoInstallation;
use crate::ingest_support::raw_request;

#[tokio::test]
async fn gps_up_shows_the_demo_catalog_through_the_api_with_working_image_urls() {
    let gps = DemoInstallation::start().await;
    let port = gps.port;
    let field = |name: &str| gps.credential(name);
    let body = serde_json::json!({"email": field("email"), "password": field("password")}).to_string();
    let signed_in = raw_request(
        port,
        "POST",
        "/api/v1/session",
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    )
    .await;
    assert_eq!(signed_in.status, 200, "{}", signed_in.text());
    let cookie = signed_in.header("set-cookie").and_then(|c| c.split(';').next()).expect("cookie").to_owned();
    let auth = [("Cookie", cookie.as_str())];

    // The projections catch up in the background: wait for the whole catalog.
    let mut products = serde_json::Value::Null;
    for _ in 0..120 {
        let listed = raw_request(port, "GET", "/api/v1/brands/demo/products?limit=50", &auth, b"").await;
        products = listed.json();
        if products["items"].as_array().is_some_and(|items| items.len() >= 12) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    let items = products["items"].as_array().expect("a page of products");
    assert_eq!(items.len(), 12, "4 garments in 3 colours: {products}");
    assert!(items.iter().all(|p| p["name"].as_str().is_some_and(|n| n.ends_with("(demo)"))));

    let detail =
        raw_request(port, "GET", "/api/v1/brands/demo/products/demo-dress-navy", &auth, b"").await.json();
    let url = detail["images"][0]["url"].as_str().expect("a signed image url").to_owned();
    let image = raw_request(port, "GET", &url, &[], b"").await;
    assert_eq!(image.status, 200, "{}", image.text());
    assert_eq!(image.header("content-type"), Some("image/png"));
    let decoded = image::load_from_memory(&image.body).expect("an image");
    assert_eq!((decoded.width(), decoded.height()), (600, 800));

    let subject = raw_request(port, "GET", "/api/v1/brands/demo/subjects/demo-ava", &auth, b"").await.json();
    assert_eq!(subject["images"].as_array().map(Vec::len), Some(2), "{subject}");
    let styles = raw_request(port, "GET", "/api/v1/brands/demo/styles", &auth, b"").await.json();
    assert_eq!(styles["items"].as_array().map(Vec::len), Some(2), "{styles}");
    gps.stop().await;
}
