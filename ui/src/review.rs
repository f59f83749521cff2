//! Review: a gallery per look with the quality figures; compare two to four
//! predictions side by side at one zoom; approve, reject with a reason,
//! request a revision with a comment and regions drawn on the image; bulk
//! approve; keyboard shortcuts (j/k or arrows move, a approve, r reject,
//! v revise, x select, c compare). A revision's predictions sit right after
//! their parent.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use dioxus::prelude::*;
use serde_json::{Value, json};

use crate::api::{Client, items, text};
use crate::app::{Link, Refresh, Route, loaded, rows, use_get, use_loader, write};
use crate::widgets::{Badge, EmptyState, ProblemNote, browser_channel};

/// What the reviewer is doing to one prediction.
#[derive(Debug, Clone, PartialEq)]
enum Dialog {
    Reject(Value),
    Revise(Value),
}

/// A prediction in review order, with the prediction it revises (if any).
type Placed = (Value, Option<String>);

/// Orders a look's predictions: originals by shot type and variant, each
/// followed by the predictions of its revisions (recursively).
fn ordered(predictions: Vec<Value>, parent_of_generation: &HashMap<String, String>) -> Vec<Placed> {
    let mut children: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let mut roots = Vec::new();
    for prediction in predictions {
        match parent_of_generation.get(&text(&prediction, "generation_id")) {
            Some(parent) => children.entry(parent.clone()).or_default().push(prediction),
            None => roots.push(prediction),
        }
    }
    let key = |p: &Value| (text(p, "shot_type"), p["variant_index"].as_u64().unwrap_or(0));
    roots.sort_by_key(key);
    // A parent that is not among this look's predictions: show the revision anyway.
    let known: std::collections::HashSet<String> = roots.iter().map(|p| text(p, "prediction_id")).collect();
    fn push(
        out: &mut Vec<Placed>,
        prediction: Value,
        parent: Option<String>,
        children: &mut BTreeMap<String, Vec<Value>>,
    ) {
        let id = text(&prediction, "prediction_id");
        out.push((prediction, parent));
        if let Some(mut revisions) = children.remove(&id) {
            revisions.sort_by_key(|p| p["variant_index"].as_u64().unwrap_or(0));
            for revision in revisions {
                push(out, revision, Some(id.clone()), children);
            }
        }
    }
    let mut out = Vec::new();
    for root in roots {
        push(&mut out, root, None, &mut children);
    }
    let orphans: Vec<(String, Vec<Value>)> =
        children.into_iter().filter(|(p, _)| !known.contains(p)).collect();
    for (parent, revisions) in orphans {
        for revision in revisions {
            out.push((revision, Some(parent.clone())));
        }
    }
    out
}

