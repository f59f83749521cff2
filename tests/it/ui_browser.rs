//! The UI in a real browser (Debian's Chromium through chromedriver): a new
//! user of `gps up` drives the whole production loop, a member of brand B
//! sees none of brand A, and a person an owner invites chooses a password
//! from the mailed link and signs in. Each screen is saved as a screenshot under
//! `GPS_SCREENSHOT_DIR` (default `target/ui-screenshots`); `.ci/run` keeps
//! them. The screenshots are a record, not an assertion.

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::gateway::{TestGateway, product};
use crate::gps_up::DemoInstallation;
use crate::ingest_support::{picture, png_of};
use crate::webdriver::Browser;

/// How long the page may wait for the platform's background work (a
/// generation in a debug build on a loaded 2-core machine, a delivery).
const BACKGROUND_WORK: std::time::Duration = std::time::Duration::from_secs(240);

/// Where this run's screenshots go.
fn screenshots(test: &str) -> PathBuf {
    let root = std::env::var_os("GPS_SCREENSHOT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ui-screenshots"));
    root.join(test)
}

/// Saves a screenshot once the page's images have loaded (a record of the
/// screen as a person sees it).
async fn snapshot(browser: &Browser, path: &Path) {
    for _ in 0..50 {
        let loaded = browser
            .execute("return Array.from(document.images).every((image) => image.complete);", vec![])
            .await;
        if loaded == json!(true) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    browser.screenshot(path).await;
}

/// Writes a test photo (a tinted pattern) and returns its path.
fn photo(dir: &Path, name: &str, tint: [u8; 3]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, png_of(&picture(900, 1200, tint))).expect("write photo");
    path
}

/// The path of a URL (the LiveView's history adds an empty `?#`).
fn path_of(url: &str) -> String {
    let after_host = url.splitn(4, '/').nth(3).unwrap_or_default();
    format!("/{}", after_host.split(['?', '#']).next().unwrap_or_default())
}

/// Signs in through the sign-in page.
async fn sign_in(browser: &Browser, base: &str, email: &str, password: &str) {
    browser.goto(&format!("{base}/app")).await;
    browser.fill_in("input[name=email]", email).await;
    browser.fill_in("input[name=password]", password).await;
    browser.click_on("button[type=submit]", None).await;
}

/// Clicks the sidebar link to a section.
async fn open_section(browser: &Browser, label: &str) {
    browser.click_on(".sidebar a", Some(label)).await;
}

