//! Follows a brand's event stream and resumes where it stopped after a restart.
//!
//! ```text
//! GPS_API_KEY=gps_… cargo run --example follow_events -- http://127.0.0.1:8080 acme position.txt
//! ```
//!
//! The key needs the `stream` scope. `position.txt` holds the stream sequence
//! of the last event handled; it is sent as `Last-Event-ID`, so the gateway
//! replays everything after it and then follows live. The position is saved
//! after an event is handled: a crash in between handles that event again
//! (make handling idempotent, e.g. by `event_id`), it never skips one.

use std::error::Error;
use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [base, brand, position_file] = args.as_slice() else {
        return Err("usage: follow_events <gateway URL> <brand> <position file>".into());
    };
    let key =
        std::env::var("GPS_API_KEY").map_err(|_| "set GPS_API_KEY to an API key with the stream scope")?;
    let url = format!("{}/api/v1/brands/{brand}/events", base.trim_end_matches('/'));
    loop {
        let position = std::fs::read_to_string(position_file).unwrap_or_default();
        let mut request =
            reqwest::Client::new().get(&url).bearer_auth(&key).header("Accept", "text/event-stream");
        if !position.trim().is_empty() {
            request = request.header("Last-Event-ID", position.trim());
        }
        let response = request.send().await;
        match response {
            // A refusal (bad key, missing scope, unknown brand) does not heal by retrying.
            Ok(response) if response.status().is_client_error() => {
                return Err(format!("{}: {}", response.status(), response.text().await?).into());
            }
            Ok(response) => match follow(response, position_file).await {
                Ok(()) => eprintln!("the stream ended; reconnecting"),
                Err(error) => eprintln!("{error}; reconnecting"),
            },
            Err(error) => eprintln!("{error}; reconnecting"),
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Handles SSE events as they arrive, saving the position after each.
async fn follow(mut response: reqwest::Response, position_file: &str) -> Result<(), Box<dyn Error>> {
    let mut buffer = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        buffer.extend_from_slice(&chunk);
        // An event ends with a blank line; lines starting with ':' are keep-alives.
        while let Some(end) = buffer.windows(2).position(|pair| pair == b"\n\n") {
            let block = String::from_utf8(buffer.drain(..end + 2).collect())?;
            let (mut id, mut data) = (None, String::new());
            for line in block.lines() {
                match line.split_once(':') {
                    Some(("id", value)) => id = Some(value.trim().to_owned()),
                    Some(("data", value)) => data.push_str(value.strip_prefix(' ').unwrap_or(value)),
                    _ => {}
                }
            }
            let Some(id) = id else { continue };
            let event: serde_json::Value = serde_json::from_str(&data)?;
            println!("{id} {} {}/{}", event["event_type"], event["aggregate_type"], event["aggregate_id"]);
            let temporary = format!("{position_file}.tmp");
            std::fs::write(&temporary, &id)?;
            std::fs::rename(&temporary, position_file)?;
        }
    }
    Ok(())
}
