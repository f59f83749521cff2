//! Subjects (virtual models with their base images) and styles (background,
//! light, mood, prompts, guideline rules, reference images): create, edit,
//! upload.

use dioxus::prelude::*;
use serde_json::{Value, json};

use crate::api::text;
use crate::app::{loaded, rows, use_get, write};
use crate::widgets::{Frame, ListStatus, ProblemNote, UploadZone, clear_inputs};

#[component]
pub(crate) fn Studio(brand: String) -> Element {
    let subjects_brand = brand.clone();
    let subjects = use_get(move || Some(format!("/api/v1/brands/{subjects_brand}/subjects?limit=100")));
    let styles_brand = brand.clone();
    let styles = use_get(move || Some(format!("/api/v1/brands/{styles_brand}/styles?limit=100")));
    let subjects = loaded(&subjects);
    let styles = loaded(&styles);
    rsx! {
        div { class: "page-head", h1 { "Subjects & styles" } }
        div { class: "cols",
            div {
                h2 { "Subjects" }
                NewSubject { brand: brand.clone() }
                ListStatus { loaded: subjects.counted(rows(&subjects).len()), title: "No subjects yet", hint: "A subject is the virtual model your looks are shot on: describe them, then add two or more base images." }
                for subject in rows(&subjects).into_iter().filter(|s| s["retired"] != true) {
                    SubjectCard { key: "{text(&subject, \"subject_id\")}", brand: brand.clone(), id: text(&subject, "subject_id") }
                }
            }
            div {
                h2 { "Styles" }
                NewStyle { brand: brand.clone() }
                ListStatus { loaded: styles.counted(rows(&styles).len()), title: "No styles yet", hint: "A style sets the background, light and mood of a shooting, with rules the images must follow." }
                for style in rows(&styles).into_iter().filter(|s| s["archived"] != true) {
                    StyleCard { key: "{text(&style, \"style_id\")}", brand: brand.clone(), style }
                }
            }
        }
    }
}