#[tokio::test]
async fn a_new_user_drives_the_production_loop_in_the_browser() {
    let shots = screenshots("production_loop");
    let files = tempfile::tempdir().expect("temp dir");
    let gps = DemoInstallation::start().await;
    let base = format!("http://127.0.0.1:{}", gps.port);
    let browser = Browser::start().await;

    // Sign in: the only brand opens on its catalog.
    sign_in(&browser, &base, "nobody@example.com", "wrong password").await;
    browser.find_with_text(".notice.error", "do not match").await;
    snapshot(&browser, &shots.join("00-sign-in-refused.png")).await;
    sign_in(&browser, &base, &gps.credential("email"), &gps.credential("password")).await;
    browser.wait_count("#products .product-tile", 12).await;
    assert_eq!(path_of(&browser.current_url().await), "/app/demo/catalog");
    snapshot(&browser, &shots.join("01-catalog.png")).await;

    // A new product, and two photos dropped on it.
    browser.click_on("#new-product", None).await;
    browser.fill_in("#product-sku", "UI-LINEN-1").await;
    browser.fill_in("#product-name", "Linen shirt").await;
    browser.fill_in("#product-category", "shirts").await;
    browser.click_on("#create-product", None).await;
    let front = photo(files.path(), "linen-front.png", [200, 190, 170]);
    let back = photo(files.path(), "linen-back.png", [150, 170, 200]);
    browser.upload_to(".gps-dropzone input.gps-file", &[&front, &back]).await;
    browser.wait_count(".files .badge.ok", 2).await;
    browser.wait_count("#product-images .frame img", 2).await;
    snapshot(&browser, &shots.join("02-product-uploaded.png")).await;
    // A file that is not an image gets the API's own words, per file.
    let notes = files.path().join("notes.png");
    std::fs::write(&notes, b"not an image at all").expect("write");
    browser.upload_to(".gps-dropzone input.gps-file", &[&notes]).await;
    let refused = browser.find(".files .error").await.text().await;
    assert!(
        refused.contains("not an image") && refused.contains("JPEG"),
        "the API's words, per file: {refused}"
    );

    // The search finds it; a filter that excludes it says so.
    open_section(&browser, "Catalog").await;
    browser.fill_in("#catalog-search", "UI-LINEN").await;
    browser.wait_count("#products .product-tile", 1).await;
    browser.find_with_text("#products .product-tile", "Linen shirt").await;
    browser.find("#filter-images").await.select_text("Without images").await;
    browser.find_with_text(".empty-state", "No product matches").await;

    // A subject with two base images, and a style.
    open_section(&browser, "Subjects & styles").await;
    browser.fill_in("#subject-name", "Mara").await;
    browser.fill_in("#subject-description", "Tall, short dark hair, late twenties").await;
    browser.click_on("#create-subject", None).await;
    let subject_card = browser.find_with_text(".subject-card", "Mara").await;
    let subject_front = photo(files.path(), "mara-front.png", [180, 150, 140]);
    let subject_side = photo(files.path(), "mara-side.png", [170, 140, 150]);
    let zone =
        subject_card.find(".gps-dropzone").await.attr("data-zone").await.expect("the subject's upload zone");
    browser
        .upload_to(&format!("[data-zone='{zone}'] input.gps-file"), &[&subject_front, &subject_side])
        .await;
    browser.wait_count(".subject-card .files .badge.ok", 2).await;
    browser.fill_in("#style-name", "Linen daylight").await;
    browser.fill_in("#new-style .style-background", "seamless paper, warm off-white").await;
    browser.fill_in("#new-style .style-lighting", "soft window light from the left").await;
    browser.fill_in("#new-style .style-mood", "calm").await;
    browser.click_on("#create-style", None).await;
    browser.find_with_text(".style-card", "Linen daylight").await;
    // Edit the subject's description.
    let mara = browser.find_with_text(".subject-card", "Mara").await;
    mara.find(".edit-subject").await.click().await;
    browser.fill_in(".subject-description-edit", "Tall, short dark hair, late twenties, freckles").await;
    browser.click_on(".save-subject", None).await;
    browser.find_with_text(".subject-card", "freckles").await;
    snapshot(&browser, &shots.join("03-subjects-and-styles.png")).await;

    // A shooting with one look of the new product; its plan; launch.
    open_section(&browser, "Shootings").await;
    browser.fill_in("#shooting-name", "Linen spring").await;
    browser.find("#new-shooting .pick-subject").await.select_text("Mara").await;
    browser.find("#new-shooting .pick-style").await.select_text("Linen daylight").await;
    browser.fill_in("#new-shooting input[type=number]", "512").await;
    browser.click_on("#create-shooting", None).await;
    browser.fill_in("#variants", "2").await;
    browser.click_on("#save-rules", None).await;
    browser.find_with_text("#rules .badge", "saved").await;
    browser.fill_in("#look-name", "Linen look").await;
    browser.click_on("#new-look .checks label", Some("UI-LINEN-1")).await;
    browser.click_on("#add-look", None).await;
    browser.wait_count("#looks tbody tr", 1).await;
    browser.find_with_text("#plan-predictions", "2").await;
    snapshot(&browser, &shots.join("04-shooting-plan.png")).await;
    browser.click_on("#launch", None).await;
    browser.find_with_text(".page-head .badge", "launched").await;

    // The predictions appear live in review (no reload: the page's socket stays open).
    let marker = browser.execute("window.gpsMarker = 'same page'; return window.gpsMarker;", vec![]).await;
    assert_eq!(marker, json!("same page"));
    browser.click_on(".page-head a", Some("Review")).await;
    let tiles = browser.wait_count_within(".tile.prediction", 2, BACKGROUND_WORK).await;
    assert_eq!(browser.execute("return window.gpsMarker || null;", vec![]).await, json!("same page"));
    browser.find(".tile.prediction .quality").await;
    snapshot(&browser, &shots.join("05-review-live.png")).await;
    let first = tiles[0].attr("data-prediction").await.expect("prediction id");
    let second = tiles[1].attr("data-prediction").await.expect("prediction id");

    // Compare the two side by side.
    for id in [&first, &second] {
        browser.click_on(&format!(".tile.prediction[data-prediction='{id}'] .select-prediction"), None).await;
    }
    browser.find_with_text("#selected-count", "2 selected").await;
    browser.click_on("#compare", None).await;
    browser.wait_count("#compare-view .compared", 2).await;
    snapshot(&browser, &shots.join("06-compare.png")).await;

    // Approve the first with the keyboard (focus it, press a).
    browser.click_on(&format!(".tile.prediction[data-prediction='{first}'] .frame"), None).await;
    browser.find(&format!(".tile.prediction.focused[data-prediction='{first}']")).await;
    browser.press_key("a").await;
    browser.find(&format!(".tile.prediction[data-prediction='{first}'][data-state='approved']")).await;

    // Request a revision of the second, with a region drawn on the image.
    browser.click_on(&format!(".tile.prediction[data-prediction='{second}'] button"), Some("Revise")).await;
    let canvas = browser.find("#region-canvas").await;
    browser.drag_on(&canvas, (60, 80), (200, 220)).await;
    browser.wait_count(".region-row", 1).await;
    browser.fill_in(".region-note", "the collar should lie flat").await;
    browser.fill_in("#revision-comment", "Straighten the collar").await;
    snapshot(&browser, &shots.join("07-revision-region.png")).await;
    browser.click_on("#confirm-revision", None).await;
    browser.wait_gone("#revise-dialog").await;
    browser
        .find(&format!(".tile.prediction[data-prediction='{second}'][data-state='revision_requested']"))
        .await;

    // The revision's predictions appear next to their parent.
    let revisions = browser
        .wait_count_within(&format!(".tile.prediction[data-revision-of='{second}']"), 2, BACKGROUND_WORK)
        .await;
    let order: Vec<String> = {
        let mut ids = Vec::new();
        for tile in browser.find_all(".tile.prediction").await {
            ids.push(tile.attr("data-prediction").await.unwrap_or_default());
        }
        ids
    };
    let parent_at = order.iter().position(|id| *id == second).expect("parent shown");
    let revision_id = revisions[0].attr("data-prediction").await.expect("id");
    assert_eq!(
        order.get(parent_at + 1),
        Some(&revision_id),
        "the revision sits right after its parent: {order:?}"
    );
    snapshot(&browser, &shots.join("08-revision-predictions.png")).await;

    // Bulk approve: select both revision predictions, approve them at once.
    browser.click_on("button", Some("Clear")).await;
    let revision_ids = [revision_id.clone(), revisions[1].attr("data-prediction").await.expect("id")];
    for id in &revision_ids {
        browser.click_on(&format!(".tile.prediction[data-prediction='{id}'] .select-prediction"), None).await;
    }
    browser.find_with_text("#selected-count", "2 selected").await;
    browser.click_on("#bulk-approve", None).await;
    for id in &revision_ids {
        browser.find(&format!(".tile.prediction[data-prediction='{id}'][data-state='approved']")).await;
    }

    // The queue shows the generations with their steps.
    open_section(&browser, "Generation queue").await;
    browser.wait_count_within(".generation-row[data-status='completed']", 2, BACKGROUND_WORK).await;
    snapshot(&browser, &shots.join("09-queue.png")).await;

    // Export the approved one with a preset; it is delivered.
    open_section(&browser, "Delivery").await;
    // The brand defines a preset of its own.
    browser.click_on("#new-preset", None).await;
    browser.fill_in("#preset-channel", "lookbook-square").await;
    browser.find("#preset-form select").await.select_text("1:1").await;
    browser.click_on("#save-preset", None).await;
    browser.find_with_text("#presets tbody tr", "lookbook-square").await;
    browser.click_on(&format!(".export-pick[value='{first}']"), None).await;
    browser.find("#export-preset").await.select_text("web-pdp").await;
    browser.click_on("#export", None).await;
    browser.find_with_text("#new-export .notice.ok", "Export requested").await;
    browser.wait_count_within(".export-row[data-status='completed']", 1, BACKGROUND_WORK).await;
    browser.find_with_text(".export-row", "1 of 1 delivered").await;
    snapshot(&browser, &shots.join("10-delivery.png")).await;

    // The product says what was delivered where.
    open_section(&browser, "Catalog").await;
    browser.fill_in("#catalog-search", "UI-LINEN").await;
    browser.click_on("#products .product-tile", Some("Linen shirt")).await;
    browser.find_with_text("#product-deliveries .delivered-row", "web-pdp").await;
    snapshot(&browser, &shots.join("11-product-delivered.png")).await;

    // Activity, usage and members.
    open_section(&browser, "Activity & usage").await;
    browser.find_with_text("#usage-shootings", "Linen spring").await;
    snapshot(&browser, &shots.join("12-activity-usage.png")).await;
    open_section(&browser, "Members").await;
    browser.find("#members tbody tr").await;
    snapshot(&browser, &shots.join("13-members.png")).await;

    // A dropped connection: the page says so, reconnects, and the screen comes back.
    let address = path_of(&browser.current_url().await);
    browser
        .execute(
            "const mark = document.createElement('div'); mark.id = 'before-the-drop'; document.body.appendChild(mark); \
             window.ipc.ws.close(); return true;",
            vec![],
        )
        .await;
    browser.wait_gone("#before-the-drop").await;
    browser.find("#members tbody tr").await;
    browser.find("#api-keys").await;
    assert_eq!(path_of(&browser.current_url().await), address);

    browser.close().await;
    gps.stop().await;
}

