//! Live updates over Server-Sent Events: what a brand's members see, and what
//! they do not.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::gateway::{Session, TestGateway, product};

/// Opens the live stream of `brand` and returns the connection after the
/// response head, with whatever body bytes arrived with it.
async fn open_live(
    gateway: &TestGateway,
    session: &Session,
    brand: &str,
) -> (u16, tokio::net::TcpStream, String) {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", gateway.port)).await.expect("connect");
    let request = format!(
        "GET /api/v1/brands/{brand}/live HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {}\r\nAccept: text/event-stream\r\n\r\n",
        session.cookie
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut received = String::new();
    let mut buffer = [0u8; 4096];
    while !received.contains("\r\n\r\n") {
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buffer))
            .await
            .expect("response head within 10 s")
            .expect("read");
        assert!(read > 0, "closed before the head: {received}");
        received.push_str(&String::from_utf8_lossy(&buffer[..read]));
    }
    let status = received.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status");
    let body = received.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default();
    (status, stream, body)
}

/// Reads the stream until `needle` appears or `wait` passes; returns all text read.
async fn read_until(
    stream: &mut tokio::net::TcpStream,
    mut text: String,
    needle: &str,
    wait: Duration,
) -> String {
    let deadline = tokio::time::Instant::now() + wait;
    let mut buffer = [0u8; 4096];
    while !text.contains(needle) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Err(_) => break,
            Ok(Ok(read)) => text.push_str(&String::from_utf8_lossy(&buffer[..read])),
            Ok(Err(error)) => panic!("read failed: {error}"),
        }
    }
    text
}

#[tokio::test]
async fn a_member_sees_the_brands_changes_live_and_nothing_of_other_brands() {
    let gateway = TestGateway::start().await;
    let owner = gateway.brand_with_owner("acme", "ana").await;
    let outsider = gateway.brand_with_owner("other", "oscar").await;

    let (status, mut stream, body) = open_live(&gateway, &owner, "acme").await;
    assert_eq!(status, 200);
    // Changes in another brand must not show up in acme's stream.
    let foreign =
        gateway.as_user(&outsider, "POST", "/api/v1/brands/other/products", Some(product("secret"))).await;
    assert_eq!(foreign.status, 201);
    let created = gateway.as_user(&owner, "POST", "/api/v1/brands/acme/products", Some(product("p1"))).await;
    assert_eq!(created.status, 201);
    let sequence = created.json()["stream_sequence"].as_u64().expect("sequence");

    let text = read_until(&mut stream, body, "product.created", Duration::from_secs(15)).await;
    assert!(text.contains("event: notice"), "{text}");
    assert!(text.contains(&format!("id: {sequence}")), "{text}");
    assert!(text.contains("\"aggregate_id\":\"p1\""), "{text}");
    assert!(!text.contains("secret"), "another brand's change leaked: {text}");

    // The notice's sequence is what a re-read waits for.
    let path = format!("/api/v1/brands/acme/products/p1?min_sequence={sequence}");
    assert_eq!(gateway.as_user(&owner, "GET", &path, None).await.status, 200);
}

#[tokio::test]
async fn the_live_stream_of_another_brand_is_not_found_and_needs_credentials() {
    let gateway = TestGateway::start().await;
    let _owner = gateway.brand_with_owner("acme", "ana").await;
    let outsider = gateway.brand_with_owner("other", "oscar").await;
    let (status, _, _) = open_live(&gateway, &outsider, "acme").await;
    assert_eq!(status, 404);
    let anonymous = gateway.call("GET", "/api/v1/brands/acme/live", &[], None).await;
    assert_eq!(anonymous.status, 401);
}