#[component]
pub(crate) fn Review(brand: String, shooting: String) -> Element {
    let (b1, s1) = (brand.clone(), shooting.clone());
    let detail = use_get(move || Some(format!("/api/v1/brands/{b1}/shootings/{s1}")));
    let (b2, s2) = (brand.clone(), shooting.clone());
    let looks_resource = use_get(move || Some(format!("/api/v1/brands/{b2}/shootings/{s2}/looks?limit=100")));
    let (b3, s3) = (brand.clone(), shooting.clone());
    let generations =
        use_get(move || Some(format!("/api/v1/brands/{b3}/generations?shooting={s3}&limit=200")));
    let mut state_filter = use_signal(String::new);
    let mut quality_filter = use_signal(String::new);
    let mut selected = use_signal(Vec::<String>::new);
    let mut comparing = use_signal(|| false);
    let mut dialog = use_signal(|| None::<Dialog>);
    let mut focus = use_signal(|| 0usize);
    let error = use_signal(|| None::<String>);
    let looks: Vec<Value> =
        rows(&loaded(&looks_resource)).into_iter().filter(|l| l["removed"] != true).collect();
    let generations = rows(&loaded(&generations));
    let parent_of_generation: HashMap<String, String> = generations
        .iter()
        .filter_map(|g| {
            let parent = g["request"]["revision"]["parent_prediction_id"].as_str()?;
            Some((text(g, "generation_id"), parent.to_owned()))
        })
        .collect();
    let running =
        generations.iter().filter(|g| g["status"] == "requested" || g["status"] == "running").count();

    // Every prediction of the shooting, look by look (filtered on the server).
    let predictions_brand = brand.clone();
    let predictions = use_loader(
        move || {
            let look_ids: Vec<String> = rows(&loaded(&looks_resource))
                .iter()
                .filter(|l| l["removed"] != true)
                .map(|l| text(l, "look_id"))
                .collect();
            let mut filter = String::new();
            if !state_filter().is_empty() {
                filter.push_str(&format!("&review_state={}", state_filter()));
            }
            if !quality_filter().is_empty() {
                filter.push_str(&format!("&quality={}", quality_filter()));
            }
            (look_ids, filter)
        },
        move |client, (look_ids, filter)| {
            let brand = predictions_brand.clone();
            async move {
                let mut all = Vec::new();
                for look in look_ids {
                    let path = format!("/api/v1/brands/{brand}/predictions?look={look}&limit=200{filter}");
                    all.extend(items(&client.get(&path).await?));
                }
                Ok::<_, crate::api::Problem>(all)
            }
        },
    );
    let (everything, predictions_problem) = match &*predictions.read() {
        Some(Ok(all)) => (all.clone(), None),
        Some(Err(problem)) => (Vec::new(), Some(problem.message.clone())),
        None => (Vec::new(), None),
    };
    let client = use_context::<Client>();
    let refresh = use_context::<Refresh>();
    let mut by_look: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for prediction in everything {
        by_look.entry(text(&prediction, "look_id")).or_default().push(prediction);
    }
    let galleries: Vec<(Value, Vec<Placed>)> = looks
        .iter()
        .map(|look| {
            let predictions = by_look.remove(&text(look, "look_id")).unwrap_or_default();
            (look.clone(), ordered(predictions, &parent_of_generation))
        })
        .collect();
    let flat: Vec<Value> = galleries.iter().flat_map(|(_, ps)| ps.iter().map(|(p, _)| p.clone())).collect();
    let count = flat.len();
    let focused = flat.get(focus().min(count.saturating_sub(1))).cloned();

    // Keyboard shortcuts act on the focused prediction of what is on screen
    // now (kept in a cell each render; the key listener outlives renders).
    let on_screen = use_hook(|| Rc::new(RefCell::new(Vec::<Value>::new())));
    *on_screen.borrow_mut() = flat.clone();
    let key_brand = brand.clone();
    use_future(move || {
        let on_screen = on_screen.clone();
        let brand = key_brand.clone();
        async move {
            let mut pressed = browser_channel("keys");
            while let Ok(key) = pressed.recv::<String>().await {
                let flat = on_screen.borrow().clone();
                let total = flat.len();
                if key == "Escape" {
                    dialog.set(None);
                    comparing.set(false);
                }
                if total == 0 || dialog.peek().is_some() {
                    continue;
                }
                let index = (*focus.peek()).min(total - 1);
                let current = flat[index].clone();
                let id = text(&current, "prediction_id");
                match key.as_str() {
                    "j" | "ArrowRight" => focus.set((index + 1).min(total - 1)),
                    "k" | "ArrowLeft" => focus.set(index.saturating_sub(1)),
                    "a" => write(
                        "POST",
                        format!("/api/v1/brands/{brand}/predictions/{id}/approve"),
                        None,
                        error,
                        |_| {},
                    ),
                    "r" => dialog.set(Some(Dialog::Reject(current))),
                    "v" => dialog.set(Some(Dialog::Revise(current))),
                    "x" => {
                        let mut list = selected.write();
                        if let Some(at) = list.iter().position(|p| *p == id) {
                            list.remove(at);
                        } else if list.len() < 4 {
                            list.push(id);
                        }
                    }
                    "c" => comparing.set(selected.peek().len() >= 2),
                    _ => {}
                }
            }
        }
    });

    let detail = loaded(&detail).value();
    let chosen: Vec<Value> = selected
        .read()
        .iter()
        .filter_map(|id| flat.iter().find(|p| text(p, "prediction_id") == *id).cloned())
        .collect();
    let bulk_brand = brand.clone();
    rsx! {
        div { class: "page-head",
            Link { route: Route::Shooting { brand: brand.clone(), shooting: shooting.clone() }, "← {text(&detail, \"name\")}" }
            h1 { "Review" }
            if running > 0 { span { class: "badge running", id: "generations-running", "{running} generation(s) running" } }
            span { class: "grow" }
            select { id: "review-filter", onchange: move |e| state_filter.set(e.value()),
                option { value: "", "Every state" }
                for s in ["pending", "approved", "rejected", "revision_requested"] { option { key: "{s}", value: "{s}", "{s.replace('_', \" \")}" } }
            }
            select { id: "quality-filter", onchange: move |e| quality_filter.set(e.value()),
                option { value: "", "Any quality" }
                option { value: "flagged", "Flagged by the checks" }
                option { value: "passed", "Passed the checks" }
            }
        }
        ProblemNote { problem: error() }
        ProblemNote { problem: predictions_problem }
        div { class: "card row", style: "position:sticky;top:-24px;z-index:5",
            span { class: "small muted",
                span { class: "kbd", "j" } "/" span { class: "kbd", "k" } " move · "
                span { class: "kbd", "a" } " approve · " span { class: "kbd", "r" } " reject · "
                span { class: "kbd", "v" } " revise · " span { class: "kbd", "x" } " select · " span { class: "kbd", "c" } " compare"
            }
            span { class: "grow" }
            span { class: "small", id: "selected-count", "{chosen.len()} selected" }
            button { id: "compare", disabled: chosen.len() < 2, onclick: move |_| comparing.set(true), "Compare" }
            button { class: "approve", id: "bulk-approve", disabled: chosen.is_empty(),
                onclick: move |_| {
                    let ids = selected();
                    let client = client.clone();
                    let brand = bulk_brand.clone();
                    let mut error = error;
                    spawn(async move {
                        let mut problems = Vec::new();
                        for id in &ids {
                            if let Err(problem) = client.send("POST", &format!("/api/v1/brands/{brand}/predictions/{id}/approve"), None).await {
                                problems.push(format!("{id}: {}", problem.message));
                            }
                        }
                        error.set((!problems.is_empty()).then(|| problems.join("; ")));
                        selected.set(Vec::new());
                        refresh.bump();
                    });
                },
                "Approve selected"
            }
            if !chosen.is_empty() { button { onclick: move |_| selected.set(Vec::new()), "Clear" } }
        }
        if comparing() && chosen.len() >= 2 {
            Compare { brand: brand.clone(), predictions: chosen.clone(), dialog, error, on_close: move |_| comparing.set(false) }
        }
        if galleries.iter().all(|(_, ps)| ps.is_empty()) {
            if looks.is_empty() {
                EmptyState { title: "This shooting has no looks", hint: "Add looks to the shooting and launch it; its predictions are reviewed here." }
            } else if running > 0 {
                EmptyState { title: "Generating…", hint: "Predictions appear here as the generations produce them." }
            } else {
                EmptyState { title: "Nothing to review", hint: "Launch the shooting, or change the filters above." }
            }
        }
        for (look, predictions) in galleries {
            if !predictions.is_empty() {
                div { key: "{text(&look, \"look_id\")}", class: "card look-gallery",
                    h2 { "{text(&look, \"name\")}" }
                    div { class: "grid",
                        for (prediction, parent) in predictions {
                            PredictionTile {
                                key: "{text(&prediction, \"prediction_id\")}",
                                brand: brand.clone(),
                                focused: focused.as_ref().is_some_and(|f| f["prediction_id"] == prediction["prediction_id"]),
                                selected: selected.read().contains(&text(&prediction, "prediction_id")),
                                parent,
                                prediction: prediction.clone(),
                                dialog,
                                error,
                                on_select: move |id: String| {
                                    let mut list = selected.write();
                                    if let Some(at) = list.iter().position(|p| *p == id) { list.remove(at); } else if list.len() < 4 { list.push(id); }
                                },
                                on_focus: {
                                    let id = text(&prediction, "prediction_id");
                                    let flat = flat.clone();
                                    move |_| if let Some(at) = flat.iter().position(|p| text(p, "prediction_id") == id) { focus.set(at) }
                                },
                            }
                        }
                    }
                }
            }
        }
        match dialog() {
            Some(Dialog::Reject(prediction)) => rsx! { RejectDialog { brand: brand.clone(), prediction, dialog } },
            Some(Dialog::Revise(prediction)) => rsx! { ReviseDialog { brand: brand.clone(), prediction, dialog } },
            None => rsx! {},
        }
    }
}