#[tokio::test]
async fn a_member_of_brand_b_sees_nothing_of_brand_a() {
    let shots = screenshots("brand_isolation");
    let gateway = TestGateway::start().await;
    let owner_a = gateway.brand_with_owner("brand-a", "owner-a").await;
    let mut secret = product("secret-a");
    secret["name"] = json!("Secret Alpha gown");
    let created = gateway.as_user(&owner_a, "POST", "/api/v1/brands/brand-a/products", Some(secret)).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let owner_b = gateway.brand_with_owner("brand-b", "owner-b").await;
    let mut own = product("own-b");
    own["name"] = json!("Bravo blazer");
    let created = gateway.as_user(&owner_b, "POST", "/api/v1/brands/brand-b/products", Some(own)).await;
    assert_eq!(created.status, 201, "{}", created.body);

    let base = format!("http://127.0.0.1:{}", gateway.port);
    let browser = Browser::start().await;
    sign_in(&browser, &base, "owner-b@example.com", "a long enough password").await;
    browser.find_with_text("#products .product-tile", "Bravo blazer").await;
    let page = browser.execute("return document.body.innerText;", vec![]).await;
    assert!(!page.to_string().contains("Alpha"), "brand A's product on brand B's catalog: {page}");
    snapshot(&browser, &shots.join("01-brand-b-catalog.png")).await;

    // Brand A's addresses show no data of brand A.
    for address in [
        "/app/brand-a/catalog",
        "/app/brand-a/catalog/secret-a",
        "/app/brand-a/shootings",
        "/app/brand-a/activity",
    ] {
        browser.goto(&format!("{base}{address}")).await;
        browser.find_with_text(".notice.error", "not a member").await;
        let page = browser.execute("return document.body.innerText;", vec![]).await;
        assert!(!page.to_string().contains("Alpha"), "{address} showed brand A's data: {page}");
    }
    snapshot(&browser, &shots.join("02-brand-a-refused.png")).await;

    // An owner creates an API key; it is shown once.
    browser.goto(&format!("{base}/app/brand-b/members")).await;
    browser.fill_in("#key-name", "DAM sync").await;
    browser.click_on("#create-key", None).await;
    let key = browser.find("#new-api-key").await.text().await;
    assert!(key.len() > 20, "the new key is shown: {key}");
    browser.find_with_text("#api-keys tbody tr", "DAM sync").await;
    snapshot(&browser, &shots.join("03-api-key-shown-once.png")).await;
    browser.goto(&format!("{base}/app/brand-b/members")).await;
    browser.find_with_text("#api-keys tbody tr", "DAM sync").await;
    let page = browser.execute("return document.body.innerText;", vec![]).await;
    assert!(!page.to_string().contains(&key), "the key is never shown again");

    // A socket opened from another site's page is refused, even with the cookie.
    let upgrade = |origin: &str| {
        format!(
            "GET /app/ws?path=/app HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: {origin}\r\nConnection: Upgrade\r\n\
             Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Cookie: {cookie}\r\n\r\n",
            port = gateway.port,
            cookie = owner_b.cookie
        )
    };
    assert_eq!(status_of(gateway.port, &upgrade("http://evil.example")).await, 403);
    assert_eq!(status_of(gateway.port, &upgrade(&base)).await, 101, "the UI's own page may open it");
    browser.close().await;
}

