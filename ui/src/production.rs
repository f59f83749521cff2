//! Shootings (create, looks, rules, the plan, launch and cancel) and the
//! generation queue (live progress per generation and step, failures with
//! their reasons, retry and cancel).

use dioxus::prelude::*;
use serde_json::{Value, json};

use crate::api::{items, text};
use crate::app::{Link, Loaded, Nav, Route, loaded, rows, use_get, write};
use crate::widgets::{Badge, ListStatus, ProblemNote, Progress, clear_inputs, money, short_time};

/// The shot types a look can be generated in.
const SHOT_TYPES: &[&str] = &["front", "back", "side", "full-body", "detail", "lifestyle"];

#[component]
pub(crate) fn Shootings(brand: String) -> Element {
    let list_brand = brand.clone();
    let shootings = use_get(move || Some(format!("/api/v1/brands/{list_brand}/shootings?limit=100")));
    let shootings = loaded(&shootings);
    let list: Vec<Value> = rows(&shootings).into_iter().filter(|s| s["status"] != "archived").collect();
    rsx! {
        div { class: "page-head", h1 { "Shootings" } }
        NewShooting { brand: brand.clone() }
        ListStatus { loaded: shootings.counted(list.len()), title: "No shootings yet", hint: "Create one above: name it, pick its default subject, style and shot types; then add looks." }
        if !list.is_empty() {
            div { class: "card table-card",
                table { id: "shootings",
                    thead { tr { th { "Shooting" } th { "Status" } th { "Variants per shot" } th { "Launches" } th {} } }
                    tbody {
                        for shooting in list {
                            tr { key: "{text(&shooting, \"shooting_id\")}",
                                td { Link { route: Route::Shooting { brand: brand.clone(), shooting: text(&shooting, "shooting_id") }, "{text(&shooting, \"name\")}" } }
                                td { Badge { status: text(&shooting, "status") } }
                                td { "{shooting[\"rules\"][\"variants_per_shot\"]}" }
                                td { "{shooting[\"launch_number\"]}" }
                                td { Link { route: Route::Review { brand: brand.clone(), shooting: text(&shooting, "shooting_id") }, "Review →" } }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Pickers of a subject and a style of the brand (active ones).
#[component]
fn SubjectStylePickers(
    brand: String,
    subject: Signal<String>,
    style: Signal<String>,
    allow_default: bool,
) -> Element {
    let (subjects_brand, styles_brand) = (brand.clone(), brand.clone());
    let subjects = use_get(move || Some(format!("/api/v1/brands/{subjects_brand}/subjects?limit=100")));
    let styles = use_get(move || Some(format!("/api/v1/brands/{styles_brand}/styles?limit=100")));
    let subjects: Vec<Value> =
        rows(&loaded(&subjects)).into_iter().filter(|s| s["retired"] != true).collect();
    let styles: Vec<Value> = rows(&loaded(&styles)).into_iter().filter(|s| s["archived"] != true).collect();
    let mut subject = subject;
    let mut style = style;
    let none = if allow_default { "The shooting's default" } else { "Choose…" };
    rsx! {
        label { "Subject"
            select { class: "pick-subject", onchange: move |e| subject.set(e.value()),
                option { value: "", selected: subject().is_empty(), "{none}" }
                for s in subjects {
                    option { key: "{text(&s, \"subject_id\")}", value: "{text(&s, \"subject_id\")}", selected: subject() == text(&s, "subject_id"), "{text(&s, \"name\")}" }
                }
            }
        }
        label { "Style"
            select { class: "pick-style", onchange: move |e| style.set(e.value()),
                option { value: "", selected: style().is_empty(), "{none}" }
                for s in styles {
                    option { key: "{text(&s, \"style_id\")}", value: "{text(&s, \"style_id\")}", selected: style() == text(&s, "style_id"), "{text(&s, \"name\")}" }
                }
            }
        }
    }
}

/// Check boxes of shot types.
#[component]
fn ShotTypePicker(chosen: Signal<Vec<String>>) -> Element {
    let mut chosen = chosen;
    rsx! {
        div { class: "checks",
            for shot in SHOT_TYPES {
                label { key: "{shot}",
                    input { r#type: "checkbox", class: "shot-{shot}", checked: chosen.read().iter().any(|s| s == shot),
                        onchange: move |e| {
                            let mut list = chosen.write();
                            list.retain(|s| s != shot);
                            if e.checked() { list.push((*shot).to_owned()); }
                        }
                    }
                    "{shot}"
                }
            }
        }
    }
}

#[component]
fn NewShooting(brand: String) -> Element {
    let mut name = use_signal(String::new);
    let subject = use_signal(String::new);
    let style = use_signal(String::new);
    let shot_types = use_signal(|| vec!["front".to_owned()]);
    let mut aspect = use_signal(|| "4:5".to_owned());
    let mut long_edge = use_signal(|| "1600".to_owned());
    let mut format = use_signal(|| "jpeg".to_owned());
    let error = use_signal(|| None::<String>);
    let nav = use_context::<Nav>();
    let create_brand = brand.clone();
    rsx! {
        div { class: "card", id: "new-shooting",
            h2 { "New shooting" }
            ProblemNote { problem: error() }
            div { class: "form",
                label { "Name" input { r#type: "text", id: "shooting-name", initial_value: "{name}", oninput: move |e| name.set(e.value()) } }
                SubjectStylePickers { brand: brand.clone(), subject, style, allow_default: false }
                label { "Aspect ratio"
                    select { onchange: move |e| aspect.set(e.value()),
                        for ratio in ["4:5", "1:1", "3:4", "2:3", "9:16", "16:9"] { option { key: "{ratio}", value: "{ratio}", selected: aspect() == ratio, "{ratio}" } }
                    }
                }
                label { "Long edge (px)" input { r#type: "number", initial_value: "{long_edge}", oninput: move |e| long_edge.set(e.value()) } }
                label { "Format"
                    select { onchange: move |e| format.set(e.value()),
                        for f in ["jpeg", "png", "webp"] { option { key: "{f}", value: "{f}", selected: format() == f, "{f}" } }
                    }
                }
                div { class: "wide", label { "Shot types" } ShotTypePicker { chosen: shot_types } }
                div { class: "row",
                    button { class: "primary", id: "create-shooting",
                        onclick: move |_| {
                            let brand = create_brand.clone();
                            let mut defaults = json!({
                                "shot_types": shot_types(),
                                "output": {"aspect_ratio": aspect(), "long_edge_px": long_edge().trim().parse::<u32>().unwrap_or(0), "format": format()},
                            });
                            if !subject().is_empty() { defaults["subject"] = json!(subject()); }
                            if !style().is_empty() { defaults["style"] = json!(style()); }
                            let body = json!({"name": name().trim(), "defaults": defaults});
                            write("POST", format!("/api/v1/brands/{brand}/shootings"), Some(body), error, move |answer| {
                                nav.go(Route::Shooting { brand, shooting: text(&answer, "id") });
                            });
                        },
                        "Create shooting"
                    }
                }
            }
        }
    }
}

#[component]
pub(crate) fn Shooting(brand: String, shooting: String) -> Element {
    let (b1, s1) = (brand.clone(), shooting.clone());
    let detail = use_get(move || Some(format!("/api/v1/brands/{b1}/shootings/{s1}")));
    let (b2, s2) = (brand.clone(), shooting.clone());
    let looks = use_get(move || Some(format!("/api/v1/brands/{b2}/shootings/{s2}/looks?limit=100")));
    let b4 = brand.clone();
    let catalog = use_get(move || Some(format!("/api/v1/brands/{b4}/products?limit=200")));
    let product_names: std::collections::HashMap<String, String> = rows(&loaded(&catalog))
        .iter()
        .map(|p| (text(p, "product_id"), format!("{} ({})", text(p, "name"), text(p, "sku"))))
        .collect();
    let names_of = |look: &Value| {
        let ids = look["products"].as_array().cloned().unwrap_or_default();
        let names: Vec<String> = ids
            .iter()
            .filter_map(Value::as_str)
            .map(|id| product_names.get(id).cloned().unwrap_or_else(|| id.to_owned()))
            .collect();
        names.join(", ")
    };
    let b3 = brand.clone();
    let history =
        use_get(move || Some(format!("/api/v1/brands/{b3}/generations?status=completed&limit=200")));
    let error = use_signal(|| None::<String>);
    let detail = match loaded(&detail) {
        Loaded::Ready(detail) => detail,
        Loaded::Failed(message) => return rsx! { ProblemNote { problem: Some(message) } },
        Loaded::Waiting => return rsx! { p { class: "muted", "Loading the shooting…" } },
    };
    let looks: Vec<Value> = rows(&loaded(&looks)).into_iter().filter(|l| l["removed"] != true).collect();
    let status = text(&detail, "status");
    let draft = status == "draft";
    let variants = detail["rules"]["variants_per_shot"].as_u64().unwrap_or(4);
    let default_shots = detail["defaults"]["shot_types"].as_array().map(Vec::len).unwrap_or(0) as u64;
    let generations: u64 = looks
        .iter()
        .map(|l| l["shot_types"].as_array().map(|s| s.len() as u64).unwrap_or(default_shots))
        .sum();
    let predictions = generations * variants;
    // The estimate uses what this brand's completed generations cost so far.
    let history = rows(&loaded(&history));
    let estimate = match history.len() as i64 {
        0 => "no cost history yet (the offline local provider costs nothing)".to_owned(),
        completed => {
            let spent: i64 = history.iter().map(|g| g["cost_micros"].as_i64().unwrap_or(0)).sum();
            format!("≈ {} (at this brand's average so far)", money(spent / completed * generations as i64))
        }
    };
    let (launch_brand, launch_id) = (brand.clone(), shooting.clone());
    let (cancel_brand, cancel_id) = (brand.clone(), shooting.clone());
    rsx! {
        div { class: "page-head",
            Link { route: Route::Shootings { brand: brand.clone() }, "← Shootings" }
            h1 { "{text(&detail, \"name\")}" }
            Badge { status: status.clone() }
            span { class: "grow" }
            Link { route: Route::Review { brand: brand.clone(), shooting: shooting.clone() }, class: "button", "Review" }
        }
        ProblemNote { problem: error() }
        div { class: "card", id: "plan",
            h2 { "Plan" }
            div { class: "row", style: "gap:32px",
                div { class: "stat", b { id: "plan-looks", "{looks.len()}" } span { class: "muted small", "looks" } }
                div { class: "stat", b { id: "plan-generations", "{generations}" } span { class: "muted small", "generations (look × shot type)" } }
                div { class: "stat", b { id: "plan-predictions", "{predictions}" } span { class: "muted small", "predictions ({variants} variants each)" } }
                div { class: "stat", b { "{estimate}" } span { class: "muted small", "estimated cost" } }
                span { class: "grow" }
                if draft {
                    button { class: "primary", id: "launch", disabled: looks.is_empty(),
                        onclick: move |_| write("POST", format!("/api/v1/brands/{launch_brand}/shootings/{launch_id}/launch"), None, error, |_| {}),
                        "Launch"
                    }
                } else if status == "launched" {
                    button { class: "danger", id: "cancel-launch",
                        onclick: move |_| write("POST", format!("/api/v1/brands/{cancel_brand}/shootings/{cancel_id}/cancel"), None, error, |_| {}),
                        "Cancel the launch"
                    }
                }
            }
            if looks.is_empty() {
                p { class: "muted", style: "margin-top:12px", "Add at least one look below to launch." }
            }
        }
        if draft {
            Rules { brand: brand.clone(), shooting: shooting.clone(), rules: detail["rules"].clone() }
        }
        div { class: "card table-card",
            div { style: "padding:16px 16px 0", h2 { "Looks" } }
            if looks.is_empty() {
                p { class: "muted", style: "padding:0 16px 16px", "No looks yet. A look is one outfit: pick its products, and optionally its own subject, style and shot types." }
            } else {
                table { id: "looks",
                    thead { tr { th { "Look" } th { "Products" } th { "Subject" } th { "Style" } th { "Shot types" } } }
                    tbody {
                        for look in looks.iter() {
                            tr { key: "{text(look, \"look_id\")}",
                                td { "{text(look, \"name\")}" }
                                td { class: "small", "{names_of(look)}" }
                                td { class: "small", "{or_default(&text(look, \"subject_id\"))}" }
                                td { class: "small", "{or_default(&text(look, \"style_id\"))}" }
                                td { class: "small", "{or_default(&join(&look[\"shot_types\"]))}" }
                            }
                        }
                    }
                }
            }
        }
        if draft {
            NewLook { brand: brand.clone(), shooting: shooting.clone() }
        }
    }
}

fn join(list: &Value) -> String {
    list.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", "))
        .unwrap_or_default()
}

fn or_default(value: &str) -> String {
    if value.is_empty() { "shooting default".to_owned() } else { value.to_owned() }
}

#[component]
fn Rules(brand: String, shooting: String, rules: Value) -> Element {
    let mut variants = use_signal(|| rules["variants_per_shot"].as_u64().unwrap_or(4).to_string());
    let mut checks =
        use_signal(|| rules["quality_gates"]["require_automatic_checks"].as_bool().unwrap_or(true));
    let mut min_edge = use_signal(|| {
        rules["quality_gates"]["min_long_edge_px"].as_u64().map(|v| v.to_string()).unwrap_or_default()
    });
    let error = use_signal(|| None::<String>);
    let mut saved = use_signal(|| false);
    rsx! {
        div { class: "card", id: "rules",
            h2 { "Rules" }
            ProblemNote { problem: error() }
            div { class: "form",
                label { "Variants per shot (1–8)" input { r#type: "number", id: "variants", min: "1", max: "8", initial_value: "{variants}", oninput: move |e| variants.set(e.value()) } }
                label { "Minimum long edge (px, optional)" input { r#type: "number", initial_value: "{min_edge}", oninput: move |e| min_edge.set(e.value()) } }
                div { class: "checks",
                    label { input { r#type: "checkbox", checked: checks(), onchange: move |e| checks.set(e.checked()) } "Require the automatic quality checks" }
                }
                div { class: "row",
                    button { id: "save-rules",
                        onclick: move |_| {
                            let mut gates = json!({"require_automatic_checks": checks()});
                            if let Ok(edge) = min_edge().trim().parse::<u32>() { gates["min_long_edge_px"] = json!(edge); }
                            let count = variants().trim().parse::<u32>().unwrap_or(0);
                            let body = json!({"rules": {"variants_per_shot": count, "quality_gates": gates}});
                            write("PUT", format!("/api/v1/brands/{brand}/shootings/{shooting}/rules"), Some(body), error, move |_| saved.set(true));
                        },
                        "Save rules"
                    }
                    if saved() { span { class: "badge ok", "saved" } }
                }
            }
        }
    }
}

#[component]
fn NewLook(brand: String, shooting: String) -> Element {
    let mut name = use_signal(String::new);
    let mut products = use_signal(Vec::<String>::new);
    let subject = use_signal(String::new);
    let style = use_signal(String::new);
    let shot_types = use_signal(Vec::<String>::new);
    let mut guidelines = use_signal(String::new);
    let error = use_signal(|| None::<String>);
    let catalog_brand = brand.clone();
    let catalog =
        use_get(move || Some(format!("/api/v1/brands/{catalog_brand}/products?limit=200&archived=false")));
    let catalog = rows(&loaded(&catalog));
    let (add_brand, add_shooting) = (brand.clone(), shooting.clone());
    rsx! {
        div { class: "card", id: "new-look",
            h2 { "Add a look" }
            ProblemNote { problem: error() }
            div { class: "form",
                label { "Name" input { r#type: "text", id: "look-name", initial_value: "{name}", oninput: move |e| name.set(e.value()) } }
                SubjectStylePickers { brand: brand.clone(), subject, style, allow_default: true }
                div { class: "wide",
                    label { "Products (the first is the main one)" }
                    if catalog.is_empty() {
                        p { class: "muted small", "The catalog has no products yet; add them under Catalog first." }
                    }
                    div { class: "checks",
                        for product in catalog {
                            label { key: "{text(&product, \"product_id\")}",
                                input { r#type: "checkbox", class: "look-product", value: "{text(&product, \"product_id\")}",
                                    checked: products.read().contains(&text(&product, "product_id")),
                                    onchange: {
                                        let id = text(&product, "product_id");
                                        move |e: FormEvent| {
                                            let mut list = products.write();
                                            list.retain(|p| *p != id);
                                            if e.checked() { list.push(id.clone()); }
                                        }
                                    }
                                }
                                "{text(&product, \"name\")} ({text(&product, \"sku\")})"
                            }
                        }
                    }
                }
                div { class: "wide", label { "Own shot types (none checked: the shooting's defaults)" } ShotTypePicker { chosen: shot_types } }
                label { class: "wide", "Guidelines: do (one per line)" textarea { initial_value: "{guidelines}", oninput: move |e| guidelines.set(e.value()) } }
                div { class: "row",
                    button { class: "primary", id: "add-look",
                        onclick: move |_| {
                            let dos: Vec<String> = guidelines().lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect();
                            let mut body = json!({"name": name().trim(), "products": products(), "guidelines": {"dos": dos, "donts": []}});
                            if !subject().is_empty() { body["subject"] = json!(subject()); }
                            if !style().is_empty() { body["style"] = json!(style()); }
                            if !shot_types().is_empty() { body["shot_types"] = json!(shot_types()); }
                            write("POST", format!("/api/v1/brands/{add_brand}/shootings/{add_shooting}/looks"), Some(body), error, move |_| {
                                name.set(String::new());
                                products.set(Vec::new());
                                guidelines.set(String::new());
                                clear_inputs("#new-look");
                            });
                        },
                        "Add look"
                    }
                }
            }
        }
    }
}

#[component]
pub(crate) fn Queue(brand: String) -> Element {
    let mut status = use_signal(String::new);
    let list_brand = brand.clone();
    let generations = use_get(move || {
        let filter = if status().is_empty() { String::new() } else { format!("&status={}", status()) };
        Some(format!("/api/v1/brands/{list_brand}/generations?limit=100{filter}"))
    });
    let generations = loaded(&generations);
    let list = rows(&generations);
    rsx! {
        div { class: "page-head",
            h1 { "Generation queue" }
            span { class: "grow" }
            select { id: "queue-status", onchange: move |e| status.set(e.value()),
                option { value: "", "Every status" }
                for s in ["requested", "running", "completed", "failed", "cancelled"] { option { key: "{s}", value: "{s}", "{s}" } }
            }
        }
        ListStatus { loaded: generations.counted(list.len()), title: "Nothing in the queue", hint: "Launch a shooting; its generations appear here and progress live." }
        if !list.is_empty() {
            div { class: "card table-card",
                table { id: "queue",
                    thead { tr { th { "Generation" } th { "Shot" } th { "Status" } th { "Steps" } th { "Cost" } th { "Updated" } th {} } }
                    tbody {
                        for generation in list {
                            GenerationRow { key: "{text(&generation, \"generation_id\")}", brand: brand.clone(), generation }
                        }
                    }
                }
            }
        }
    }
}

#[component]
fn GenerationRow(brand: String, generation: Value) -> Element {
    let id = text(&generation, "generation_id");
    let status = text(&generation, "status");
    let done = generation["steps_completed"].as_u64().unwrap_or(0);
    let total = generation["request"]["workflow"]["steps"]
        .as_array()
        .map(|s| s.len() as u64)
        .unwrap_or(0)
        .max(done)
        .max(1);
    let steps = items(&json!({"items": generation["steps"].clone()}));
    let error = use_signal(|| None::<String>);
    let (retry_brand, retry_id) = (brand.clone(), id.clone());
    let (cancel_brand, cancel_id) = (brand.clone(), id.clone());
    let retryable = status == "failed" && generation["retryable"] != false;
    let cancellable = status == "requested" || status == "running";
    let revision = generation["request"]["revision"]["parent_prediction_id"].as_str().map(str::to_owned);
    rsx! {
        tr { class: "generation-row", "data-status": "{status}",
            td {
                div { class: "small", "{text(&generation, \"look_id\")}" }
                if let Some(parent) = revision { div { class: "revision-of", "revision of {parent}" } }
            }
            td { "{text(&generation, \"shot_type\")} × {generation[\"variants\"]}" }
            td {
                Badge { status: status.clone() }
                if let Some(reason) = generation["failure_reason"].as_str() { div { class: "small", style: "color:var(--bad)", "{reason}" } }
                ProblemNote { problem: error() }
            }
            td { style: "min-width:180px",
                Progress { done, total }
                div { class: "small muted", title: "{steps.iter().map(|s| text(s, \"step\")).collect::<Vec<_>>().join(\" → \")}",
                    "{done} of {total} steps"
                    if let Some(last) = steps.last() { " · last: {text(last, \"step\")}" }
                }
            }
            td { "{money(generation[\"cost_micros\"].as_i64().unwrap_or(0))}" }
            td { class: "small", "{short_time(&text(&generation, \"updated_at\"))}" }
            td {
                if retryable {
                    button { class: "small", onclick: move |_| write("POST", format!("/api/v1/brands/{retry_brand}/generations/{retry_id}/retry"), None, error, |_| {}), "Retry" }
                }
                if cancellable {
                    button { class: "small danger", onclick: move |_| write("POST", format!("/api/v1/brands/{cancel_brand}/generations/{cancel_id}/cancel"), None, error, |_| {}), "Cancel" }
                }
            }
        }
    }
}