/// The quality figures of a prediction: each check, flagged ones first.
#[component]
fn Quality(quality: Value) -> Element {
    let mut checks = quality["checks"].as_array().cloned().unwrap_or_default();
    checks.sort_by_key(|c| c["passed"] == true);
    rsx! {
        div { class: "quality",
            for check in checks {
                span { key: "{text(&check, \"check\")}", class: if check["passed"] == true { "" } else { "failed-check" },
                    if check["passed"] == true { "✓ " } else { "⚑ " }
                    "{text(&check, \"check\").replace('_', \" \")}: {figure(&check[\"measured\"])} (limit {figure(&check[\"threshold\"])})"
                }
            }
        }
    }
}

fn figure(value: &Value) -> String {
    match value.as_f64() {
        Some(v) if v.fract() == 0.0 => format!("{v:.0}"),
        Some(v) => format!("{v:.2}"),
        None => "—".to_owned(),
    }
}

#[component]
fn ReviewActions(
    brand: String,
    prediction: Value,
    dialog: Signal<Option<Dialog>>,
    error: Signal<Option<String>>,
) -> Element {
    let id = text(&prediction, "prediction_id");
    let state = text(&prediction, "review_state");
    let mut dialog = dialog;
    let (reject_target, revise_target) = (prediction.clone(), prediction.clone());
    rsx! {
        div { class: "row", style: "gap:6px",
            if state != "approved" {
                button { class: "small approve", onclick: move |_| write("POST", format!("/api/v1/brands/{brand}/predictions/{id}/approve"), None, error, |_| {}), "Approve" }
            }
            if state != "rejected" {
                button { class: "small danger", onclick: move |_| dialog.set(Some(Dialog::Reject(reject_target.clone()))), "Reject" }
            }
            button { class: "small", onclick: move |_| dialog.set(Some(Dialog::Revise(revise_target.clone()))), "Revise" }
        }
    }
}