#[tokio::test]
async fn an_owner_invites_someone_new_who_chooses_a_password_from_the_mailed_link_and_signs_in() {
    let shots = screenshots("invite");
    let gateway = TestGateway::start().await;
    gateway.brand_with_owner("brand-b", "owner-b").await;
    let base = format!("http://127.0.0.1:{}", gateway.port);
    let browser = Browser::start().await;
    sign_in(&browser, &base, "owner-b@example.com", "a long enough password").await;
    browser.find(".sidebar a").await;
    browser.goto(&format!("{base}/app/brand-b/members")).await;
    browser.fill_in("#invite-email", "new.comer@example.com").await;
    browser.click_on("#invite", None).await;
    browser.find_with_text("#invite-sent", "a mail was sent").await;
    browser.find_with_text("#members tbody tr", "New Comer").await;
    snapshot(&browser, &shots.join("01-invited.png")).await;
    let page = browser.execute("return document.body.innerText;", vec![]).await;
    assert!(!page.to_string().contains("no account uses"), "{page}");

    // The mail's link leads to the address the owner's browser used.
    let mails = gateway.outbox_mails();
    assert_eq!(mails.len(), 1, "{mails:?}");
    let link = mails[0]
        .lines()
        .find(|line| line.contains("/app/set-password?token="))
        .expect("a link in the mail")
        .trim()
        .to_owned();
    assert!(link.starts_with(&format!("{base}/app/set-password?token=")), "{link}");

    browser.goto(&link).await;
    browser.fill_in("input[name=password]", "my own new password").await;
    browser.fill_in("input[name=confirm]", "my own new password").await;
    snapshot(&browser, &shots.join("02-choose-password.png")).await;
    browser.click_on("button[type=submit]", None).await;
    browser.find_with_text(".notice.ok", "Your password is set").await;
    browser.fill_in("input[name=email]", "new.comer@example.com").await;
    browser.fill_in("input[name=password]", "my own new password").await;
    browser.click_on("button[type=submit]", None).await;
    // Their one brand opens at its catalog.
    browser.find(".sidebar a").await;
    assert_eq!(path_of(&browser.current_url().await), "/app/brand-b/catalog");
    snapshot(&browser, &shots.join("03-signed-in.png")).await;
    browser.close().await;
}

