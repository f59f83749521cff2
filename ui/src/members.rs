//! Activity and usage (the brand's feed; cost per shooting and per month)
//! and members (invite, change role, API keys shown once).

use dioxus::prelude::*;
use serde_json::{Value, json};

use crate::api::text;
use crate::app::{Loaded, loaded, rows, use_get, write};
use crate::widgets::{Badge, ListStatus, ProblemNote, clear_inputs, money, short_time};

const ROLES: &[&str] = &["owner", "producer", "reviewer", "viewer", "auditor"];

#[component]
pub(crate) fn Activity(brand: String) -> Element {
    let b1 = brand.clone();
    let feed = use_get(move || Some(format!("/api/v1/brands/{b1}/activity?limit=100")));
    let b2 = brand.clone();
    let usage = use_get(move || Some(format!("/api/v1/brands/{b2}/usage")));
    let feed = loaded(&feed);
    let entries = rows(&feed);
    let usage = loaded(&usage);
    let report = usage.value();
    rsx! {
        div { class: "page-head", h1 { "Activity & usage" } }
        div { class: "cols",
            div { class: "card table-card",
                div { style: "padding:16px 16px 0", h2 { "Cost per month" } }
                if let Loaded::Failed(message) = &usage { ProblemNote { problem: Some(message.clone()) } }
                table { id: "usage-months",
                    thead { tr { th { "Month" } th { "Steps" } th { "Cost" } } }
                    tbody {
                        for month in report["months"].as_array().cloned().unwrap_or_default() {
                            tr { key: "{text(&month, \"month\")}",
                                td { "{text(&month, \"month\")}" }
                                td { "{month[\"steps\"]}" }
                                td { "{money(month[\"cost_micros\"].as_i64().unwrap_or(0))}" }
                            }
                        }
                        tr { td { b { "Total" } } td { b { "{report[\"steps\"]}" } } td { b { "{money(report[\"cost_micros\"].as_i64().unwrap_or(0))}" } } }
                    }
                }
            }
            div { class: "card table-card",
                div { style: "padding:16px 16px 0", h2 { "Cost per shooting" } }
                table { id: "usage-shootings",
                    thead { tr { th { "Shooting" } th { "Steps" } th { "Cost" } } }
                    tbody {
                        for shooting in report["shootings"].as_array().cloned().unwrap_or_default() {
                            tr { key: "{text(&shooting, \"shooting_id\")}",
                                td { "{shooting[\"name\"].as_str().unwrap_or(&text(&shooting, \"shooting_id\"))}" }
                                td { "{shooting[\"steps\"]}" }
                                td { "{money(shooting[\"cost_micros\"].as_i64().unwrap_or(0))}" }
                            }
                        }
                    }
                }
            }
        }
        div { class: "card table-card",
            div { style: "padding:16px 16px 0", h2 { "Activity" } }
            ListStatus { loaded: feed.counted(entries.len()), title: "Nothing has happened yet", hint: "Every change to the brand's catalog, shootings, reviews and exports is listed here." }
            table { id: "activity",
                tbody {
                    for entry in entries {
                        tr { key: "{entry[\"created_sequence\"]}",
                            td { class: "small muted", style: "white-space:nowrap", "{short_time(&text(&entry, \"occurred_at\"))}" }
                            td { "{text(&entry, \"summary\")}" }
                            td { class: "small muted", "{actor(&entry[\"actor\"])}" }
                        }
                    }
                }
            }
        }
    }
}

fn actor(actor: &Value) -> String {
    match actor {
        Value::String(name) => name.clone(),
        Value::Object(_) => {
            let kind = text(actor, "kind");
            let id = ["display_name", "name", "id", "member_id", "agent"]
                .iter()
                .map(|k| text(actor, k))
                .find(|v| !v.is_empty());
            match id {
                Some(id) => format!("{kind} {id}").trim().to_owned(),
                None => kind,
            }
        }
        _ => String::new(),
    }
}

#[component]
pub(crate) fn Members(brand: String, role: String) -> Element {
    let b1 = brand.clone();
    let members = use_get(move || Some(format!("/api/v1/brands/{b1}/members?limit=200")));
    let b2 = brand.clone();
    let keys = use_get(move || Some(format!("/api/v1/brands/{b2}/api-clients?limit=100")));
    let members = loaded(&members);
    let owner = role == "owner";
    let error = use_signal(|| None::<String>);
    rsx! {
        div { class: "page-head", h1 { "Members" } }
        ProblemNote { problem: error() }
        if !owner { div { class: "notice info", "Only owners invite members, change roles and manage API keys; you can see who is here." } }
        if owner { Invite { brand: brand.clone() } }
        div { class: "card table-card",
            if let Loaded::Failed(message) = &members { ProblemNote { problem: Some(message.clone()) } }
            table { id: "members",
                thead { tr { th { "Member" } th { "Email" } th { "Role" } th { "Since" } } }
                tbody {
                    for member in rows(&members) {
                        tr { key: "{text(&member, \"member_id\")}",
                            td { "{text(&member, \"display_name\")}" }
                            td { if member["email_forgotten"] == true { span { class: "muted", "forgotten" } } else { "{text(&member, \"email\")}" } }
                            td {
                                if owner {
                                    select {
                                        onchange: {
                                            let brand = brand.clone();
                                            let id = text(&member, "member_id");
                                            move |e: FormEvent| write("PUT", format!("/api/v1/brands/{brand}/members/{id}/role"), Some(json!({"role": e.value()})), error, |_| {})
                                        },
                                        for r in ROLES { option { key: "{r}", value: "{r}", selected: text(&member, "role") == *r, "{r}" } }
                                    }
                                } else {
                                    Badge { status: text(&member, "role") }
                                }
                            }
                            td { class: "small", "{short_time(&text(&member, \"added_at\"))}" }
                        }
                    }
                }
            }
        }
        ApiKeys { brand: brand.clone(), owner, keys: rows(&loaded(&keys)) }
    }
}

