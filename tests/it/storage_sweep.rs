//! `gps storage sweep` on a gateway's real log, databases and object store
//! (embedded endpoint, real S3 protocol): an object no event names is deleted
//! once it is older than the grace, and everything an upload stored stays.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::process::Command;

use crate::gateway::TestGateway;
use crate::harness::brand;
use crate::ingest_support::{brand_with_product, picture, png_of, raw_request, stored_objects, upload};

/// Sets every stored file's time two days back, as if stored then.
fn age_objects(gateway: &TestGateway) {
    let old = SystemTime::now() - Duration::from_secs(2 * 86_400);
    for path in stored_objects(&gateway.storage_dir) {
        let file = std::fs::File::options().write(true).open(&path).expect("open");
        file.set_times(std::fs::FileTimes::new().set_modified(old)).expect("set time");
    }
}

async fn sweep(gateway: &TestGateway, dry_run: bool) -> serde_json::Value {
    let storage = gateway.storage_settings();
    let database = crate::audit::database_url(gateway);
    // Async: the embedded object store is served by this test's own runtime,
    // which a blocking wait would stop.
    let mut command = Command::new(env!("CARGO_BIN_EXE_gps"));
    command.args(["storage", "sweep", "--json"]);
    if dry_run {
        command.arg("--dry-run");
    }
    let output = command
        .env("NATS_URL", gateway.nats.server.url())
        .env("DATABASE_URL", &database)
        .env("GPS_COMPUTE_DATABASE_URL", &database)
        .env("GPS_S3_ENDPOINT", &storage.endpoint)
        .env("GPS_S3_BUCKET", &storage.bucket)
        .env("GPS_S3_ACCESS_KEY_ID", &storage.access_key_id)
        .env("GPS_S3_SECRET_ACCESS_KEY", storage.secret_access_key.expose())
        .env("GPS_S3_REGION", &storage.region)
        .env("GPS_S3_PATH_STYLE", if storage.path_style { "true" } else { "false" })
        .output()
        .await
        .expect("run gps storage sweep");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[tokio::test]
async fn a_sweep_deletes_the_objects_no_event_names_and_keeps_every_uploaded_image() {
    let gateway = TestGateway::start().await;
    let owner = brand_with_product(&gateway, "acme", "ana").await;
    let uploaded = upload(
        &gateway,
        &owner,
        "/api/v1/brands/acme/products/p1/images",
        &[("view", "front")],
        ("photo.png", "image/png", &png_of(&picture(64, 48, [20, 90, 160]))),
    )
    .await;
    assert_eq!(uploaded.status, 201, "{}", uploaded.text());
    let url = uploaded.json()["image"]["url"].as_str().expect("url").to_owned();
    // Stored, but its command never landed (refused, or the process died).
    let orphan = gateway
        .state
        .media
        .store()
        .put(&brand(), Bytes::from_static(b"an upload whose event was never appended"), "image/png")
        .await
        .expect("orphan");
    let orphan_file = gateway.storage_dir.join("gps").join(orphan.key.to_string());

    let young = sweep(&gateway, false).await;
    assert_eq!(young["orphans"], serde_json::json!([]), "within the grace nothing goes: {young}");
    assert!(orphan_file.exists());

    age_objects(&gateway);
    let before = stored_objects(&gateway.storage_dir);
    let dry = sweep(&gateway, true).await;
    assert_eq!(dry["orphans"], serde_json::json!([orphan.key.to_string()]), "{dry}");
    assert_eq!(stored_objects(&gateway.storage_dir), before, "a dry run deletes nothing");

    let swept = sweep(&gateway, false).await;
    assert_eq!(swept["orphans"], serde_json::json!([orphan.key.to_string()]), "{swept}");
    assert_eq!(
        swept["referenced"].as_u64(),
        Some(before.len() as u64 - 1),
        "every other object is named: {swept}"
    );
    let after = stored_objects(&gateway.storage_dir);
    let expected: Vec<_> = before.into_iter().filter(|path| *path != orphan_file).collect();
    assert_eq!(after, expected, "only the orphan went");
    let served = raw_request(gateway.port, "GET", &url, &[], b"").await;
    assert_eq!(served.status, 200, "the uploaded image is still served");
}
