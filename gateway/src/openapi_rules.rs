//! What the server enforces, written into the generated OpenAPI document so
//! that a client generated from it (or a property-based test driven by it)
//! knows the rules: identifier, SKU and slug patterns, text lengths, role and
//! scope enums, the optional headers every command reads (`Idempotency-Key`,
//! `x-csrf-token`) and reads honour (`gps-min-sequence`), every status each
//! operation can answer, and `links` from each create to its reads and
//! changes.
//!
//! The rules live here, applied to the JSON after utoipa generated it,
//! because they are the same for every operation: one table instead of the
//! same attribute on eighty handlers. Each pattern mirrors a parser of
//! `gps-domain` (named beside it); the `api_contract` tests and the
//! property-based run (`scripts/api-contract.sh`) hold them to the server.

use serde_json::{Map, Value, json};

/// `gps_domain::ids::check_token`: what every id is.
const ID_PATTERN: &str = "^[A-Za-z0-9_-]{1,64}$";
/// `gps_domain::values::check_sku`.
const SKU_PATTERN: &str = "^[A-Za-z0-9_./-]{1,64}$";
/// `gps_domain::values::check_slug`: categories, shot types, channels.
const SLUG_PATTERN: &str = "^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$";
/// Text of `gps_domain::values::bounded_text`: no control character but line
/// feed, and something besides whitespace.
const TEXT_PATTERN: &str = "^[^\\u0000-\\u0009\\u000B-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u0009\\u000B-\\u001F\\u007F-\\u009F]*$";
/// `routes::command_meta`: 1 to 64 visible ASCII characters.
const IDEMPOTENCY_KEY_PATTERN: &str = "^[!-~]{1,64}$";

/// Applies every rule to `document`.
pub(crate) fn declare(document: &mut Value) {
    declare_request_bodies(document);
    let Some(paths) = document.get_mut("paths").and_then(Value::as_object_mut) else { return };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else { continue };
        for (method, operation) in item.iter_mut() {
            declare_operation(path, method, operation);
        }
    }
}

fn problem(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    })
}

