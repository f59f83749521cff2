//! Catalog imports end to end: real HTTP (the gateway, a local image server,
//! the `gps` binary as a process), the real S3 protocol, real NATS and
//! Postgres. A 500-row CSV with 5 bad rows creates 495 products, reports
//! exactly those 5, and importing it again writes no product event; a JSON
//! Lines import fetches image URLs, and every URL aimed at an internal
//! address fails its row without leaving an object or an event; whole-file
//! problems (a ZIP bomb, `../` entries, a PDF, a missing `sku` column) are
//! refused up front and leave nothing behind.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use futures::StreamExt;
use serde_json::json;

use crate::gateway::{Session, TestGateway};
use crate::ingest_support::{
    RawResponse, jpeg_of, last_sequence, picture, png_of, raw_request, stored_objects,
};

const IMPORTS: &str = "/api/v1/brands/acme/imports";

/// A ZIP of `(name, bytes)` entries, deflated.
fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for (name, data) in entries {
        writer.start_file(*name, options).expect("start");
        writer.write_all(data).expect("write");
    }
    writer.finish().expect("finish").into_inner()
}

/// A multipart body with the catalog and, optionally, the images ZIP.
fn import_form(catalog: (&str, &[u8]), images: Option<&[u8]>) -> (String, Vec<u8>) {
    let boundary = "gps-import-test-3f9a";
    let mut body = Vec::new();
    let mut part = |name: &str, file_name: &str, content_type: &str, bytes: &[u8]| {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{file_name}\"\r\n\
                 Content-Type: {content_type}\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    };
    part("catalog", catalog.0, "text/plain", catalog.1);
    if let Some(images) = images {
        part("images", "images.zip", "application/zip", images);
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

async fn start_import(
    gateway: &TestGateway,
    session: &Session,
    catalog: (&str, &[u8]),
    images: Option<&[u8]>,
) -> RawResponse {
    let (content_type, body) = import_form(catalog, images);
    let mut headers = session.headers();
    headers.push(("Content-Type", content_type.as_str()));
    raw_request(gateway.port, "POST", IMPORTS, &headers, &body).await
}

/// Follows an import's status until it is no longer running.
async fn finished(gateway: &TestGateway, session: &Session, accepted: &RawResponse) -> serde_json::Value {
    assert_eq!(accepted.status, 202, "{}", accepted.text());
    let location = accepted.header("location").expect("a Location").to_owned();
    assert_eq!(accepted.json()["status_url"], location.as_str());
    let sequence = accepted.json()["stream_sequence"].as_u64().expect("sequence");
    for _ in 0..600 {
        let path = format!("{location}?min_sequence={sequence}");
        let status = raw_request(gateway.port, "GET", &path, &session.headers(), b"").await;
        assert_eq!(status.status, 200, "{}", status.text());
        let view = status.json();
        if view["status"] != "running" {
            return view;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("the import did not finish within two minutes");
}

/// The error report as (row, sku, column, message) lines.
async fn error_report(
    gateway: &TestGateway,
    session: &Session,
    view: &serde_json::Value,
) -> Vec<Vec<String>> {
    let url = view["errors_url"].as_str().expect("errors_url");
    let report = raw_request(gateway.port, "GET", url, &session.headers(), b"").await;
    assert_eq!(report.status, 200, "{}", report.text());
    assert_eq!(report.header("content-type"), Some("text/csv; charset=utf-8"));
    let text = report.text();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("row,sku,column,message"));
    lines
        .map(|line| {
            // Messages may be quoted (they hold commas); row, sku and column do not here.
            let mut parts = line.splitn(4, ',');
            let mut next = || parts.next().unwrap_or_default().to_owned();
            let (row, sku, column) = (next(), next(), next());
            let raw = next();
            let message = match raw.strip_prefix('"').and_then(|m| m.strip_suffix('"')) {
                Some(quoted) => quoted.replace("\"\"", "\""),
                None => raw,
            };
            vec![row, sku, column, message]
        })
        .collect()
}

/// Product events of the brand in the log (read through the activity read
/// model once it has caught up with the stream).
async fn product_events(gateway: &TestGateway) -> i64 {
    let sequence = last_sequence(gateway).await;
    gps_projections::queries::wait_for_sequence(
        &gateway.state.db,
        Some("activity"),
        sequence,
        Duration::from_secs(30),
    )
    .await
    .expect("the activity read model catches up");
    sqlx::query_scalar(
        "SELECT count(*) FROM activity.activity WHERE brand = 'acme' AND aggregate_type = 'product'",
    )
    .fetch_one(&gateway.state.db)
    .await
    .expect("count")
}

async fn product_count(gateway: &TestGateway) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM catalog.products WHERE brand = 'acme'")
        .fetch_one(&gateway.state.db)
        .await
        .expect("count")
}

#[tokio::test]
async fn a_500_row_csv_with_5_bad_rows_creates_495_products_reports_those_5_and_reimporting_writes_nothing() {
    let gateway = TestGateway::start().await;
    let owner = gateway.brand_with_owner("acme", "ana").await;
    let front = png_of(&picture(64, 80, [200, 60, 60]));
    let back = jpeg_of(&picture(64, 80, [40, 60, 200]));
    let images = zip_of(&[("dr-0/front.png", &front), ("dr-0/back.jpg", &back)]);

    let mut csv = String::from("sku,name,category,attributes,images\n");
    for i in 0..500 {
        // Spreadsheet row = i + 2 (the header is row 1).
        let line = match i {
            0 => {
                "DR-0,\"Linen dress, black\",dresses,colour=black; size=38,dr-0/front.png|back=dr-0/back.jpg"
                    .to_owned()
            }
            41 => "DR-41,,dresses,,".to_owned(),
            99 => "DR-99,Wrap dress,Dresses & co,,".to_owned(),
            150 => "DR 150,Wide trousers,trousers,,".to_owned(),
            299 => "DR-7,Repeated,tops,,".to_owned(),
            420 => "DR-420,Tote,bags,,dr-420/missing.png".to_owned(),
            _ => format!("DR-{i},Product {i},tops,colour=sage,"),
        };
        csv.push_str(&line);
        csv.push('\n');
    }

    let accepted = start_import(&gateway, &owner, ("spring.csv", csv.as_bytes()), Some(&images)).await;
    assert_eq!(accepted.json()["total_rows"], 500);
    assert_eq!(accepted.json()["format"], "csv");
    let view = finished(&gateway, &owner, &accepted).await;
    assert_eq!(view["status"], "completed", "{view}");
    assert_eq!((view["created"].as_i64(), view["failed"].as_i64()), (Some(495), Some(5)), "{view}");
    assert_eq!(view["through_row"], 500);
    assert_eq!(product_count(&gateway).await, 495);

    let report = error_report(&gateway, &owner, &view).await;
    let rows: Vec<(&str, &str, &str)> =
        report.iter().map(|line| (line[0].as_str(), line[1].as_str(), line[2].as_str())).collect();
    assert_eq!(
        rows,
        [
            ("43", "DR-41", "name"),
            ("101", "DR-99", "category"),
            ("152", "DR 150", "sku"),
            ("301", "DR-7", "sku"),
            ("422", "DR-420", "images"),
        ],
        "{report:?}"
    );
    assert!(report[0][3].contains("name is empty"), "{}", report[0][3]);
    assert!(report[1][3].contains("lowercase"), "{}", report[1][3]);
    assert!(report[2][3].contains("a SKU is ASCII letters"), "{}", report[2][3]);
    assert!(report[3][3].contains("already in row 9"), "{}", report[3][3]);
    assert!(report[4][3].contains("no file \"dr-420/missing.png\""), "{}", report[4][3]);

    // The first row's product carries both images, views as written.
    let dr0 = sqlx::query_scalar::<_, String>(
        "SELECT product_id FROM catalog.products WHERE brand = 'acme' AND sku = 'DR-0'",
    )
    .fetch_one(&gateway.state.db)
    .await
    .expect("DR-0 exists");
    let product = raw_request(
        gateway.port,
        "GET",
        &format!("/api/v1/brands/acme/products/{dr0}"),
        &owner.headers(),
        b"",
    )
    .await;
    let product = product.json();
    assert_eq!(product["name"], "Linen dress, black");
    assert_eq!(product["attributes"], json!({"colour": "black", "size": "38"}));
    let views: Vec<&str> =
        product["images"].as_array().expect("images").iter().filter_map(|i| i["kind"].as_str()).collect();
    assert_eq!(views, ["front", "back"]);

    // The same file again: nothing new, not one product event.
    let events_before = product_events(&gateway).await;
    let objects_before = stored_objects(&gateway.storage_dir);
    let again = start_import(&gateway, &owner, ("spring.csv", csv.as_bytes()), Some(&images)).await;
    let view = finished(&gateway, &owner, &again).await;
    assert_eq!(view["status"], "completed", "{view}");
    assert_eq!(
        (
            view["created"].as_i64(),
            view["updated"].as_i64(),
            view["unchanged"].as_i64(),
            view["failed"].as_i64()
        ),
        (Some(0), Some(0), Some(495), Some(5)),
        "{view}"
    );
    assert_eq!(product_count(&gateway).await, 495);
    assert_eq!(product_events(&gateway).await, events_before, "re-importing wrote product events");
    assert_eq!(stored_objects(&gateway.storage_dir), objects_before, "re-importing stored new objects");

    // Both imports are listed, newest first.
    let listed = raw_request(gateway.port, "GET", IMPORTS, &owner.headers(), b"").await.json();
    let ids: Vec<&str> =
        listed["items"].as_array().expect("items").iter().filter_map(|i| i["import_id"].as_str()).collect();
    assert_eq!(
        ids,
        [again.json()["import_id"].as_str().expect("id"), accepted.json()["import_id"].as_str().expect("id")]
    );

    // A changed row updates its product (by SKU), and only that row records.
    let changed = csv.replacen("DR-3,Product 3,tops", "DR-3,Product 3 renamed,tops", 1);
    let third = start_import(&gateway, &owner, ("spring.csv", changed.as_bytes()), Some(&images)).await;
    let view = finished(&gateway, &owner, &third).await;
    assert_eq!((view["updated"].as_i64(), view["created"].as_i64()), (Some(1), Some(0)), "{view}");
    assert_eq!(product_events(&gateway).await, events_before + 1);
}

/// A local image server: `/front.png`, `/back.jpg`, `/hop` (a redirect to a
/// loopback address that is not allowed), counting the requests it serves.
async fn image_server(
    front: Vec<u8>,
    back: Vec<u8>,
) -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;
    let served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = served.clone();
    let app = axum::Router::new()
        .route(
            "/front.png",
            axum::routing::get(move || async move { ([(header::CONTENT_TYPE, "image/png")], front) }),
        )
        .route(
            "/back.jpg",
            axum::routing::get(move || async move { ([(header::CONTENT_TYPE, "image/jpeg")], back) }),
        )
        .route(
            "/hop",
            axum::routing::get(|| async {
                (StatusCode::FOUND, [(header::LOCATION, "http://127.0.0.1:9/front.png")]).into_response()
            }),
        )
        .layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                let counter = counter.clone();
                async move {
                    counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    next.run(request).await
                }
            },
        ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (address, served)
}

#[tokio::test]
async fn a_json_lines_import_fetches_image_urls_and_refuses_every_internal_address_per_row() {
    let front = png_of(&picture(72, 96, [30, 150, 90]));
    let back = jpeg_of(&picture(72, 96, [150, 30, 90]));
    let (server, served) = image_server(front.clone(), back.clone()).await;
    // The image server runs on loopback: exactly its address is allowed.
    let gateway = TestGateway::start_configured(|media| media.imports.fetch_allow = vec![server]).await;
    let owner = gateway.brand_with_owner("acme", "ana").await;
    let mut live = gateway.state.log.client().subscribe("gps.live.acme").await.expect("live subscription");

    let base = format!("http://{server}");
    let mut lines = vec![json!({
        "sku": "JK-1", "name": "Field jacket", "category": "outerwear",
        "attributes": {"colour": "olive", "lined": true},
        "images": [format!("{base}/front.png"), {"source": format!("{base}/back.jpg"), "view": "back"}],
    })];
    let refused = [
        ("loopback", "http://127.0.0.1:9/front.png".to_owned(), "loopback"),
        ("private", "http://10.0.0.1/front.png".to_owned(), "private"),
        ("metadata", "http://169.254.169.254/latest/meta-data/".to_owned(), "link-local"),
        ("mapped", "http://[::ffff:127.0.0.1]/front.png".to_owned(), "IPv4-mapped"),
        ("decimal", "http://2130706433/front.png".to_owned(), "loopback"),
        ("redirect", format!("{base}/hop"), "loopback"),
        ("scheme", "file:///etc/passwd".to_owned(), "only http and https"),
    ];
    for (sku, url, _) in &refused {
        lines.push(
            json!({"sku": format!("BAD-{sku}"), "name": "Refused", "category": "tops", "images": [url]}),
        );
    }
    let jsonl: String = lines.iter().map(|line| format!("{line}\n")).collect();

    let objects_before = stored_objects(&gateway.storage_dir);
    let accepted = start_import(&gateway, &owner, ("drop.jsonl", jsonl.as_bytes()), None).await;
    assert_eq!(accepted.json()["format"], "json_lines");
    let view = finished(&gateway, &owner, &accepted).await;
    assert_eq!((view["created"].as_i64(), view["failed"].as_i64()), (Some(1), Some(7)), "{view}");

    let report = error_report(&gateway, &owner, &view).await;
    assert_eq!(report.len(), refused.len(), "{report:?}");
    for (line, (sku, _, kind)) in report.iter().zip(&refused) {
        assert_eq!(line[1], format!("BAD-{sku}"));
        assert_eq!(line[2], "images");
        assert!(line[3].contains(kind), "{sku}: {}", line[3]);
    }
    // Refused rows left no product; the only fetches that reached the server
    // were the two images and the redirect (never its target).
    assert_eq!(product_count(&gateway).await, 1);
    assert_eq!(served.load(std::sync::atomic::Ordering::SeqCst), 3);

    // Objects: exactly the catalog file and the good row's originals and working copies.
    let product_id =
        sqlx::query_scalar::<_, String>("SELECT product_id FROM catalog.products WHERE sku = 'JK-1'")
            .fetch_one(&gateway.state.db)
            .await
            .expect("JK-1");
    let product = raw_request(
        gateway.port,
        "GET",
        &format!("/api/v1/brands/acme/products/{product_id}"),
        &owner.headers(),
        b"",
    )
    .await
    .json();
    assert_eq!(product["attributes"], json!({"colour": "olive", "lined": "true"}));
    let mut expected: Vec<String> = vec![gps_storage::content_hash(jsonl.as_bytes()).as_str().to_owned()];
    for image in product["images"].as_array().expect("images") {
        expected.push(image["content_hash"].as_str().expect("hash").to_owned());
        expected.push(image["analysis"]["original"]["hash"].as_str().expect("original").to_owned());
    }
    let new_objects: Vec<String> = stored_objects(&gateway.storage_dir)
        .into_iter()
        .filter(|path| !objects_before.contains(path))
        .map(|path| format!("sha256:{}", path.file_name().and_then(|n| n.to_str()).expect("name")))
        .collect();
    expected.sort();
    expected.dedup();
    let mut found = new_objects.clone();
    found.sort();
    assert_eq!(found, expected);

    // Progress reached the brand's live stream.
    let mut types = Vec::new();
    while let Ok(Some(message)) = tokio::time::timeout(Duration::from_secs(2), live.next()).await {
        let notice: serde_json::Value = serde_json::from_slice(&message.payload).expect("notice");
        if notice["aggregate_type"] == "import" {
            types.push(notice["event_type"].as_str().unwrap_or_default().to_owned());
        }
    }
    assert!(types.contains(&"import.progressed".to_owned()), "{types:?}");
    assert!(types.contains(&"import.completed".to_owned()), "{types:?}");
}

/// A whole-file problem: what it is, the catalog (name, bytes), the images
/// ZIP, the status expected and a phrase the message must hold.
struct Refusal(&'static str, (&'static str, Vec<u8>), Option<Vec<u8>>, u16, &'static str);

#[tokio::test]
async fn whole_file_problems_are_refused_up_front_and_leave_no_object_and_no_event() {
    let gateway = TestGateway::start_configured(|media| {
        media.imports.archive.max_entry_bytes = 1024 * 1024;
        media.imports.max_body_bytes = 4 * 1024 * 1024;
    })
    .await;
    let owner = gateway.brand_with_owner("acme", "ana").await;
    let catalog = b"sku,name,category,images\nDR-1,Dress,dresses,a.png\n";
    let image = png_of(&picture(32, 32, [10, 20, 30]));
    let bomb = zip_of(&[("a.png", &image), ("zeros.png", &vec![0u8; 16 * 1024 * 1024])]);
    assert!(bomb.len() < 100 * 1024, "the bomb is small: {} bytes", bomb.len());
    let escaping = zip_of(&[("a.png", &image), ("../../etc/cron.d/evil", b"* * * * * root sh")]);
    let pdf = b"%PDF-1.4\n%\xE2\xE3\xCF\xD3\n1 0 obj << /Type /Catalog >> endobj\n".to_vec();
    let oversize = vec![b'x'; 5 * 1024 * 1024];
    let cases: Vec<Refusal> = vec![
        Refusal("zip bomb", ("c.csv", catalog.to_vec()), Some(bomb), 422, "ZIP bomb"),
        Refusal("../ entry", ("c.csv", catalog.to_vec()), Some(escaping), 422, "outside the archive"),
        Refusal("not a zip", ("c.csv", catalog.to_vec()), Some(pdf.clone()), 415, "not a readable ZIP"),
        Refusal("pdf catalog", ("c.csv", pdf), None, 415, "PDF"),
        Refusal(
            "no sku column",
            ("c.csv", b"name,category\nDress,dresses\n".to_vec()),
            None,
            400,
            "no `sku` column",
        ),
        Refusal(
            "unknown column",
            ("c.csv", b"sku,name,category,price\nA,B,c,3\n".to_vec()),
            None,
            400,
            "\"price\"",
        ),
        Refusal("empty", ("c.csv", b"sku,name,category\n".to_vec()), None, 400, "no product rows"),
        Refusal("json array", ("c.json", b"[{\"sku\": \"A\"}]".to_vec()), None, 400, "JSON array"),
        Refusal("oversize body", ("c.csv", oversize), None, 413, "larger than"),
    ];
    let objects = stored_objects(&gateway.storage_dir);
    let sequence = last_sequence(&gateway).await;
    for Refusal(what, catalog, images, status, phrase) in cases {
        let refused = start_import(&gateway, &owner, (catalog.0, &catalog.1), images.as_deref()).await;
        assert_eq!(refused.status, status, "{what}: {}", refused.text());
        assert_eq!(refused.header("content-type"), Some("application/problem+json"), "{what}");
        let detail = refused.json()["detail"].as_str().unwrap_or_default().to_owned();
        assert!(detail.contains(phrase), "{what}: {detail}");
        assert_eq!(stored_objects(&gateway.storage_dir), objects, "{what} stored an object");
        assert_eq!(last_sequence(&gateway).await, sequence, "{what} wrote an event");
    }
    // An import that does not exist is a 404, like any unknown resource.
    let missing =
        raw_request(gateway.port, "GET", &format!("{IMPORTS}/imp-ghost"), &owner.headers(), b"").await;
    assert_eq!(missing.status, 404);
}

#[tokio::test]
async fn gps_import_runs_as_a_process_shows_progress_and_exits_2_with_the_report_when_rows_fail() {
    let gateway = TestGateway::start().await;
    let owner = gateway.brand_with_owner("acme", "ana").await;
    let key = raw_request(
        gateway.port,
        "POST",
        "/api/v1/brands/acme/api-clients",
        &[owner.headers(), vec![("Content-Type", "application/json")]].concat(),
        json!({"api_client_id": "pim", "name": "PIM", "role": "producer"}).to_string().as_bytes(),
    )
    .await;
    assert_eq!(key.status, 201, "{}", key.text());
    let api_key = key.json()["api_key"].as_str().expect("key").to_owned();

    let folder = tempfile::tempdir().expect("tempdir");
    let catalog = folder.path().join("autumn.csv");
    let zip = folder.path().join("autumn.zip");
    std::fs::write(
        &catalog,
        "sku,name,category,images\nAW-1,Coat,outerwear,coat.png\nAW-2,Scarf,Accessories!,\nAW-3,Hat,hats,\n",
    )
    .expect("write catalog");
    std::fs::write(&zip, zip_of(&[("coat.png", &png_of(&picture(40, 60, [90, 90, 20])))]))
        .expect("write zip");

    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_gps"))
        .args([
            "import",
            catalog.to_str().expect("path"),
            "--images",
            zip.to_str().expect("path"),
            "--brand",
            "acme",
        ])
        .args(["--gateway", &format!("http://127.0.0.1:{}", gateway.port)])
        .env("GPS_API_KEY", &api_key)
        .env_remove("GPS_CONFIG")
        .output()
        .await
        .expect("gps import runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(2), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stderr.contains("3/3 rows, 1 failed"), "plain progress lines off a terminal: {stderr}");
    assert!(stdout.contains("2 created") && stdout.contains("1 failed of 3 rows"), "{stdout}");
    let report_path = folder.path().join("autumn.csv.errors.csv");
    assert!(stderr.contains(report_path.to_str().expect("path")), "{stderr}");
    let report = std::fs::read_to_string(&report_path).expect("the report is saved");
    assert!(report.starts_with("row,sku,column,message"), "{report}");
    assert!(report.contains("3,AW-2,category,"), "{report}");
    assert_eq!(product_count(&gateway).await, 2);

    // Without credentials it says what to give, and exits 1.
    let refused = tokio::process::Command::new(env!("CARGO_BIN_EXE_gps"))
        .args(["import", catalog.to_str().expect("path"), "--brand", "acme"])
        .args(["--gateway", &format!("http://127.0.0.1:{}", gateway.port)])
        .env_remove("GPS_API_KEY")
        .env_remove("GPS_SESSION")
        .output()
        .await
        .expect("gps import runs");
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("no credentials"));
}

#[tokio::test]
async fn an_import_left_running_by_a_stopped_gateway_is_resumed_from_its_stored_file_once() {
    let gateway = TestGateway::start().await;
    let owner = gateway.brand_with_owner("acme", "ana").await;
    let csv = b"sku,name,category\nRS-1,Shirt,tops\nRS-2,Skirt,skirts\nRS-3,,skirts\n".to_vec();
    start_without_runner(&gateway, "imp-resume", "resume-start", None, &csv).await;

    assert_eq!(gps_gateway::imports::resume_unfinished(&gateway.state).await.expect("resume"), 1);
    let view = status_when_settled(&gateway, &owner, "imp-resume").await;
    assert_eq!(view["status"], "completed", "{view}");
    assert_eq!((view["created"].as_i64(), view["failed"].as_i64()), (Some(2), Some(1)), "{view}");
    assert_eq!(product_count(&gateway).await, 2);
    // Once finished, nothing is left to resume.
    let sequence = last_sequence(&gateway).await;
    gps_projections::queries::wait_for_sequence(
        &gateway.state.db,
        Some("catalog"),
        sequence,
        Duration::from_secs(30),
    )
    .await
    .expect("projected");
    assert_eq!(gps_gateway::imports::resume_unfinished(&gateway.state).await.expect("resume"), 0);
}

/// What a gateway leaves when it dies right after appending an import's start
/// (or when the start's acknowledgement is lost): the stored catalog and the
/// start event under `import_id`, and no runner.
async fn start_without_runner(
    gateway: &TestGateway,
    import_id: &str,
    command_id: &str,
    file_name: Option<&str>,
    csv: &[u8],
) -> u64 {
    use gps_domain::import::{CatalogFormat, Import, ImportCommand};
    let brand = gps_domain::ids::BrandId::parse("acme").expect("brand");
    let stored = gateway
        .state
        .media
        .store()
        .put(&brand, bytes::Bytes::from(csv.to_vec()), "text/csv")
        .await
        .expect("stored");
    let rows = csv.iter().filter(|byte| **byte == b'\n').count() - 1;
    let start = ImportCommand::StartImport {
        import_id: gps_domain::ids::ImportId::parse(import_id).expect("id"),
        brand_id: brand.clone(),
        format: CatalogFormat::Csv,
        file_name: file_name.map(|name| gps_domain::values::Name::parse(name).expect("name")),
        catalog: gps_domain::values::AssetRef {
            hash: stored.hash,
            media_type: "text/csv".into(),
            bytes: stored.bytes,
            width: None,
            height: None,
        },
        images_archive: None,
        total_rows: u32::try_from(rows).expect("rows"),
    };
    let address = gps_commands::CommandHandler::address::<Import>(&brand, import_id).expect("address");
    let actor = gps_domain::wire::Actor::System("test".into());
    let started = gateway
        .state
        .commands
        .execute::<Import>(&address, &gps_nats::CommandMeta::new(command_id, actor), &start)
        .await
        .expect("started");
    gps_projections::queries::wait_for_sequence(
        &gateway.state.db,
        Some("catalog"),
        started.stream_sequence,
        Duration::from_secs(30),
    )
    .await
    .expect("projected");
    started.stream_sequence
}

/// Polls an import's status while it is running (at most a minute).
async fn status_when_settled(gateway: &TestGateway, session: &Session, import_id: &str) -> serde_json::Value {
    let mut view = serde_json::Value::Null;
    for _ in 0..300 {
        view = raw_request(gateway.port, "GET", &format!("{IMPORTS}/{import_id}"), &session.headers(), b"")
            .await
            .json();
        if view["status"] != "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    view
}

#[tokio::test]
async fn a_start_whose_answer_was_lost_is_run_when_the_client_retries_with_the_same_key() {
    let gateway = TestGateway::start().await;
    let owner = gateway.brand_with_owner("acme", "ana").await;
    let me = raw_request(gateway.port, "GET", "/api/v1/me", &owner.headers(), b"").await.json();
    let user_id = me["id"].as_str().expect("user id").to_owned();
    let key = "retry-after-timeout-1";
    // The command id and import id the gateway derives for this caller's key.
    let command_id = format!("u:{user_id}:{key}");
    let brand = gps_domain::ids::BrandId::parse("acme").expect("brand");
    let import_id = gps_gateway::imports::import_id_of(&brand, &command_id).to_string();
    let csv = b"sku,name,category\nLA-1,Shirt,tops\nLA-2,Skirt,skirts\n".to_vec();
    start_without_runner(&gateway, &import_id, &command_id, Some("lost.csv"), &csv).await;

    // The client saw a timeout and retries with the same key and file.
    let (content_type, body) = import_form(("lost.csv", &csv), None);
    let mut headers = owner.headers();
    headers.push(("Content-Type", content_type.as_str()));
    headers.push(("Idempotency-Key", key));
    let retried = raw_request(gateway.port, "POST", IMPORTS, &headers, &body).await;
    assert_eq!(retried.status, 202, "{}", retried.text());
    assert_eq!(retried.json()["import_id"], import_id.as_str(), "the retry addresses the same import");
    assert_eq!(retried.json()["already_applied"], true);

    let view = status_when_settled(&gateway, &owner, &import_id).await;
    assert_eq!(view["status"], "completed", "the retried start has a runner: {view}");
    assert_eq!(view["created"].as_i64(), Some(2), "{view}");
    assert_eq!(product_count(&gateway).await, 2);
}

#[tokio::test]
async fn an_import_without_a_runner_is_found_and_finished_once_by_the_periodic_resumers() {
    let gateway = TestGateway::start().await;
    let owner = gateway.brand_with_owner("acme", "ana").await;
    let csv = b"sku,name,category\nPR-1,Shirt,tops\nPR-2,Skirt,skirts\nPR-3,Coat,coats\n".to_vec();
    start_without_runner(&gateway, "imp-orphan", "orphan-start", None, &csv).await;

    // Two resumers look often, as two gateways would: one runs it, the other
    // finds it held (and later finished).
    let every = Duration::from_millis(100);
    let first = tokio::spawn(gps_gateway::imports::keep_resuming_unfinished(gateway.state.clone(), every));
    let second = tokio::spawn(gps_gateway::imports::keep_resuming_unfinished(gateway.state.clone(), every));
    let view = status_when_settled(&gateway, &owner, "imp-orphan").await;
    assert_eq!(view["status"], "completed", "{view}");
    assert_eq!(view["created"].as_i64(), Some(3), "{view}");
    // Let the resumers look again after the end: nothing runs twice.
    tokio::time::sleep(Duration::from_millis(500)).await;
    first.abort();
    second.abort();

    let brand = gps_domain::ids::BrandId::parse("acme").expect("brand");
    let address = gps_commands::CommandHandler::address::<gps_domain::import::Import>(&brand, "imp-orphan")
        .expect("address");
    let loaded = gateway.state.commands.load::<gps_domain::import::Import>(&address).await.expect("loaded");
    let kinds: Vec<&str> = loaded.envelopes.iter().map(|envelope| envelope.event_type.as_str()).collect();
    assert_eq!(
        kinds.iter().filter(|kind| **kind == "import.completed").count(),
        1,
        "one completion: {kinds:?}"
    );
    assert_eq!(product_count(&gateway).await, 3);
}

#[tokio::test]
async fn an_import_updates_the_product_of_a_sku_the_lagging_catalog_has_not_seen_instead_of_creating_another()
{
    use gps_domain::import::{Import, ImportStatus};
    use gps_domain::product::Product;
    let gateway = TestGateway::start().await;
    let owner = gateway.brand_with_owner("acme", "ana").await;
    let brand = gps_domain::ids::BrandId::parse("acme").expect("brand");
    let settled = last_sequence(&gateway).await;
    gps_projections::queries::wait_for_sequence(
        &gateway.state.db,
        Some("catalog"),
        settled,
        Duration::from_secs(30),
    )
    .await
    .expect("projected");

    // The catalog read model stops where it is: its runner waits for this lock.
    let mut stall = gateway.state.db.begin().await.expect("transaction");
    sqlx::query("SELECT last_sequence FROM catalog.checkpoint WHERE projection = 'catalog' FOR UPDATE")
        .execute(&mut *stall)
        .await
        .expect("checkpoint locked");

    let created = gateway
        .as_user(
            &owner,
            "POST",
            "/api/v1/brands/acme/products",
            Some(json!({"product_id": "api-lag", "sku": "LAG-1", "name": "Shirt", "category": "tops"})),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let csv = b"sku,name,category\nLAG-1,Shirt from the catalog,tops\n";
    let accepted = start_import(&gateway, &owner, ("lag.csv", csv), None).await;
    assert_eq!(accepted.status, 202, "{}", accepted.text());
    let import_id = accepted.json()["import_id"].as_str().expect("import id").to_owned();

    // Followed in the log, since the read model is held.
    let address = gps_commands::CommandHandler::address::<Import>(&brand, &import_id).expect("address");
    let mut import = gateway.state.commands.load::<Import>(&address).await.expect("import");
    for _ in 0..300 {
        if import.state.status != ImportStatus::Running {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        import = gateway.state.commands.load::<Import>(&address).await.expect("import");
    }
    assert_eq!(import.state.status, ImportStatus::Completed, "{:?}", import.state);
    let api_product = gps_commands::CommandHandler::address::<Product>(&brand, "api-lag").expect("address");
    let api_product = gateway.state.commands.load::<Product>(&api_product).await.expect("product");
    let updated = api_product.state.details.as_ref().expect("created");
    assert_eq!(updated.name.as_str(), "Shirt from the catalog", "the row updated the SKU's product");
    stall.rollback().await.expect("released");

    let sequence = last_sequence(&gateway).await;
    gps_projections::queries::wait_for_sequence(
        &gateway.state.db,
        Some("catalog"),
        sequence,
        Duration::from_secs(30),
    )
    .await
    .expect("projected");
    let with_sku: i64 =
        sqlx::query_scalar("SELECT count(*) FROM catalog.products WHERE brand = 'acme' AND sku = 'LAG-1'")
            .fetch_one(&gateway.state.db)
            .await
            .expect("count");
    assert_eq!(with_sku, 1, "one product per SKU");
}

#[tokio::test]
async fn running_imports_are_bounded_per_brand_and_per_gateway_and_a_running_one_is_cancelled() {
    let gateway = TestGateway::start_configured(|media| {
        media.imports.max_running = 2;
        media.imports.max_running_per_brand = 1;
        media.imports.progress_every_rows = 10;
    })
    .await;
    let acme = gateway.brand_with_owner("acme", "ana").await;
    let beta = gateway.brand_with_owner("beta", "bob").await;
    let gamma = gateway.brand_with_owner("gamma", "cy").await;
    let catalog = |prefix: &str, rows: usize| {
        let mut csv = String::from("sku,name,category\n");
        for n in 0..rows {
            csv.push_str(&format!("{prefix}-{n},Shirt {n},tops\n"));
        }
        csv.into_bytes()
    };
    let start = |session: &Session, brand: &str, csv: Vec<u8>| {
        let (content_type, body) = import_form(("catalog.csv", &csv), None);
        let mut headers = session.headers();
        headers.push(("Content-Type", content_type.as_str()));
        let path = format!("/api/v1/brands/{brand}/imports");
        let port = gateway.port;
        let headers: Vec<(String, String)> =
            headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        async move {
            let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            raw_request(port, "POST", &path, &headers, &body).await
        }
    };
    let long = start(&acme, "acme", catalog("AC", 3000)).await;
    assert_eq!(long.status, 202, "{}", long.text());
    let long_id = long.json()["import_id"].as_str().expect("id").to_owned();

    let second_of_acme = start(&acme, "acme", catalog("AC2", 3)).await;
    assert_eq!(second_of_acme.status, 429, "{}", second_of_acme.text());
    assert!(second_of_acme.text().contains("brand acme already runs"), "{}", second_of_acme.text());
    assert!(second_of_acme.header("retry-after").is_some());
    let of_beta = start(&beta, "beta", catalog("BE", 3000)).await;
    assert_eq!(of_beta.status, 202, "another brand has its own slot: {}", of_beta.text());
    let of_gamma = start(&gamma, "gamma", catalog("GA", 3)).await;
    assert_eq!(of_gamma.status, 429, "{}", of_gamma.text());
    assert!(of_gamma.text().contains("this gateway runs as many imports"), "{}", of_gamma.text());

    // The owner cancels the long import: it ends as failed, saying who
    // cancelled it and why, long before its last row.
    let cancel = format!("/api/v1/brands/acme/imports/{long_id}/cancel");
    let body = json!({"reason": "wrong file"}).to_string();
    let mut headers = acme.headers();
    headers.push(("Content-Type", "application/json"));
    let cancelled = raw_request(gateway.port, "POST", &cancel, &headers, body.as_bytes()).await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.text());
    let again = raw_request(gateway.port, "POST", &cancel, &headers, body.as_bytes()).await;
    assert_eq!(again.status, 200, "cancelling again changes nothing: {}", again.text());
    assert_eq!(again.json()["events"], 0);
    let mut view = serde_json::Value::Null;
    for _ in 0..300 {
        view = raw_request(gateway.port, "GET", &format!("{IMPORTS}/{long_id}"), &acme.headers(), b"")
            .await
            .json();
        if view["status"] == "failed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(view["status"], "failed", "{view}");
    assert_eq!(view["failure_reason"], "cancelled by member ana: wrong file", "{view}");
    assert!(view["through_row"].as_i64().expect("rows") < 3000, "{view}");

    // Its slot comes back once its runner has stopped.
    let mut restarted = start(&acme, "acme", catalog("AC3", 3)).await;
    for _ in 0..100 {
        if restarted.status != 429 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        restarted = start(&acme, "acme", catalog("AC3", 3)).await;
    }
    assert_eq!(restarted.status, 202, "{}", restarted.text());
}
