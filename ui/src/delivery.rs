//! Delivery: channel presets (built-in and the brand's own), exporting
//! approved content with a preset to a destination, and each export's
//! progress. What was delivered where, per product, is on the product.

use dioxus::prelude::*;
use serde_json::{Value, json};

use crate::api::{encode, text};
use crate::app::{loaded, rows, use_get, write};
use crate::widgets::{Badge, Frame, ListStatus, ProblemNote, Progress};

/// Every preset an export can use: the brand's own, then the built-ins it
/// does not override.
fn presets(own: &[Value]) -> Vec<(String, Value, bool)> {
    let mut all: Vec<(String, Value, bool)> =
        own.iter().map(|p| (text(p, "channel"), p["spec"].clone(), false)).collect();
    for (channel, spec) in gps_domain::presets::all_built_in() {
        if !all.iter().any(|(name, _, _)| name == channel.as_str()) {
            all.push((channel.as_str().to_owned(), serde_json::to_value(spec).unwrap_or_default(), true));
        }
    }
    all
}

fn describe(spec: &Value) -> String {
    let max = spec["max_bytes"]
        .as_u64()
        .map(|b| format!(", ≤ {:.1} MB", b as f64 / 1_000_000.0))
        .unwrap_or_default();
    format!(
        "{} · {} px long edge · {} · {} q{}{max}",
        text(spec, "aspect_ratio"),
        spec["long_edge_px"],
        text(spec, "fit").replace('_', " "),
        text(spec, "format").to_uppercase(),
        spec["quality"],
    )
}

#[component]
pub(crate) fn Delivery(brand: String) -> Element {
    let b1 = brand.clone();
    let own = use_get(move || Some(format!("/api/v1/brands/{b1}/channel-presets?limit=100")));
    let b2 = brand.clone();
    let exports = use_get(move || Some(format!("/api/v1/brands/{b2}/exports?limit=50")));
    let all = presets(&rows(&loaded(&own)));
    let exports = loaded(&exports);
    let list = rows(&exports);
    rsx! {
        div { class: "page-head", h1 { "Delivery" } }
        NewExport { brand: brand.clone(), presets: all.iter().map(|(name, _, _)| name.clone()).collect::<Vec<_>>() }
        div { class: "card table-card",
            div { style: "padding:16px 16px 0", h2 { "Exports" } }
            ListStatus { loaded: exports.counted(list.len()), title: "No exports yet", hint: "Choose approved predictions above, a preset and a destination, then export." }
            if !list.is_empty() {
                table { id: "exports",
                    thead { tr { th { "Export" } th { "Preset" } th { "Destination" } th { "Progress" } th { "Status" } th {} } }
                    tbody {
                        for export in list {
                            ExportRow { key: "{text(&export, \"export_id\")}", brand: brand.clone(), export }
                        }
                    }
                }
            }
        }
        div { class: "card table-card",
            div { style: "padding:16px 16px 0", h2 { "Channel presets" } }
            NewPreset { brand: brand.clone() }
            table { id: "presets",
                thead { tr { th { "Channel" } th { "Output" } th { "File names" } th {} } }
                tbody {
                    for (name, spec, built_in) in all {
                        tr { key: "{name}",
                            td { b { "{name}" } }
                            td { class: "small", "{describe(&spec)}" }
                            td { class: "small", code { "{text(&spec, \"naming_pattern\")}" } }
                            td { if built_in { span { class: "badge", "built in" } } else { span { class: "badge ok", "this brand's" } } }
                        }
                    }
                }
            }
        }
    }
}

#[component]
fn ExportRow(brand: String, export: Value) -> Element {
    let id = text(&export, "export_id");
    let status = text(&export, "status");
    let total = export["prediction_ids"].as_array().map(Vec::len).unwrap_or(0) as u64;
    let delivered = export["delivered"].as_u64().unwrap_or(0);
    let destination = text(&export["destination"], "kind");
    rsx! {
        tr { class: "export-row", "data-status": "{status}",
            td { class: "small", "{id}" }
            td { "{text(&export, \"channel\")}" }
            td { "{destination.replace('_', \" \")}" }
            td { style: "min-width:140px", Progress { done: delivered, total: total.max(1) } span { class: "small muted", "{delivered} of {total} delivered" } }
            td {
                Badge { status: status.clone() }
                if let Some(reason) = export["failure_reason"].as_str() { div { class: "small", style: "color:var(--bad)", "{reason}" } }
            }
            td {
                if destination == "zip_download" && status == "completed" {
                    a { href: "/api/v1/brands/{brand}/exports/{id}/download", class: "download", "Download ZIP" }
                }
            }
        }
    }
}