#[component]
fn PredictionTile(
    brand: String,
    prediction: Value,
    parent: Option<String>,
    focused: bool,
    selected: bool,
    dialog: Signal<Option<Dialog>>,
    error: Signal<Option<String>>,
    on_select: EventHandler<String>,
    on_focus: EventHandler<()>,
) -> Element {
    let id = text(&prediction, "prediction_id");
    let state = text(&prediction, "review_state");
    let flagged = prediction["quality_passed"] == false;
    let class = format!(
        "tile prediction{}{}",
        if selected { " selected" } else { "" },
        if focused { " focused" } else { "" }
    );
    let select_id = id.clone();
    rsx! {
        div { class: "{class}", "data-prediction": "{id}", "data-state": "{state}", "data-revision-of": parent.clone().unwrap_or_default(),
            onclick: move |_| on_focus.call(()),
            div { class: "frame",
                img { src: "{crate::api::sized(&text(&prediction, \"url\"), 480)}", alt: "variant {prediction[\"variant_index\"]}", loading: "lazy" }
            }
            div { class: "body",
                div { class: "row", style: "gap:6px",
                    input { r#type: "checkbox", class: "select-prediction", checked: selected, title: "Select to compare or approve in bulk",
                        onclick: move |e| { e.stop_propagation(); on_select.call(select_id.clone()); } }
                    Badge { status: state.clone() }
                    if flagged { span { class: "badge flagged", "flagged" } }
                }
                span { class: "small muted", "{text(&prediction, \"shot_type\")} · variant {prediction[\"variant_index\"]}" }
                if let Some(parent) = parent.as_ref() { span { class: "revision-of", title: "{parent}", "↳ revision of …{&parent[parent.len().saturating_sub(6)..]}" } }
                if let Some(reason) = prediction["review_reason"].as_str() { span { class: "small", "“{reason}”" } }
                Quality { quality: prediction["quality"].clone() }
                ReviewActions { brand, prediction: prediction.clone(), dialog, error }
            }
        }
    }
}

