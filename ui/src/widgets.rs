//! Small pieces the screens share: an upload zone with per-file progress,
//! image frames, status badges, progress bars, problems and empty states.

use dioxus::prelude::*;
use serde_json::Value;

use crate::api::{Client, sized};
use crate::app::Refresh;

/// One file of an [`UploadZone`] and how far it got.
#[derive(Debug, Clone, PartialEq)]
struct FileProgress {
    name: String,
    loaded: u64,
    total: u64,
    outcome: Option<Result<String, String>>,
    /// What the API warned about (e.g. a near duplicate of another image).
    warnings: Vec<String>,
}

/// Drag-and-drop (or choose) several files; each goes to `url` as its own
/// request from the browser, with its own progress and its own result worded
/// as the API words it. `field` is the multipart part name.
#[component]
pub(crate) fn UploadZone(zone: String, url: String, label: String, accept: String) -> Element {
    let mut files = use_signal(Vec::<FileProgress>::new);
    let client = use_context::<Client>();
    let refresh = use_context::<Refresh>();
    let channel = zone.clone();
    use_future(move || {
        let channel = channel.clone();
        let client = client.clone();
        async move {
            let mut messages = browser_channel(&channel);
            while let Ok(message) = messages.recv::<Value>().await {
                let name = message["file"].as_str().unwrap_or_default().to_owned();
                let mut list = files.write();
                let index = match list.iter().position(|f| f.name == name && f.outcome.is_none()) {
                    Some(index) => index,
                    None => {
                        list.push(FileProgress {
                            name: name.clone(),
                            loaded: 0,
                            total: 0,
                            outcome: None,
                            warnings: Vec::new(),
                        });
                        list.len() - 1
                    }
                };
                let entry = &mut list[index];
                entry.loaded = message["loaded"].as_u64().unwrap_or(entry.loaded);
                entry.total = message["total"].as_u64().unwrap_or(entry.total);
                if message["phase"] == "done" {
                    entry.outcome = Some(upload_outcome(&message, &client));
                    entry.warnings = warnings(&message);
                    entry.loaded = entry.total;
                    drop(list);
                    refresh.bump();
                }
            }
        }
    });
    rsx! {
        div { class: "gps-dropzone", "data-zone": "{zone}", "data-url": "{url}", "data-field": "file",
            p { "{label}" }
            label { class: "pick",
                "or choose them: "
                input { class: "gps-file", r#type: "file", multiple: true, accept: "{accept}" }
            }
            if !files.read().is_empty() {
                ul { class: "files",
                    for file in files.read().iter() {
                        li { key: "{file.name}",
                            span { "{file.name}" }
                            Progress { done: file.loaded, total: file.total.max(1) }
                            match &file.outcome {
                                None => rsx! { span { class: "badge warn", "uploading" } },
                                Some(Ok(note)) => rsx! { span { class: "badge ok", "{note}" } },
                                Some(Err(_)) => rsx! { span { class: "badge bad", "failed" } },
                            }
                            if let Some(Err(problem)) = &file.outcome {
                                span { class: "error", "{problem}" }
                            }
                            for warning in file.warnings.iter() {
                                span { class: "warning", "{warning}" }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The warnings of an accepted upload, as the API words them.
fn warnings(message: &Value) -> Vec<String> {
    let body = reply_body(message);
    body["warnings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|w| w["message"].as_str().map(str::to_owned))
        .collect()
}

/// Empties the text fields under `scope` (a CSS selector) after their form
/// was submitted. The fields are not bound to their values on every render
/// (the browser is ahead of the server while someone types, so a re-render
/// would drop keystrokes); this is how a form starts over.
pub(crate) fn clear_inputs(scope: &str) {
    let selector =
        Value::String(format!("{scope} input[type=text], {scope} input[type=email], {scope} textarea"));
    document::eval(&format!(
        "document.querySelectorAll({selector}).forEach((field) => {{ field.value = ''; }});"
    ));
}

/// What a finished browser upload means: accepted (with warnings), or the
/// problem as the API worded it.
fn upload_outcome(message: &Value, client: &Client) -> Result<String, String> {
    let status = message["status"].as_u64().unwrap_or(0);
    let body = reply_body(message);
    if (200..300).contains(&status) {
        if let Some(sequence) = body["stream_sequence"].as_u64() {
            client.saw_write(sequence);
        }
        let warnings = body["warnings"].as_array().map(Vec::len).unwrap_or(0);
        return Ok(match (body["already_applied"].as_bool(), warnings) {
            (Some(true), _) => "already there".to_owned(),
            (_, 0) => "uploaded".to_owned(),
            (_, n) => format!("uploaded, {n} warning(s)"),
        });
    }
    if status == 0 {
        return Err(
            "The upload did not reach the server; check the connection and drop the file again.".into()
        );
    }
    Err(crate::api::worded(&body).unwrap_or_else(|| "the server refused the file".to_owned()))
}

/// An image in a fixed 4:5 box, at a CDN derivative width.
#[component]
pub(crate) fn Frame(url: String, width: u32, alt: String) -> Element {
    rsx! {
        div { class: "frame",
            if url.is_empty() {
                span { class: "empty", "No image yet" }
            } else {
                img { src: "{sized(&url, width)}", alt: "{alt}", loading: "lazy" }
            }
        }
    }
}

/// A status as a coloured badge.
#[component]
pub(crate) fn Badge(status: String) -> Element {
    let class = status.replace(' ', "_");
    rsx! { span { class: "badge {class}", "{status.replace('_', \" \")}" } }
}

/// A progress bar (`done` of `total`).
#[component]
pub(crate) fn Progress(done: u64, total: u64) -> Element {
    let percent = (done.min(total) * 100).checked_div(total).unwrap_or(0);
    rsx! { div { class: "progress", title: "{percent}%", div { style: "width:{percent}%" } } }
}

/// Opens the browser channel `name` of `assets/gps.js` (uploads, regions,
/// keys, navigation): what the page reports there arrives on the returned
/// eval, for as long as the component lives.
pub(crate) fn browser_channel(name: &str) -> document::Eval {
    document::eval(&format!(
        "GPS.channels[{}] = (message) => dioxus.send(message); await new Promise(() => {{}});",
        Value::String(name.to_owned())
    ))
}

/// The JSON body of a request the browser sent itself (`Null` if none).
pub(crate) fn reply_body(message: &Value) -> Value {
    message["body"].as_str().and_then(|body| serde_json::from_str(body).ok()).unwrap_or(Value::Null)
}

/// A problem to show, if any.
#[component]
pub(crate) fn ProblemNote(problem: Option<String>) -> Element {
    match problem {
        Some(message) => rsx! { div { class: "notice error", role: "alert", "{message}" } },
        None => rsx! {},
    }
}

/// What a list says instead of rows: the problem reading it, or what to do
/// when it is empty; nothing while it loads or when it has rows.
#[component]
pub(crate) fn ListStatus(loaded: Option<Result<usize, String>>, title: String, hint: String) -> Element {
    match loaded {
        Some(Err(message)) => rsx! { ProblemNote { problem: Some(message) } },
        Some(Ok(0)) => rsx! { EmptyState { title, hint } },
        _ => rsx! {},
    }
}

/// What to do when a list is empty.
#[component]
pub(crate) fn EmptyState(title: String, hint: String) -> Element {
    rsx! {
        div { class: "empty-state",
            h3 { "{title}" }
            p { "{hint}" }
        }
    }
}

/// A short UTC time of an RFC 3339 timestamp (`2026-11-28 04:12`).
pub(crate) fn short_time(timestamp: &str) -> String {
    timestamp.get(..16).map(|t| t.replace('T', " ")).unwrap_or_else(|| timestamp.to_owned())
}

/// Money from micro-units of USD.
pub(crate) fn money(micros: i64) -> String {
    format!("${:.2}", micros as f64 / 1_000_000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_money_read_well() {
        assert_eq!(short_time("2026-11-28T04:12:55.1Z"), "2026-11-28 04:12");
        assert_eq!(money(1_234_567), "$1.23");
    }
}
