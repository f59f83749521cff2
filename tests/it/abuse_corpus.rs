//! The bad-input and abuse corpus (`tests/corpus/bad_requests.json`): every
//! request in it gets a clear problem document (a 4xx, `application/problem+json`,
//! a detail, and the field when the corpus names one) and nothing is stored —
//! no event in the log, no object in storage. Then a burst: many concurrent
//! creations of one SKU make exactly one product.

use base64::Engine;
use serde_json::{Value, json};

use crate::gateway::TestGateway;
use crate::ingest_support::{brand_with_product, last_sequence, multipart, raw_request, stored_objects};

#[tokio::test]
async fn every_bad_or_abusive_request_of_the_corpus_gets_its_clear_problem_and_stores_nothing() {
    let corpus: Value = serde_json::from_str(
        // Tests run in the package's folder.
        &std::fs::read_to_string("tests/corpus/bad_requests.json").expect("the corpus"),
    )
    .expect("the corpus is JSON");
    let gateway = TestGateway::start().await;
    let owner = brand_with_product(&gateway, "acme", "ana").await;
    let _other = gateway.brand_with_owner("other", "oscar").await;
    let registered = gateway
        .as_user(
            &owner,
            "POST",
            "/api/v1/brands/acme/api-clients",
            Some(json!({"name": "Corpus", "role": "producer"})),
        )
        .await;
    assert_eq!(registered.status, 201, "{}", registered.body);
    let bearer = format!("Bearer {}", registered.json()["api_key"].as_str().expect("key"));
    let log_before = last_sequence(&gateway).await;
    let objects_before = stored_objects(&gateway.storage_dir).len();

    let requests = corpus["requests"].as_array().expect("requests");
    for entry in requests {
        let name = entry["name"].as_str().expect("name");
        let mut headers: Vec<(String, String)> = match entry["as"].as_str().expect("as") {
            "owner" => owner.headers().iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            "owner-without-csrf" => vec![("Cookie".into(), owner.cookie.clone())],
            "key" => vec![("Authorization".into(), bearer.clone())],
            "forged" => vec![("Cookie".into(), "gps_session=forged-session-token".into())],
            "anonymous" => Vec::new(),
            other => panic!("{name}: unknown caller {other}"),
        };
        for (header, value) in entry["headers"].as_object().into_iter().flatten() {
            headers.push((header.clone(), value.as_str().expect("header value").to_owned()));
        }
        let (method, path, body) = if let Some(upload) = entry.get("upload") {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(upload["file_base64"].as_str().expect("file"))
                .expect("base64");
            let file = (
                upload["file_name"].as_str().expect("file name"),
                upload["content_type"].as_str().expect("content type"),
                bytes.as_slice(),
            );
            let (content_type, body) = multipart(&[("view", "front")], Some(file));
            headers.push(("Content-Type".into(), content_type));
            ("POST".to_owned(), upload["path"].as_str().expect("path").to_owned(), body)
        } else {
            let body = match (&entry["body"], &entry["body_repeat"]) {
                (Value::String(body), _) => body.clone().into_bytes(),
                (_, Value::Object(repeat)) => {
                    let unit = repeat["unit"].as_str().expect("unit");
                    let times = repeat["times"].as_u64().expect("times") as usize;
                    format!(
                        "{}{}{}",
                        repeat["prefix"].as_str().expect("prefix"),
                        unit.repeat(times),
                        repeat["suffix"].as_str().expect("suffix")
                    )
                    .into_bytes()
                }
                _ => Vec::new(),
            };
            if let Some(content_type) = entry["content_type"].as_str() {
                headers.push(("Content-Type".into(), content_type.to_owned()));
            }
            (
                entry["method"].as_str().expect("method").to_owned(),
                entry["path"].as_str().expect("path").to_owned(),
                body,
            )
        };
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let answer = raw_request(gateway.port, &method, &path, &headers, &body).await;
        let expected: Vec<u64> =
            entry["status"].as_array().expect("status").iter().filter_map(Value::as_u64).collect();
        assert!(expected.contains(&u64::from(answer.status)), "{name}: {} {}", answer.status, answer.text());
        assert_eq!(
            answer.header("content-type"),
            Some("application/problem+json"),
            "{name}: {}",
            answer.text()
        );
        let problem = answer.json();
        assert!(
            problem["detail"].as_str().is_some_and(|d| d.len() > 10),
            "{name}: a detail that says what to do: {problem}"
        );
        assert_eq!(problem["status"], answer.status, "{name}: {problem}");
        if let Some(field) = entry["field"].as_str() {
            assert_eq!(problem["field"], field, "{name}: {problem}");
        }
    }
    assert_eq!(last_sequence(&gateway).await, log_before, "a refused request wrote an event");
    assert_eq!(
        stored_objects(&gateway.storage_dir).len(),
        objects_before,
        "a refused request stored an object"
    );

    // A burst: twenty concurrent creations of one SKU under different ids.
    let creations = (0..20).map(|n| {
        let body = json!({"product_id": format!("burst-{n}"), "sku": "BURST-1", "name": "Shirt", "category": "tops"});
        gateway.as_user(&owner, "POST", "/api/v1/brands/acme/products", Some(body))
    });
    let answers = futures::future::join_all(creations).await;
    let created = answers.iter().filter(|answer| answer.status == 201).count();
    let refused = answers.iter().filter(|answer| answer.status == 409).count();
    assert_eq!(
        (created, refused),
        (1, 19),
        "{:?}",
        answers.iter().map(|a| (a.status, a.body.clone())).collect::<Vec<_>>()
    );
    println!(
        "abuse corpus: {} requests tried, each refused with its problem document and nothing stored; \
         a burst of 20 creations of one SKU made 1 product and 19 clear refusals",
        requests.len()
    );
}