/// Two to four predictions side by side at one zoom.
#[component]
fn Compare(
    brand: String,
    predictions: Vec<Value>,
    dialog: Signal<Option<Dialog>>,
    error: Signal<Option<String>>,
    on_close: EventHandler<()>,
) -> Element {
    let mut zoom = use_signal(|| 420u32);
    let columns = predictions.len();
    rsx! {
        div { class: "card", id: "compare-view",
            div { class: "row", style: "margin-bottom:12px",
                h2 { style: "margin:0", "Compare {columns}" }
                span { class: "grow" }
                label { style: "flex-direction:row;align-items:center;gap:8px", "Zoom"
                    input { r#type: "range", id: "compare-zoom", min: "240", max: "900", step: "20", initial_value: "{zoom}", oninput: move |e| zoom.set(e.value().parse().unwrap_or(420)) }
                }
                button { onclick: move |_| on_close.call(()), "Close" }
            }
            div { class: "compare", style: "grid-template-columns:repeat({columns}, 1fr);--zoom:{zoom}",
                for prediction in predictions {
                    div { key: "{text(&prediction, \"prediction_id\")}", class: "tile compared", "data-prediction": "{text(&prediction, \"prediction_id\")}",
                        div { class: "frame", style: "overflow:auto",
                            img { src: "{crate::api::sized(&text(&prediction, \"url\"), 960)}", alt: "variant" }
                        }
                        div { class: "body",
                            div { class: "row", Badge { status: text(&prediction, "review_state") } span { class: "small muted", "{text(&prediction, \"shot_type\")} · variant {prediction[\"variant_index\"]}" } }
                            Quality { quality: prediction["quality"].clone() }
                            ReviewActions { brand: brand.clone(), prediction: prediction.clone(), dialog, error }
                        }
                    }
                }
            }
        }
    }
}

#[component]
fn RejectDialog(brand: String, prediction: Value, dialog: Signal<Option<Dialog>>) -> Element {
    let mut reason = use_signal(String::new);
    let error = use_signal(|| None::<String>);
    let mut dialog = dialog;
    let id = text(&prediction, "prediction_id");
    rsx! {
        div { class: "dialog-backdrop",
            div { class: "dialog", id: "reject-dialog",
                h2 { "Reject this prediction" }
                ProblemNote { problem: error() }
                label { "Why? (the team sees the reason)" textarea { id: "reject-reason", initial_value: "{reason}", oninput: move |e| reason.set(e.value()) } }
                div { class: "row", style: "margin-top:12px",
                    button { class: "danger", id: "confirm-reject",
                        onclick: move |_| write("POST", format!("/api/v1/brands/{brand}/predictions/{id}/reject"), Some(json!({"reason": reason().trim()})), error, move |_| dialog.set(None)),
                        "Reject"
                    }
                    button { onclick: move |_| dialog.set(None), "Cancel" }
                }
            }
        }
    }
}

/// A region drawn on the image, with what to change there.
#[derive(Debug, Clone, PartialEq)]
struct Region {
    x: f64,
    y: f64,
    width: f64,
    height: f64,
    note: String,
}

#[component]
fn ReviseDialog(brand: String, prediction: Value, dialog: Signal<Option<Dialog>>) -> Element {
    let mut comment = use_signal(String::new);
    let mut regions = use_signal(Vec::<Region>::new);
    let error = use_signal(|| None::<String>);
    let mut dialog = dialog;
    let id = text(&prediction, "prediction_id");
    use_future(move || async move {
        let mut drawn = browser_channel("region");
        while let Ok(region) = drawn.recv::<Value>().await {
            let number = |key: &str| region[key].as_f64().unwrap_or(0.0);
            regions.write().push(Region {
                x: number("x"),
                y: number("y"),
                width: number("width"),
                height: number("height"),
                note: String::new(),
            });
        }
    });
    rsx! {
        div { class: "dialog-backdrop",
            div { class: "dialog", id: "revise-dialog",
                h2 { "Request a revision" }
                p { class: "muted small", "Drag on the image to mark what should change; say what for each region. The revision's new predictions appear next to this one." }
                ProblemNote { problem: error() }
                div { class: "row", style: "align-items:flex-start",
                    div { class: "gps-region region-image", "data-zone": "region", id: "region-canvas",
                        img { src: "{crate::api::sized(&text(&prediction, \"url\"), 480)}", alt: "the prediction", style: "width:100%;display:block" }
                        for (index, region) in regions.read().iter().enumerate() {
                            div { key: "{index}", class: "mark",
                                style: "left:{region.x * 100.0}%;top:{region.y * 100.0}%;width:{region.width * 100.0}%;height:{region.height * 100.0}%" }
                        }
                    }
                    div { class: "stack", style: "flex:1",
                        label { "What should change?" textarea { id: "revision-comment", initial_value: "{comment}", oninput: move |e| comment.set(e.value()) } }
                        for (index, region) in regions.read().iter().enumerate() {
                            div { key: "{index}", class: "row region-row",
                                span { class: "badge", "Region {index + 1}" }
                                input { r#type: "text", class: "region-note", placeholder: "What to change here", initial_value: "{region.note}",
                                    oninput: move |e| if let Some(r) = regions.write().get_mut(index) { r.note = e.value() } }
                                button { class: "small", onclick: move |_| { regions.write().remove(index); }, "Remove" }
                            }
                        }
                    }
                }
                div { class: "row", style: "margin-top:12px",
                    button { class: "primary", id: "confirm-revision",
                        onclick: move |_| {
                            let marked: Vec<Value> = regions.read().iter().map(|r| json!({
                                "x": r.x, "y": r.y, "width": r.width, "height": r.height,
                                "note": if r.note.trim().is_empty() { comment().trim().to_owned() } else { r.note.trim().to_owned() },
                            })).collect();
                            let body = json!({"comment": comment().trim(), "regions": marked});
                            write("POST", format!("/api/v1/brands/{brand}/predictions/{id}/revision"), Some(body), error, move |_| dialog.set(None));
                        },
                        "Request revision"
                    }
                    button { onclick: move |_| dialog.set(None), "Cancel" }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revisions_follow_their_parent() {
        let p = |id: &str, generation: &str, shot: &str, variant: u64| json!({"prediction_id": id, "generation_id": generation, "shot_type": shot, "variant_index": variant});
        let parents = HashMap::from([("g-rev".to_owned(), "p1".to_owned())]);
        let order = ordered(
            vec![
                p("r1", "g-rev", "front", 1),
                p("p2", "g1", "front", 2),
                p("r0", "g-rev", "front", 0),
                p("p1", "g1", "front", 1),
            ],
            &parents,
        );
        let ids: Vec<String> = order.iter().map(|(p, _)| text(p, "prediction_id")).collect();
        assert_eq!(ids, ["p1", "r0", "r1", "p2"]);
        assert_eq!(order[1].1.as_deref(), Some("p1"));
        assert_eq!(order[3].1, None);
    }
}