#[component]
fn NewSubject(brand: String) -> Element {
    let mut name = use_signal(String::new);
    let mut description = use_signal(String::new);
    let error = use_signal(|| None::<String>);
    rsx! {
        div { class: "card", id: "new-subject",
            h3 { "New subject" }
            ProblemNote { problem: error() }
            div { class: "stack",
                label { "Name" input { r#type: "text", id: "subject-name", initial_value: "{name}", oninput: move |e| name.set(e.value()) } }
                label { "Description (appearance, age range, build)"
                    textarea { id: "subject-description", initial_value: "{description}", oninput: move |e| description.set(e.value()) }
                }
                div { class: "row",
                    button { class: "primary", id: "create-subject",
                        onclick: move |_| {
                            let body = json!({"name": name().trim(), "description": description().trim()});
                            write("POST", format!("/api/v1/brands/{brand}/subjects"), Some(body), error, move |_| {
                                name.set(String::new());
                                description.set(String::new());
                                clear_inputs("#new-subject");
                            });
                        },
                        "Create subject"
                    }
                }
            }
        }
    }
}

#[component]
fn SubjectCard(brand: String, id: String) -> Element {
    let (detail_brand, detail_id) = (brand.clone(), id.clone());
    let detail = use_get(move || Some(format!("/api/v1/brands/{detail_brand}/subjects/{detail_id}")));
    let subject = loaded(&detail).value();
    let images = subject["images"].as_array().cloned().unwrap_or_default();
    let mut editing = use_signal(|| false);
    let mut description = use_signal(String::new);
    let error = use_signal(|| None::<String>);
    let current = text(&subject, "description");
    let (save_brand, save_id) = (brand.clone(), id.clone());
    rsx! {
        div { class: "card subject-card",
            div { class: "row",
                h3 { style: "margin:0", "{text(&subject, \"name\")}" }
                span { class: "grow" }
                button { class: "small edit-subject",
                    onclick: move |_| { description.set(current.clone()); editing.set(!editing()); },
                    if editing() { "Close" } else { "Edit" }
                }
            }
            if editing() {
                ProblemNote { problem: error() }
                label { "Description (appearance, age range, build)"
                    textarea { class: "subject-description-edit", initial_value: "{description}", oninput: move |e| description.set(e.value()) }
                }
                button { class: "primary save-subject", style: "margin-top:8px",
                    onclick: move |_| {
                        let body = json!({"description": description().trim()});
                        write("PATCH", format!("/api/v1/brands/{save_brand}/subjects/{save_id}"), Some(body), error, move |_| editing.set(false));
                    },
                    "Save"
                }
            } else {
                p { class: "muted small", "{text(&subject, \"description\")}" }
            }
            div { class: "thumbs",
                for image in images {
                    Frame { key: "{text(&image, \"image_id\")}", url: text(&image, "url"), width: 240, alt: text(&image, "kind") }
                }
            }
            div { style: "margin-top:8px",
                UploadZone {
                    zone: "subject-{id}",
                    url: "/api/v1/brands/{brand}/subjects/{id}/images",
                    label: "Drop base images of this subject",
                    accept: "image/jpeg,image/png,image/webp",
                }
            }
        }
    }
}

/// Lines of a text area as a list, blank lines dropped.
fn lines(text: &str) -> Vec<String> {
    text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect()
}

/// A style definition from the form's fields.
fn style_definition(fields: &StyleFields) -> Value {
    let mut guidelines: Vec<Value> =
        lines(&fields.dos).into_iter().map(|t| json!({"kind": "do", "text": t})).collect();
    guidelines.extend(lines(&fields.donts).into_iter().map(|t| json!({"kind": "dont", "text": t})));
    json!({
        "background": fields.background.trim(),
        "lighting": fields.lighting.trim(),
        "mood": fields.mood.trim(),
        "positive_prompt": lines(&fields.positive),
        "negative_prompt": lines(&fields.negative),
        "reference_images": fields.references,
        "guidelines": guidelines,
    })
}

#[derive(Debug, Clone, Default, PartialEq)]
struct StyleFields {
    background: String,
    lighting: String,
    mood: String,
    positive: String,
    negative: String,
    dos: String,
    donts: String,
    references: Value,
}

impl StyleFields {
    fn of(definition: &Value) -> StyleFields {
        let list = |key: &str| {
            definition[key]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join("\n"))
        };
        let rules = |kind: &str| {
            definition["guidelines"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter(|g| g["kind"] == kind)
                        .map(|g| text(g, "text"))
                        .collect::<Vec<_>>()
                        .join("\n")
                })
                .unwrap_or_default()
        };
        StyleFields {
            background: text(definition, "background"),
            lighting: text(definition, "lighting"),
            mood: text(definition, "mood"),
            positive: list("positive_prompt").unwrap_or_default(),
            negative: list("negative_prompt").unwrap_or_default(),
            dos: rules("do"),
            donts: rules("dont"),
            references: definition["reference_images"].clone(),
        }
    }
}