/// The status code of a raw HTTP/1.1 request.
async fn status_of(port: u16, request: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut head = vec![0u8; 512];
    let read = stream.read(&mut head).await.expect("read");
    let head = String::from_utf8_lossy(&head[..read]).into_owned();
    head.split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {head}"))
}

#[tokio::test]
async fn a_screen_updates_live_when_someone_else_changes_the_brand() {
    let gateway = TestGateway::start().await;
    let owner = gateway.brand_with_owner("live-co", "owner-live").await;
    let base = format!("http://127.0.0.1:{}", gateway.port);
    let browser = Browser::start().await;
    sign_in(&browser, &base, "owner-live@example.com", "a long enough password").await;
    browser.find_with_text(".empty-state", "The catalog is empty").await;
    let marker = browser.execute("window.gpsMarker = 'same page'; return window.gpsMarker;", vec![]).await;
    assert_eq!(marker, json!("same page"));
    // Another member (here: the API) adds a product; the open page shows it.
    let mut added = product("live-1");
    added["name"] = json!("Live linen coat");
    let created = gateway.as_user(&owner, "POST", "/api/v1/brands/live-co/products", Some(added)).await;
    assert_eq!(created.status, 201, "{}", created.body);
    browser.find_with_text("#products .product-tile", "Live linen coat").await;
    assert_eq!(
        browser.execute("return window.gpsMarker || null;", vec![]).await,
        json!("same page"),
        "no reload"
    );

    // A form sent incomplete gets the API's problem, naming the field.
    browser.click_on("#new-product", None).await;
    browser.click_on("#create-product", None).await;
    let problem = browser.find(".card .notice.error").await.text().await;
    assert!(problem.starts_with("sku:"), "the problem names the field: {problem}");
    snapshot(&browser, &screenshots("live_updates").join("01-problem-named.png")).await;
    browser.close().await;
}