/// Adds a person by address. The answer is the same whether or not the
/// address has an account (GPS makes one without a password when it has
/// none), so the screen says only that the person was added and mailed.
#[component]
fn Invite(brand: String) -> Element {
    let mut email = use_signal(String::new);
    let mut name = use_signal(String::new);
    let mut role = use_signal(|| "reviewer".to_owned());
    let error = use_signal(|| None::<String>);
    let mut invited = use_signal(|| None::<String>);
    rsx! {
        div { class: "card", id: "invite-form",
            h2 { "Invite a member" }
            ProblemNote { problem: error() }
            if let Some(who) = invited() {
                div { class: "notice ok", id: "invite-sent",
                    "{who} was added, and a mail was sent to them. Someone new to GPS finds a link in it to choose a password."
                }
            }
            div { class: "form",
                label { "Email" input { r#type: "email", id: "invite-email", initial_value: "{email}", oninput: move |e| email.set(e.value()) } }
                label { "Name (if new to GPS)" input { r#type: "text", id: "invite-name", placeholder: "from the address", initial_value: "{name}", oninput: move |e| name.set(e.value()) } }
                label { "Role"
                    select { onchange: move |e| role.set(e.value()),
                        for r in ROLES { option { key: "{r}", value: "{r}", selected: role() == *r, "{r}" } }
                    }
                }
                div { class: "row",
                    button { class: "primary", id: "invite",
                        onclick: move |_| {
                            let who = email().trim().to_owned();
                            let display_name = name().trim().to_owned();
                            let mut body = json!({"email": who, "role": role()});
                            if !display_name.is_empty() {
                                body["display_name"] = json!(display_name);
                            }
                            write("POST", format!("/api/v1/brands/{brand}/members"), Some(body), error, move |_| {
                                invited.set(Some(who));
                                email.set(String::new());
                                name.set(String::new());
                                clear_inputs("#invite-form");
                            });
                        },
                        "Invite"
                    }
                }
            }
        }
    }
}

#[component]
fn ApiKeys(brand: String, owner: bool, keys: Vec<Value>) -> Element {
    let mut name = use_signal(String::new);
    let mut role = use_signal(|| "viewer".to_owned());
    let error = use_signal(|| None::<String>);
    let mut shown = use_signal(|| None::<String>);
    let create_brand = brand.clone();
    rsx! {
        div { class: "card table-card",
            div { style: "padding:16px 16px 0", h2 { "API keys" } }
            ProblemNote { problem: error() }
            if let Some(key) = shown() {
                div { class: "notice ok", style: "margin:0 16px 16px",
                    p { b { "Copy this key now: it is shown only once." } }
                    div { class: "key", id: "new-api-key", "{key}" }
                    button { class: "small", style: "margin-top:8px", onclick: move |_| shown.set(None), "I have stored it" }
                }
            }
            table { id: "api-keys",
                thead { tr { th { "Name" } th { "Role" } th { "Fingerprint" } th { "Registered" } th {} } }
                tbody {
                    for key in keys {
                        tr { key: "{text(&key, \"api_client_id\")}",
                            td { "{text(&key, \"name\")}" }
                            td { Badge { status: text(&key, "role") } }
                            td { class: "small", code { "{text(&key, \"key_fingerprint\")}" } }
                            td { class: "small", "{short_time(&text(&key, \"registered_at\"))}" }
                            td {
                                if key["revoked"] == true {
                                    span { class: "badge bad", "revoked" }
                                } else if owner {
                                    button { class: "small danger",
                                        onclick: {
                                            let brand = brand.clone();
                                            let id = text(&key, "api_client_id");
                                            move |_| write("DELETE", format!("/api/v1/brands/{brand}/api-clients/{id}"), None, error, |_| {})
                                        },
                                        "Revoke"
                                    }
                                }
                            }
                        }
                    }
                }
            }
            if owner {
                div { class: "form", id: "api-key-form", style: "padding:16px",
                    label { "Name" input { r#type: "text", id: "key-name", initial_value: "{name}", oninput: move |e| name.set(e.value()) } }
                    label { "Role"
                        select { onchange: move |e| role.set(e.value()),
                            for r in ROLES { option { key: "{r}", value: "{r}", selected: role() == *r, "{r}" } }
                        }
                    }
                    div { class: "row",
                        button { id: "create-key",
                            onclick: move |_| {
                                let body = json!({"name": name().trim(), "role": role()});
                                write("POST", format!("/api/v1/brands/{create_brand}/api-clients"), Some(body), error, move |answer| {
                                    shown.set(Some(text(&answer, "api_key")));
                                    name.set(String::new());
                                    clear_inputs("#api-key-form");
                                });
                            },
                            "Create key"
                        }
                    }
                }
            }
        }
    }
}