/// The fields of a style definition, editable.
#[component]
fn StyleForm(fields: Signal<StyleFields>) -> Element {
    let mut fields = fields;
    rsx! {
        div { class: "form",
            label { "Background" input { r#type: "text", class: "style-background", initial_value: "{fields.read().background}", oninput: move |e| fields.write().background = e.value() } }
            label { "Lighting" input { r#type: "text", class: "style-lighting", initial_value: "{fields.read().lighting}", oninput: move |e| fields.write().lighting = e.value() } }
            label { "Mood" input { r#type: "text", class: "style-mood", initial_value: "{fields.read().mood}", oninput: move |e| fields.write().mood = e.value() } }
            label { class: "wide", "Prompt words (one per line)" textarea { initial_value: "{fields.read().positive}", oninput: move |e| fields.write().positive = e.value() } }
            label { class: "wide", "Avoid (one per line)" textarea { initial_value: "{fields.read().negative}", oninput: move |e| fields.write().negative = e.value() } }
            label { class: "wide", "Rules: do (one per line)" textarea { initial_value: "{fields.read().dos}", oninput: move |e| fields.write().dos = e.value() } }
            label { class: "wide", "Rules: don't (one per line)" textarea { initial_value: "{fields.read().donts}", oninput: move |e| fields.write().donts = e.value() } }
        }
    }
}

#[component]
fn NewStyle(brand: String) -> Element {
    let mut name = use_signal(String::new);
    let mut fields = use_signal(|| StyleFields { references: json!([]), ..StyleFields::default() });
    let error = use_signal(|| None::<String>);
    rsx! {
        div { class: "card", id: "new-style",
            h3 { "New style" }
            ProblemNote { problem: error() }
            label { "Name" input { r#type: "text", id: "style-name", initial_value: "{name}", oninput: move |e| name.set(e.value()) } }
            div { style: "margin-top:12px", StyleForm { fields } }
            div { class: "row", style: "margin-top:12px",
                button { class: "primary", id: "create-style",
                    onclick: move |_| {
                        let body = json!({"name": name().trim(), "definition": style_definition(&fields.read())});
                        write("POST", format!("/api/v1/brands/{brand}/styles"), Some(body), error, move |_| {
                            name.set(String::new());
                            fields.set(StyleFields { references: json!([]), ..StyleFields::default() });
                            clear_inputs("#new-style");
                        });
                    },
                    "Create style"
                }
            }
        }
    }
}

#[component]
fn StyleCard(brand: String, style: Value) -> Element {
    let id = text(&style, "style_id");
    let definition = style["definition"].clone();
    let mut editing = use_signal(|| false);
    let mut fields = use_signal(|| StyleFields::of(&definition));
    let error = use_signal(|| None::<String>);
    let references = definition["reference_images"].as_array().cloned().unwrap_or_default();
    let rules = definition["guidelines"].as_array().cloned().unwrap_or_default();
    let save_brand = brand.clone();
    let save_id = id.clone();
    rsx! {
        div { class: "card style-card",
            div { class: "row",
                h3 { style: "margin:0", "{text(&style, \"name\")}" }
                span { class: "badge", "v{style[\"current_version\"]}" }
                span { class: "grow" }
                button { class: "small", onclick: move |_| { fields.set(StyleFields::of(&definition)); editing.set(!editing()); },
                    if editing() { "Close" } else { "Edit" }
                }
            }
            if editing() {
                ProblemNote { problem: error() }
                StyleForm { fields }
                button { class: "primary", style: "margin-top:8px",
                    onclick: move |_| {
                        let body = json!({"definition": style_definition(&fields.read())});
                        write("PUT", format!("/api/v1/brands/{save_brand}/styles/{save_id}/definition"), Some(body), error, move |_| editing.set(false));
                    },
                    "Save as a new version"
                }
            } else {
                p { class: "muted small", "{text(&definition, \"background\")} · {text(&definition, \"lighting\")} · {text(&definition, \"mood\")}" }
                if !rules.is_empty() {
                    ul { class: "small",
                        for rule in rules { li { "{text(&rule, \"kind\")}: {text(&rule, \"text\")}" } }
                    }
                }
            }
            div { class: "thumbs",
                for reference in references {
                    Frame { key: "{text(&reference, \"hash\")}", url: text(&reference, "url"), width: 240, alt: "reference" }
                }
            }
            div { style: "margin-top:8px",
                UploadZone {
                    zone: "style-{id}",
                    url: "/api/v1/brands/{brand}/styles/{id}/reference-images",
                    label: "Drop reference images for this style",
                    accept: "image/jpeg,image/png,image/webp",
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_style_form_becomes_a_definition_and_back() {
        let fields = StyleFields {
            background: "paper".into(),
            lighting: "soft".into(),
            mood: "calm".into(),
            positive: "editorial\n\n linen ".into(),
            negative: String::new(),
            dos: "show the back".into(),
            donts: "no props".into(),
            references: json!([]),
        };
        let definition = style_definition(&fields);
        assert_eq!(definition["positive_prompt"], json!(["editorial", "linen"]));
        assert_eq!(
            definition["guidelines"],
            json!([{"kind": "do", "text": "show the back"}, {"kind": "dont", "text": "no props"}])
        );
        let back = StyleFields::of(&definition);
        assert_eq!(back.positive, "editorial\nlinen");
        assert_eq!(back.donts, "no props");
    }
}