fn declare_operation(path: &str, method: &str, operation: &mut Value) {
    let secured = operation.get("security").is_some();
    let has_body = operation.get("requestBody").is_some();
    let reads = method == "get";
    let id = operation["operationId"].as_str().unwrap_or_default().to_owned();

    if let Some(parameters) = operation.get_mut("parameters").and_then(Value::as_array_mut) {
        for parameter in parameters.iter_mut() {
            if parameter["in"] == "path" {
                declare_path_parameter(parameter);
            }
        }
    }
    let parameters = operation
        .as_object_mut()
        .map(|op| op.entry("parameters").or_insert_with(|| json!([])))
        .and_then(Value::as_array_mut);
    let waits_for_sequence = reads
        && path.contains("{brand}")
        && !["live", "list_events", "aggregate_history"].contains(&id.as_str());
    if let Some(parameters) = parameters {
        if waits_for_sequence {
            parameters.push(json!({
                "name": "gps-min-sequence", "in": "header", "required": false,
                "description": "Like the `min_sequence` parameter: read at least this stream sequence (the larger of both wins).",
                "schema": {"type": "string", "pattern": "^\\s*[0-9]{1,19}\\s*$"}
            }));
        }
        if !reads && secured {
            parameters.push(json!({
                "name": "Idempotency-Key", "in": "header", "required": false,
                "description": "Makes the command safe to retry for a day: the same key (per caller) with the same request applies it once and answers the first outcome again, with `Idempotent-Replayed: true`; the same key with another request is refused (422). A refused request (4xx) releases its key.",
                "schema": {"type": "string", "pattern": IDEMPOTENCY_KEY_PATTERN}
            }));
            parameters.push(json!({
                "name": "x-csrf-token", "in": "header", "required": false,
                "description": "Required when signed in with the session cookie: the `csrf_token` sign-in returned. Not used with an API key.",
                "schema": {"type": "string"}
            }));
        }
        if parameters.is_empty()
            && let Some(op) = operation.as_object_mut()
        {
            op.remove("parameters");
        }
    }

    let Some(responses) = operation.get_mut("responses").and_then(Value::as_object_mut) else { return };
    // A create retried with its Idempotency-Key answers the first outcome
    // again, as 200 with `already_applied`.
    if !reads
        && secured
        && !responses.contains_key("200")
        && let Some(created) = responses.get("201").cloned()
    {
        let mut again = created;
        again["description"] =
            json!("Already applied: this Idempotency-Key was used for this command before");
        if let Some(again) = again.as_object_mut() {
            again.remove("links");
        }
        responses.insert("200".into(), again);
    }
    let mut add = |status: &str, description: &str| {
        responses.entry(status.to_owned()).or_insert_with(|| problem(description));
    };
    add("400", "Invalid request; `field` names the parameter, header or body field at fault");
    if secured {
        add("401", "Not signed in");
        add("403", "Role or API key scope does not allow it, or a cookie write without `x-csrf-token`");
    }
    if path.contains("{brand}") {
        add("404", "Not found (or not visible to you)");
    }
    if secured && (!reads || id == "aggregate_history") {
        add("409", "Conflicts with the current state, or the Idempotency-Key was used for another command");
    }
    if secured && !reads {
        add("422", "Breaks a business rule, or the Idempotency-Key was first used for another request");
    }
    if waits_for_sequence {
        add(
            "409",
            "`min_sequence` is beyond the end of the event log (`field` names it; the detail gives the last sequence)",
        );
    }
    if has_body {
        add("413", "The body is over the limit of this operation");
    }
    if id != "sign_out" {
        add(
            "503",
            "A dependency is unavailable, or the read model has not reached `min_sequence` yet (`Retry-After`); retry",
        );
    }
    if let Some(links) = links_of(&id)
        && let Some(status) = ["201", "202", "200"].into_iter().find(|s| responses.contains_key(*s))
        && let Some(created) = responses.get_mut(status).and_then(Value::as_object_mut)
    {
        created.insert("links".into(), links);
    }
}

fn declare_path_parameter(parameter: &mut Value) {
    let schema = match parameter["name"].as_str() {
        Some("aggregate_type") => json!({"type": "string", "enum": [
            "brand", "product", "subject", "style", "shooting", "look", "generation", "prediction", "export"
        ]}),
        Some("channel") => json!({"type": "string", "pattern": SLUG_PATTERN}),
        _ => json!({"type": "string", "pattern": ID_PATTERN}),
    };
    parameter["schema"] = schema;
}

/// The schemas request bodies use, with their rules by property name.
fn declare_request_bodies(document: &mut Value) {
    let mut names = Vec::new();
    if let Some(paths) = document["paths"].as_object() {
        for item in paths.values() {
            for operation in item.as_object().into_iter().flat_map(|item| item.values()) {
                if let Some(content) =
                    operation["requestBody"]["content"]["application/json"]["schema"].as_object()
                {
                    collect_references(&Value::Object(content.clone()), &mut names);
                }
            }
        }
    }
    let Some(schemas) = document.pointer_mut("/components/schemas").and_then(Value::as_object_mut) else {
        return;
    };
    for name in names {
        if let Some(properties) =
            schemas.get_mut(&name).and_then(|s| s.get_mut("properties")).and_then(Value::as_object_mut)
        {
            declare_properties(properties);
        }
        // An API client works for people; it cannot be an owner.
        if name == "RegisterApiClient"
            && let Some(role) = schemas.get_mut(&name).and_then(|s| s.pointer_mut("/properties/role"))
        {
            role["enum"] = json!(["producer", "reviewer", "viewer", "auditor"]);
        }
    }
}

fn collect_references(value: &Value, names: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(target) = map.get("$ref").and_then(Value::as_str)
                && let Some(name) = target.strip_prefix("#/components/schemas/")
            {
                names.push(name.to_owned());
            }
            map.values().for_each(|v| collect_references(v, names));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_references(v, names)),
        _ => {}
    }
}