#[component]
fn NewExport(brand: String, presets: Vec<String>) -> Element {
    let b1 = brand.clone();
    let approved =
        use_get(move || Some(format!("/api/v1/brands/{b1}/predictions?review_state=approved&limit=200")));
    let approved = rows(&loaded(&approved));
    let mut chosen = use_signal(Vec::<String>::new);
    let mut preset = use_signal(|| "web-pdp".to_owned());
    let mut kind = use_signal(|| "zip_download".to_owned());
    let mut bucket = use_signal(String::new);
    let mut prefix = use_signal(String::new);
    let mut url = use_signal(String::new);
    let mut secret = use_signal(String::new);
    let mut force = use_signal(|| false);
    let error = use_signal(|| None::<String>);
    let mut outcome = use_signal(|| None::<String>);
    rsx! {
        div { class: "card", id: "new-export",
            h2 { "Export approved content" }
            ProblemNote { problem: error() }
            if let Some(note) = outcome() { div { class: "notice ok", "{note}" } }
            if approved.is_empty() {
                p { class: "muted", "Nothing is approved yet. Approve predictions in a shooting's review; they appear here." }
            } else {
                div { class: "grid", style: "grid-template-columns:repeat(auto-fill,minmax(120px,1fr))",
                    for prediction in approved {
                        label { key: "{text(&prediction, \"prediction_id\")}", class: "tile export-choice",
                            Frame { url: text(&prediction, "url"), width: 240, alt: "approved" }
                            div { class: "body", style: "min-height:0",
                                div { class: "row", style: "gap:6px",
                                    input { r#type: "checkbox", class: "export-pick", value: "{text(&prediction, \"prediction_id\")}",
                                        checked: chosen.read().contains(&text(&prediction, "prediction_id")),
                                        onchange: {
                                            let id = text(&prediction, "prediction_id");
                                            move |e: FormEvent| {
                                                let mut list = chosen.write();
                                                list.retain(|p| *p != id);
                                                if e.checked() { list.push(id.clone()); }
                                            }
                                        }
                                    }
                                    span { class: "small", "{text(&prediction, \"shot_type\")} · {prediction[\"variant_index\"]}" }
                                }
                            }
                        }
                    }
                }
            }
            div { class: "form", style: "margin-top:12px",
                label { "Preset"
                    select { id: "export-preset", onchange: move |e| preset.set(e.value()),
                        for name in presets { option { key: "{name}", value: "{name}", selected: preset() == name, "{name}" } }
                    }
                }
                label { "Destination"
                    select { id: "export-destination", onchange: move |e| kind.set(e.value()),
                        option { value: "zip_download", "ZIP to download" }
                        option { value: "s3", "The brand's S3 bucket" }
                        option { value: "webhook", "A webhook" }
                    }
                }
                if kind() == "s3" {
                    label { "Bucket" input { r#type: "text", initial_value: "{bucket}", oninput: move |e| bucket.set(e.value()) } }
                    label { "Prefix" input { r#type: "text", initial_value: "{prefix}", oninput: move |e| prefix.set(e.value()) } }
                    label { "Credentials (name set with gps secrets)" input { r#type: "text", initial_value: "{secret}", oninput: move |e| secret.set(e.value()) } }
                }
                if kind() == "webhook" {
                    label { "URL (https)" input { r#type: "text", initial_value: "{url}", oninput: move |e| url.set(e.value()) } }
                    label { "Signing secret (name set with gps secrets)" input { r#type: "text", initial_value: "{secret}", oninput: move |e| secret.set(e.value()) } }
                }
                div { class: "checks", label { input { r#type: "checkbox", checked: force(), onchange: move |e| force.set(e.checked()) } "Deliver again even if unchanged" } }
                div { class: "row",
                    button { class: "primary", id: "export", disabled: chosen.read().is_empty(),
                        onclick: move |_| {
                            let destination = match kind().as_str() {
                                "s3" => json!({"kind": "s3", "bucket": bucket().trim(), "prefix": prefix().trim(), "credentials": secret().trim()}),
                                "webhook" => json!({"kind": "webhook", "url": url().trim(), "secret": secret().trim()}),
                                _ => json!({"kind": "zip_download"}),
                            };
                            let body = json!({"predictions": chosen(), "channel": preset(), "destination": destination, "force": force()});
                            write("POST", format!("/api/v1/brands/{brand}/exports"), Some(body), error, move |answer| {
                                chosen.set(Vec::new());
                                let skipped = answer["skipped_unchanged"].as_array().map(Vec::len).unwrap_or(0);
                                outcome.set(Some(match (answer.get("detail"), skipped) {
                                    // The whole export was unchanged content already delivered.
                                    (Some(_), _) => format!("Nothing to do: {skipped} already delivered unchanged with this preset and destination (tick “deliver again” to force)."),
                                    (None, 0) => "Export requested; its progress is below.".to_owned(),
                                    (None, n) => format!("Export requested; {n} already delivered unchanged were left out. Progress is below."),
                                }));
                            });
                        },
                        "Export"
                    }
                }
            }
        }
    }
}

/// Defines (or redefines, as a new version) one of the brand's presets; a
/// brand's preset of a built-in's name takes its place.
#[component]
fn NewPreset(brand: String) -> Element {
    let mut open = use_signal(|| false);
    let mut channel = use_signal(String::new);
    let mut long_edge = use_signal(|| "2000".to_owned());
    let mut aspect = use_signal(|| "4:5".to_owned());
    let mut fit = use_signal(|| "crop_to_subject".to_owned());
    let mut background = use_signal(|| "keep".to_owned());
    let mut format = use_signal(|| "jpeg".to_owned());
    let mut quality = use_signal(|| "85".to_owned());
    let mut max_mb = use_signal(String::new);
    let mut naming = use_signal(|| "{sku}_{view}_{n}".to_owned());
    let error = use_signal(|| None::<String>);
    if !open() {
        return rsx! {
            div { style: "padding:0 16px 12px", button { id: "new-preset", onclick: move |_| open.set(true), "Define a preset" } }
        };
    }
    rsx! {
        div { style: "padding:0 16px 16px", id: "preset-form",
            ProblemNote { problem: error() }
            div { class: "form",
                label { "Channel name" input { r#type: "text", id: "preset-channel", initial_value: "{channel}", oninput: move |e| channel.set(e.value()) } }
                label { "Long edge (px)" input { r#type: "number", initial_value: "{long_edge}", oninput: move |e| long_edge.set(e.value()) } }
                label { "Aspect ratio"
                    select { onchange: move |e| aspect.set(e.value()),
                        for ratio in ["4:5", "1:1", "3:4", "2:3", "9:16", "16:9"] { option { key: "{ratio}", value: "{ratio}", selected: aspect() == ratio, "{ratio}" } }
                    }
                }
                label { "Fit"
                    select { onchange: move |e| fit.set(e.value()),
                        option { value: "crop_to_subject", selected: fit() == "crop_to_subject", "crop to the subject" }
                        option { value: "pad", selected: fit() == "pad", "pad" }
                    }
                }
                label { "Background"
                    select { onchange: move |e| background.set(e.value()),
                        option { value: "keep", selected: background() == "keep", "keep" }
                        option { value: "white", selected: background() == "white", "white" }
                    }
                }
                label { "Format"
                    select { onchange: move |e| format.set(e.value()),
                        for f in ["jpeg", "png", "webp"] { option { key: "{f}", value: "{f}", selected: format() == f, "{f}" } }
                    }
                }
                label { "Quality (1–100)" input { r#type: "number", initial_value: "{quality}", oninput: move |e| quality.set(e.value()) } }
                label { "Largest file (MB, optional)" input { r#type: "number", initial_value: "{max_mb}", oninput: move |e| max_mb.set(e.value()) } }
                label { "File names" input { r#type: "text", initial_value: "{naming}", oninput: move |e| naming.set(e.value()) } }
                div { class: "row",
                    button { class: "primary", id: "save-preset",
                        onclick: move |_| {
                            let mut spec = json!({
                                "long_edge_px": long_edge().trim().parse::<u32>().unwrap_or(0),
                                "aspect_ratio": aspect(),
                                "fit": fit(),
                                "background": {"kind": background()},
                                "format": format(),
                                "quality": quality().trim().parse::<u32>().unwrap_or(0),
                                "colour_space": "srgb",
                                "naming_pattern": naming().trim(),
                            });
                            if let Ok(megabytes) = max_mb().trim().parse::<f64>() {
                                spec["max_bytes"] = json!((megabytes * 1_000_000.0) as u64);
                            }
                            let name = channel().trim().to_owned();
                            if name.is_empty() {
                                let mut error = error;
                                error.set(Some("Name the channel first, e.g. lookbook-square.".to_owned()));
                                return;
                            }
                            write("PUT", format!("/api/v1/brands/{brand}/channel-presets/{}", encode(&name)), Some(json!({"spec": spec})), error, move |_| open.set(false));
                        },
                        "Save preset"
                    }
                    button { onclick: move |_| open.set(false), "Cancel" }
                }
            }
        }
    }
}