fn declare_properties(properties: &mut Map<String, Value>) {
    for (name, schema) in properties.iter_mut() {
        let Some(schema) = schema.as_object_mut() else { continue };
        let constraints = match name.as_str() {
            n if n.ends_with("_id") || n == "subject" || n == "style" => json!({"pattern": ID_PATTERN}),
            "sku" => json!({"pattern": SKU_PATTERN}),
            "category" | "channel" => json!({"pattern": SLUG_PATTERN}),
            "name" => json!({"pattern": TEXT_PATTERN, "maxLength": gps_domain::values::Name::MAX_CHARS}),
            "reason" | "comment" | "text" | "description" => {
                json!({"pattern": TEXT_PATTERN, "maxLength": gps_domain::values::Text::MAX_CHARS})
            }
            "role" => json!({"enum": ["owner", "producer", "reviewer", "viewer", "auditor"]}),
            "products" => json!({"items": {"type": "string", "pattern": ID_PATTERN}, "minItems": 1}),
            "predictions" => {
                json!({"items": {"type": "string", "pattern": ID_PATTERN}, "minItems": 1, "maxItems": 1000})
            }
            // `gps_domain::product`: names 1 to 100 characters, values at most 1000.
            "attributes" => json!({
                "propertyNames": {"type": "string", "minLength": 1, "maxLength": 100},
                "additionalProperties": {"type": "string", "maxLength": 1000}
            }),
            "shot_types" => json!({"items": {"type": "string", "pattern": SLUG_PATTERN}}),
            "scopes" => {
                json!({"items": {"type": "string", "enum": ["read", "produce", "review", "audit", "stream"]}})
            }
            _ => continue,
        };
        if let Value::Object(constraints) = constraints {
            for (key, value) in constraints {
                schema.insert(key, value);
            }
        }
    }
}

/// Where a create's answer leads: its read and its changes, with the new
/// id taken from the answer's `id` and the brand (and parent) from the path.
fn links_of(operation_id: &str) -> Option<Value> {
    let brand = "$request.path.brand";
    let new_id = "$response.body#/id";
    let link = |operation: &str, parameter: &str| json!({"operationId": operation, "parameters": {"brand": brand, parameter: new_id}});
    let links = match operation_id {
        "create_brand" => json!({
            "GetBrand": {"operationId": "get_brand", "parameters": {"brand": new_id}},
            "CreateProduct": {"operationId": "create_product", "parameters": {"brand": new_id}},
        }),
        "create_product" => json!({
            "GetProduct": link("get_product", "product"),
            "UpdateProduct": link("update_product", "product"),
            "ArchiveProduct": link("archive_product", "product"),
        }),
        "create_subject" => json!({
            "GetSubject": link("get_subject", "subject"),
            "UpdateSubject": link("update_subject", "subject"),
        }),
        "create_style" => json!({
            "GetStyle": link("get_style", "style"),
            "ReviseStyle": link("revise_style", "style"),
        }),
        "create_shooting" => json!({
            "GetShooting": link("get_shooting", "shooting"),
            "RenameShooting": link("rename_shooting", "shooting"),
            "CreateLook": link("create_look", "shooting"),
            "ListLooks": link("list_looks", "shooting"),
        }),
        "create_look" => {
            let look = |operation: &str| {
                json!({"operationId": operation, "parameters": {
                    "brand": brand, "shooting": "$request.path.shooting", "look": new_id
                }})
            };
            json!({"GetLook": look("get_look"), "RenameLook": look("rename_look")})
        }
        "request_export" => json!({"GetExport": link("get_export", "export")}),
        "start_import" => json!({"GetImport": {"operationId": "get_import", "parameters": {
            "brand": brand, "import": "$response.body#/import_id"
        }}}),
        "register_api_client" => json!({"RevokeApiClient": link("revoke_api_client", "client")}),
        "add_member" => json!({"ChangeRole": link("change_role", "member")}),
        _ => return None,
    };
    Some(links)
}
