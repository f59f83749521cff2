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
/// `gps_domain::values::AspectRatio::parse`: `W:H`, each side a whole number
/// from 1 to 100 as Rust reads a `u16` (an optional `+`, leading zeros), with
/// whitespace around either side: what Rust's `trim` removes (Unicode
/// White_Space), not a regex's `\s` (Python's adds U+001C..U+001F).
const ASPECT_RATIO_PATTERN: &str = concat!(
    "^",
    "[\\t\\n\\u000B\\f\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]*",
    "\\+?0*([1-9][0-9]?|100)",
    "[\\t\\n\\u000B\\f\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]*",
    ":",
    "[\\t\\n\\u000B\\f\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]*",
    "\\+?0*([1-9][0-9]?|100)",
    "[\\t\\n\\u000B\\f\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]*",
    "$"
);
/// `gps_domain::values::Colour`: `#RRGGBB`, either case.
const COLOUR_PATTERN: &str = "^#[0-9A-Fa-f]{6}$";
/// `gps_domain::values::ContentHash`: sha256 and 64 hex digits, either case.
const CONTENT_HASH_PATTERN: &str = "^sha256:[0-9A-Fa-f]{64}$";
/// `gps_domain::values::ChannelPresetSpec::validate`: no `/`, `\` or `..`,
/// and every `{` opens a known placeholder (a lone `}` is only a character).
const NAMING_PATTERN: &str = "^\\.?(([^{./\\\\]|\\{(sku|view|n|preset|prediction)\\})\\.?)*$";
/// `gps_domain::export::S3Bucket`: lowercase letters, digits, `.` and `-`,
/// starting and ending with a letter or digit, no `..` (3 to 63 long).
const S3_BUCKET_PATTERN: &str = "^[a-z0-9]((\\.?[a-z0-9-])*\\.?[a-z0-9])?$";
/// `gps_domain::export::S3Prefix`: no leading `/`, no `..` segment, no
/// control character; empty for the bucket's root.
const S3_PREFIX_PATTERN: &str = concat!(
    "^(([^/\\u0000-\\u001F\\u007F-\\u009F.][^/\\u0000-\\u001F\\u007F-\\u009F]*",
    "|\\.|\\.[^/\\u0000-\\u001F\\u007F-\\u009F.][^/\\u0000-\\u001F\\u007F-\\u009F]*",
    "|\\.\\.[^/\\u0000-\\u001F\\u007F-\\u009F]+)",
    "(/([^/\\u0000-\\u001F\\u007F-\\u009F.][^/\\u0000-\\u001F\\u007F-\\u009F]*",
    "|\\.|\\.[^/\\u0000-\\u001F\\u007F-\\u009F.][^/\\u0000-\\u001F\\u007F-\\u009F]*",
    "|\\.\\.[^/\\u0000-\\u001F\\u007F-\\u009F]+)?)*)?$"
);
/// `gps_domain::export::SecretName`.
const SECRET_NAME_PATTERN: &str = "^[A-Za-z0-9_./:-]{1,256}$";
/// `gps_domain::export::WebhookUrl`: http(s), a host of letters, digits, `-`
/// and `.` (or an IPv6 address in brackets), an optional port from 1 to
/// 65535, no credentials, no whitespace.
const WEBHOOK_URL_PATTERN: &str = concat!(
    "^",
    "[\\t\\n\\u000B\\f\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]*",
    "[Hh][Tt][Tt][Pp][Ss]?://([A-Za-z0-9.-]+|\\[[A-Za-z0-9.:-]+\\])",
    "(:0*([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?",
    "([/?#][^\\s\\u0000-\\u001F\\u007F-\\u009F]*)?",
    "[\\t\\n\\u000B\\f\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]*",
    "$"
);
/// `routes::command_meta`: 1 to 64 visible ASCII characters.
/// `gps_domain::brand::Email`, narrowed to what a pattern without look-ahead
/// can hold: a local part without dots (1 to 64 characters), a domain of 2 to
/// 5 labels whose last starts with a letter (not an IP address).
const EMAIL_PATTERN: &str = concat!(
    "^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]{1,64}@",
    "([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\\.){1,4}",
    "[A-Za-z]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$"
);
const IDEMPOTENCY_KEY_PATTERN: &str = "^[!-~]{1,64}$";

/// Applies every rule to `document`.
pub(crate) fn declare(document: &mut Value) {
    declare_request_bodies(document);
    let Some(paths) = document.get_mut("paths").and_then(Value::as_object_mut) else { return };
    let operations: Vec<String> = paths
        .values()
        .filter_map(Value::as_object)
        .flat_map(|item| item.values())
        .filter_map(|operation| operation["operationId"].as_str().map(str::to_owned))
        .collect();
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else { continue };
        for (method, operation) in item.iter_mut() {
            declare_operation(path, method, operation, &operations);
        }
    }
}

fn problem(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    })
}

fn declare_operation(path: &str, method: &str, operation: &mut Value, operations: &[String]) {
    let secured = operation.get("security").is_some();
    let has_body = operation.get("requestBody").is_some();
    let reads = method == "get";
    let id = operation["operationId"].as_str().unwrap_or_default().to_owned();

    if let Some(parameters) = operation.get_mut("parameters").and_then(Value::as_array_mut) {
        for parameter in parameters.iter_mut() {
            if parameter["in"] == "path" {
                declare_path_parameter(parameter);
            }
            // `events::parse_query`: known aggregate and event types.
            if id == "list_events" && parameter["in"] == "query" {
                if parameter["name"] == "aggregate" {
                    let kinds: Vec<&str> =
                        gps_domain::aggregate::AggregateKind::ALL.iter().map(|kind| kind.as_str()).collect();
                    parameter["schema"]["items"] = json!({"type": "string", "enum": kinds});
                } else if parameter["name"] == "type" {
                    let types: Vec<&str> =
                        gps_domain::event_catalog().iter().map(|schema| schema.event_type).collect();
                    parameter["schema"]["items"] = json!({"type": "string", "enum": types});
                }
            }
            // A parameter is given or left out; `null` is not a value a
            // header, query or path can carry (utoipa writes `Option`s so).
            if let Some(types) = parameter.pointer_mut("/schema/type").and_then(Value::as_array_mut) {
                types.retain(|kind| kind != "null");
                if let [single] = types.as_slice() {
                    let single = single.clone();
                    parameter["schema"]["type"] = single;
                }
            }
            // `audit::as_of`: an RFC 3339 instant.
            if parameter["in"] == "query" && parameter["name"] == "as_of" {
                parameter["schema"]["format"] = json!("date-time");
            }
        }
    }
    let parameters = operation
        .as_object_mut()
        .map(|op| op.entry("parameters").or_insert_with(|| json!([])))
        .and_then(Value::as_array_mut);
    let waits_for_sequence = reads
        && path.contains("{brand}")
        && !["live", "list_events", "aggregate_history", "audit_trail"].contains(&id.as_str());
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

    if let Some(form) = operation.pointer_mut("/requestBody/content/multipart~1form-data")
        && let Some(schema) = multipart_schema(&id)
    {
        *form = schema;
        operation["requestBody"]["required"] = json!(true);
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
    // `imports::ImportSlots`: a brand runs a few imports at once.
    if id == "start_import" {
        add("429", "The brand already runs the most imports at once; wait for one to finish or cancel one");
    }
    if has_body {
        add("413", "The body (or one part of a multipart body) is over its limit; `field` names it");
    }
    if id != "sign_out" {
        add(
            "503",
            "A dependency is unavailable, or the read model has not reached `min_sequence` yet (`Retry-After`); retry",
        );
    }
    // A link may only name an operation the document has.
    let links = links_of(&id).map(|mut links| {
        links.retain(|_, link| {
            link["operationId"].as_str().is_some_and(|target| operations.iter().any(|o| o == target))
        });
        Value::Object(links)
    });
    if let Some(links) = links
        && let Some(status) = ["201", "202", "200"].into_iter().find(|s| responses.contains_key(*s))
        && let Some(created) = responses.get_mut(status).and_then(Value::as_object_mut)
    {
        created.insert("links".into(), links);
    }
}

/// The parts of an upload or import form (`uploads::check_known_fields`:
/// any other part is refused). A file's bytes are what a schema cannot
/// judge: an image that does not decode is refused (415 or 422), a catalog
/// without its columns too (400).
fn multipart_schema(operation_id: &str) -> Option<Value> {
    let image = json!({
        "type": "string", "format": "binary", "contentMediaType": "image/*",
        "description": "A JPEG, PNG or WebP image."
    });
    let image_id = json!({"type": "string", "pattern": ID_PATTERN});
    let enumeration = |values: &[&str]| json!({"type": "string", "enum": values});
    let (properties, required) = match operation_id {
        "upload_product_image" => (
            json!({
                "file": image, "image_id": image_id,
                "view": enumeration(&["front", "back", "detail", "flat_lay", "ghost_mannequin"])
            }),
            json!(["file"]),
        ),
        "upload_subject_image" => (
            json!({
                "file": image, "image_id": image_id,
                "pose": enumeration(&["standing", "seated", "walking", "leaning", "kneeling", "crouching"]),
                "angle": enumeration(&["front", "three_quarter", "profile", "back"])
            }),
            json!(["file"]),
        ),
        "upload_style_reference" => (json!({"file": image}), json!(["file"])),
        "start_import" => (
            json!({
                "catalog": {
                    "type": "string", "format": "binary",
                    "description": "UTF-8 CSV with a header row (sku, name, category, attributes, images) or JSON Lines."
                },
                "images": {"type": "string", "format": "binary", "contentMediaType": "application/zip"},
                "format": enumeration(&["csv", "jsonl"])
            }),
            json!(["catalog"]),
        ),
        _ => return None,
    };
    let mut form = json!({
        "schema": {"type": "object", "properties": properties, "required": required, "additionalProperties": false}
    });
    if operation_id != "start_import" {
        form["encoding"] = json!({"file": {"contentType": "image/jpeg, image/png, image/webp"}});
    }
    Some(form)
}

fn declare_path_parameter(parameter: &mut Value) {
    let schema = match parameter["name"].as_str() {
        // `gps_projections::audit::history::parse_kind`: every aggregate kind.
        Some("aggregate_type") => json!({"type": "string", "enum": [
            "brand", "product", "subject", "style", "shooting", "look", "generation", "prediction", "export",
            "import", "person", "audit_access"
        ]}),
        Some("channel") => json!({"type": "string", "pattern": SLUG_PATTERN}),
        _ => json!({"type": "string", "pattern": ID_PATTERN}),
    };
    parameter["schema"] = schema;
}

/// The schemas request bodies use, with their rules by property name, and
/// the nested domain objects some of them carry (a style's definition, a
/// shooting's defaults and rules, a preset's spec, an export's destination,
/// a look's guidelines) as schemas of their own.
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
    // And the schemas those refer to (a revision's `Region`), each once.
    let mut next = 0;
    while next < names.len() {
        let mut found = Vec::new();
        if let Some(schema) = schemas.get(&names[next]) {
            collect_references(schema, &mut found);
        }
        for name in found {
            if !names.contains(&name) {
                names.push(name);
            }
        }
        next += 1;
    }
    for name in names {
        if let Some(properties) =
            schemas.get_mut(&name).and_then(|s| s.get_mut("properties")).and_then(Value::as_object_mut)
        {
            declare_properties(&name, properties);
        }
        // An API client works for people; it cannot be an owner.
        if name == "RegisterApiClient"
            && let Some(role) = schemas.get_mut(&name).and_then(|s| s.pointer_mut("/properties/role"))
        {
            role["enum"] = json!(["producer", "reviewer", "viewer", "auditor"]);
            // `routes::parse_scopes`: a scope the role allows (`auth::allows`).
            let scopes_of = |role: &str, scopes: &[&str]| {
                json!({
                    "if": {"properties": {"role": {"const": role}}, "required": ["role"]},
                    "then": {"properties": {"scopes": {"items": {"enum": scopes}}}}
                })
            };
            if let Some(client) = schemas.get_mut(&name) {
                client["allOf"] = json!([
                    scopes_of("producer", &["read", "produce", "review", "stream"]),
                    scopes_of("reviewer", &["read", "review", "stream"]),
                    scopes_of("viewer", &["read", "stream"]),
                    scopes_of("auditor", &["read", "audit", "stream"]),
                ]);
            }
        }
    }
    for (name, schema) in nested_schemas() {
        schemas.insert(name.to_owned(), schema);
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

/// `gps_domain::values::Text` (or `Name`) of at most `max` characters.
fn text(max: usize) -> Value {
    json!({"type": "string", "pattern": TEXT_PATTERN, "maxLength": max})
}

fn reference(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

/// The nested domain objects of request bodies, as `gps-domain` reads them
/// (its serde derives: unknown fields are ignored, `Option`s may be `null`
/// or left out) with the rules its `validate`/`decide` apply to them alone.
/// Rules that depend on stored state (a quality gate above the shooting's
/// output) or compare items by more than equality (guidelines that differ
/// only in case) cannot be said in JSON Schema; their 422 is documented.
fn nested_schemas() -> Vec<(&'static str, Value)> {
    use gps_domain::{look, shooting, style};
    let long_edge = json!({"type": "integer", "minimum": 256, "maximum": 8192});
    let slugs = |max: usize| json!({"type": "array", "items": {"type": "string", "pattern": SLUG_PATTERN}, "maxItems": max, "uniqueItems": true});
    let guideline_list = json!({
        "type": "array", "items": text(look::MAX_GUIDELINE_CHARS), "maxItems": look::MAX_GUIDELINES,
        "uniqueItems": true
    });
    let optional_id = json!({"type": ["string", "null"], "pattern": ID_PATTERN});
    vec![
        (
            "OutputSpec",
            json!({
                "description": "What every generation outputs.",
                "type": "object", "required": ["aspect_ratio", "long_edge_px", "format"],
                "properties": {
                    "aspect_ratio": {"type": "string", "pattern": ASPECT_RATIO_PATTERN, "description": "`W:H`, each side 1 to 100, e.g. `4:5`."},
                    "long_edge_px": long_edge,
                    "format": {"type": "string", "enum": ["jpeg", "png", "webp", "avif"]}
                }
            }),
        ),
        (
            "ShootingDefaults",
            json!({
                "description": "What every look of the shooting uses unless it says otherwise.",
                "type": "object", "required": ["shot_types", "output"],
                "properties": {
                    "style": optional_id,
                    "subject": optional_id,
                    "shot_types": slugs(shooting::MAX_SHOT_TYPES),
                    "output": reference("OutputSpec")
                }
            }),
        ),
        (
            "ShootingRules",
            json!({
                "description": "How the shooting's generations run. A minimum long edge above the shooting's output long edge is refused (422).",
                "type": "object", "required": ["quality_gates", "variants_per_shot"],
                "properties": {
                    "quality_gates": {
                        "type": "object", "required": ["require_automatic_checks"],
                        "properties": {
                            "min_long_edge_px": {"type": ["integer", "null"], "minimum": 256, "maximum": 8192},
                            "require_automatic_checks": {"type": "boolean"}
                        }
                    },
                    "variants_per_shot": {
                        "type": "integer",
                        "minimum": shooting::VARIANTS_PER_SHOT.start(),
                        "maximum": shooting::VARIANTS_PER_SHOT.end()
                    }
                }
            }),
        ),
        (
            "AssetRef",
            json!({
                "description": "Stored bytes, by content address.",
                "type": "object", "required": ["hash", "media_type", "bytes"],
                "properties": {
                    "hash": {"type": "string", "pattern": CONTENT_HASH_PATTERN},
                    "media_type": {"type": "string", "pattern": "^image/"},
                    "bytes": {"type": "integer", "minimum": 0, "maximum": u64::MAX},
                    "width": {"type": ["integer", "null"], "minimum": 0, "maximum": u32::MAX},
                    "height": {"type": ["integer", "null"], "minimum": 0, "maximum": u32::MAX}
                }
            }),
        ),
        (
            "StyleDefinition",
            json!({
                "description": "A complete style definition. Reference images are distinct files (by hash); a guideline's text appears once, whatever its case (422 otherwise).",
                "type": "object",
                "required": ["background", "lighting", "mood", "positive_prompt", "negative_prompt", "reference_images", "guidelines"],
                "properties": {
                    "background": text(gps_domain::values::Text::MAX_CHARS),
                    "background_colour": {"type": ["string", "null"], "pattern": COLOUR_PATTERN},
                    "lighting": text(gps_domain::values::Text::MAX_CHARS),
                    "mood": text(gps_domain::values::Text::MAX_CHARS),
                    "positive_prompt": {"type": "array", "items": text(gps_domain::values::Text::MAX_CHARS), "maxItems": style::MAX_PROMPT_FRAGMENTS},
                    "negative_prompt": {"type": "array", "items": text(gps_domain::values::Text::MAX_CHARS), "maxItems": style::MAX_PROMPT_FRAGMENTS},
                    "reference_images": {"type": "array", "items": reference("AssetRef"), "maxItems": style::MAX_REFERENCE_IMAGES},
                    "guidelines": {
                        "type": "array", "maxItems": style::MAX_GUIDELINES,
                        "items": {
                            "type": "object", "required": ["kind", "text"],
                            "properties": {
                                "kind": {"type": "string", "enum": ["do", "dont"]},
                                "text": text(style::MAX_GUIDELINE_CHARS)
                            }
                        }
                    }
                }
            }),
        ),
        (
            "LookGuidelines",
            json!({
                "description": "Free-text rules for the look's images; each list holds a rule once.",
                "type": "object",
                "properties": {"dos": guideline_list, "donts": guideline_list}
            }),
        ),
        (
            "ChannelPresetSpec",
            json!({
                "description": "What a channel requires of an image.",
                "type": "object",
                "required": ["long_edge_px", "aspect_ratio", "fit", "background", "format", "quality", "colour_space", "naming_pattern"],
                "properties": {
                    "long_edge_px": long_edge,
                    "aspect_ratio": {"type": "string", "pattern": ASPECT_RATIO_PATTERN},
                    "fit": {"type": "string", "enum": ["crop_to_subject", "pad"]},
                    "background": {"oneOf": [
                        {"type": "object", "required": ["kind"], "properties": {"kind": {"const": "keep"}, "colour": {"type": "null"}}},
                        {"type": "object", "required": ["kind"], "properties": {"kind": {"const": "white"}, "colour": {"type": "null"}}},
                        {"type": "object", "required": ["kind", "colour"], "properties": {
                            "kind": {"const": "colour"}, "colour": {"type": "string", "pattern": COLOUR_PATTERN}
                        }}
                    ]},
                    "format": {"type": "string", "enum": ["jpeg", "png", "webp", "avif"]},
                    "quality": {"type": "integer", "minimum": 1, "maximum": 100},
                    "colour_space": {"type": "string", "enum": ["srgb", "display_p3"]},
                    "max_bytes": {"type": ["integer", "null"], "minimum": 1, "maximum": u64::MAX},
                    "naming_pattern": {
                        "type": "string", "minLength": 1, "maxLength": 200, "pattern": NAMING_PATTERN,
                        "description": "A file name: placeholders `{sku}`, `{view}`, `{n}`, `{preset}`, `{prediction}`; no `/`, `\\` or `..`."
                    }
                }
            }),
        ),
        (
            "ExportDestination",
            json!({
                "description": "Where an export's renditions go; credentials and secrets are names of stored secrets, never the secrets themselves.",
                "oneOf": [
                    {"type": "object", "required": ["kind"], "properties": {"kind": {"const": "zip_download"}}},
                    {"type": "object", "required": ["kind", "bucket", "prefix", "credentials"], "properties": {
                        "kind": {"const": "s3"},
                        "bucket": {"type": "string", "pattern": S3_BUCKET_PATTERN, "minLength": 3, "maxLength": 63},
                        "prefix": {"type": "string", "pattern": S3_PREFIX_PATTERN, "maxLength": 900},
                        "credentials": {"type": "string", "pattern": SECRET_NAME_PATTERN}
                    }},
                    {"type": "object", "required": ["kind", "url", "secret"], "properties": {
                        "kind": {"const": "webhook"},
                        "url": {"type": "string", "pattern": WEBHOOK_URL_PATTERN, "maxLength": 2048,
                                "description": "A public http(s) endpoint of your system (checked when the export is requested)."},
                        "secret": {"type": "string", "pattern": SECRET_NAME_PATTERN}
                    }}
                ]
            }),
        ),
    ]
}

/// Replaces `schema` (a plain `object` so far) with a reference to the
/// nested schema `name`, keeping its description; `nullable` when `null`
/// also means "none".
fn nest(schema: &mut Map<String, Value>, name: &str, nullable: bool) {
    let description = schema.remove("description");
    schema.clear();
    if nullable {
        schema.insert("anyOf".into(), json!([reference(name), {"type": "null"}]));
    } else {
        schema.insert("$ref".into(), json!(format!("#/components/schemas/{name}")));
    }
    if let Some(description) = description {
        schema.insert("description".into(), description);
    }
}

fn declare_properties(body: &str, properties: &mut Map<String, Value>) {
    for (name, schema) in properties.iter_mut() {
        let Some(schema) = schema.as_object_mut() else { continue };
        let constraints = match name.as_str() {
            "definition" => return_nested(schema, "StyleDefinition", false),
            "defaults" => return_nested(schema, "ShootingDefaults", false),
            "rules" => return_nested(schema, "ShootingRules", false),
            "spec" => return_nested(schema, "ChannelPresetSpec", false),
            "destination" => return_nested(schema, "ExportDestination", false),
            // Left out or `null` on create: no guidelines.
            "guidelines" => return_nested(schema, "LookGuidelines", body == "CreateLook"),
            n if n.ends_with("_id") || n == "subject" || n == "style" => json!({"pattern": ID_PATTERN}),
            "sku" => json!({"pattern": SKU_PATTERN}),
            "category" | "channel" => json!({"pattern": SLUG_PATTERN}),
            "name" | "display_name" => {
                json!({"pattern": TEXT_PATTERN, "maxLength": gps_domain::values::Name::MAX_CHARS})
            }
            // A member is added by address (sign-in takes any text: a wrong
            // address is a wrong credential there, not a malformed request).
            "email" if body == "AddMember" => json!({"pattern": EMAIL_PATTERN, "maxLength": 254}),
            // `auth::check_new_password`.
            "password" if body == "SetPassword" => json!({
                "minLength": crate::auth::MIN_PASSWORD_CHARS,
                "maxLength": crate::auth::MAX_PASSWORD_CHARS
            }),
            "reason" | "comment" | "text" | "description" => {
                json!({"pattern": TEXT_PATTERN, "maxLength": gps_domain::values::Text::MAX_CHARS})
            }
            "role" => json!({"enum": ["owner", "producer", "reviewer", "viewer", "auditor"]}),
            // `gps_domain::look`: 1 to 10 products, each once.
            "products" => json!({
                "items": {"type": "string", "pattern": ID_PATTERN},
                "minItems": 1, "maxItems": gps_domain::look::MAX_PRODUCTS, "uniqueItems": true
            }),
            "predictions" => {
                json!({"items": {"type": "string", "pattern": ID_PATTERN}, "minItems": 1, "maxItems": 1000})
            }
            // `gps_domain::product`: at most 100, names 1 to 100 characters
            // (not only whitespace), values at most 1000.
            "attributes" => json!({
                "maxProperties": gps_domain::product::MAX_ATTRIBUTES,
                "propertyNames": {"type": "string", "minLength": 1, "maxLength": 100, "pattern": "\\S"},
                "additionalProperties": {"type": "string", "maxLength": 1000}
            }),
            // A look's own shot types: at least one when given, each once.
            "shot_types" => json!({
                "items": {"type": "string", "pattern": SLUG_PATTERN},
                "minItems": 1, "maxItems": gps_domain::shooting::MAX_SHOT_TYPES, "uniqueItems": true
            }),
            // At least one when given (left out: the role's defaults).
            "scopes" => json!({
                "items": {"type": "string", "enum": ["read", "produce", "review", "audit", "stream"]},
                "minItems": 1
            }),
            "regions" => json!({"maxItems": gps_domain::prediction::MAX_REGIONS}),
            // `gps_domain::prediction::RegionAnnotation`: fractions of the
            // image, a region above 0 wide and high (its reaching past the
            // edge, `x + width` over 1, is refused too: no schema can add).
            "x" | "y" if body == "Region" => json!({"minimum": 0, "maximum": 1}),
            "width" | "height" if body == "Region" => json!({"exclusiveMinimum": 0, "maximum": 1}),
            "note" if body == "Region" => {
                json!({"pattern": TEXT_PATTERN, "maxLength": gps_domain::values::Text::MAX_CHARS})
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

/// [`nest`], for the table of [`declare_properties`]: nothing more to add.
fn return_nested(schema: &mut Map<String, Value>, name: &str, nullable: bool) -> Value {
    nest(schema, name, nullable);
    Value::Null
}

/// Where an answer leads: from each create to its reads and changes (the new
/// id taken from the answer's `id`, the brand and parent from the path), from
/// each list to the items it lists, and from a brand's first create to the
/// brand's own reads. A generator following them chains create → read →
/// change, as a client does.
fn links_of(operation_id: &str) -> Option<Map<String, Value>> {
    let brand = "$request.path.brand";
    let new_id = "$response.body#/id";
    // (target operation, its parameters besides the brand)
    let targets: Vec<(&str, Vec<(&str, &str)>)> = match operation_id {
        "create_brand" => {
            let mut links = link_names(&[
                ("get_brand", vec![]),
                ("create_product", vec![]),
                ("create_subject", vec![]),
                ("create_style", vec![]),
                ("create_shooting", vec![]),
                ("register_api_client", vec![]),
                ("add_member", vec![]),
                ("list_members", vec![]),
                ("define_channel_preset", vec![]),
            ]);
            // The new brand is the answer's id, not a path parameter.
            for link in links.values_mut() {
                link["parameters"]["brand"] = json!(new_id);
            }
            return Some(links);
        }
        "me" => {
            let mut links = Map::new();
            // A person's brands, or an API key's one brand: the brand's
            // lists, which lead on to what they list.
            for operation in [
                "get_brand",
                "list_products",
                "list_shootings",
                "list_subjects",
                "list_styles",
                "list_predictions",
                "list_generations",
                "list_exports",
                "list_members",
                "list_api_clients",
                "list_channel_presets",
                "list_events",
                "list_activity",
                "audit_trail",
            ] {
                let name: String = link_names(&[(operation, vec![])]).keys().cloned().collect();
                for (prefix, brand) in
                    [("", "$response.body#/brands/0/brand"), ("Key", "$response.body#/brand")]
                {
                    links.insert(
                        format!("{prefix}{name}"),
                        json!({"operationId": operation, "parameters": {"brand": brand}}),
                    );
                }
            }
            return Some(links);
        }
        "create_product" => vec![
            ("get_product", vec![("product", new_id)]),
            ("update_product", vec![("product", new_id)]),
            ("archive_product", vec![("product", new_id)]),
            ("restore_product", vec![("product", new_id)]),
            ("list_product_deliveries", vec![("product", new_id)]),
            ("upload_product_image", vec![("product", new_id)]),
            ("aggregate_history", vec![("aggregate_type", "product"), ("id", new_id)]),
            ("list_products", vec![]),
            // The brand's reads, which no create of its own leads to.
            ("get_brand", vec![]),
            ("list_activity", vec![]),
            ("get_usage", vec![]),
            ("list_events", vec![]),
            ("list_members", vec![]),
            ("list_api_clients", vec![]),
            ("list_channel_presets", vec![]),
            ("define_channel_preset", vec![]),
            ("list_predictions", vec![]),
            ("list_generations", vec![]),
            ("list_exports", vec![]),
            ("list_imports", vec![]),
            ("audit_trail", vec![]),
        ],
        "create_subject" => vec![
            ("get_subject", vec![("subject", new_id)]),
            ("update_subject", vec![("subject", new_id)]),
            ("retire_subject", vec![("subject", new_id)]),
            ("upload_subject_image", vec![("subject", new_id)]),
            ("aggregate_history", vec![("aggregate_type", "subject"), ("id", new_id)]),
            ("list_subjects", vec![]),
        ],
        "create_style" => vec![
            ("get_style", vec![("style", new_id)]),
            ("revise_style", vec![("style", new_id)]),
            ("archive_style", vec![("style", new_id)]),
            ("upload_style_reference", vec![("style", new_id)]),
            ("aggregate_history", vec![("aggregate_type", "style"), ("id", new_id)]),
            ("list_styles", vec![]),
        ],
        "create_shooting" => vec![
            ("get_shooting", vec![("shooting", new_id)]),
            ("rename_shooting", vec![("shooting", new_id)]),
            ("update_shooting_defaults", vec![("shooting", new_id)]),
            ("set_shooting_rules", vec![("shooting", new_id)]),
            ("create_look", vec![("shooting", new_id)]),
            ("list_looks", vec![("shooting", new_id)]),
            ("reopen_shooting", vec![("shooting", new_id)]),
            ("cancel_shooting_launch", vec![("shooting", new_id)]),
            ("complete_shooting", vec![("shooting", new_id)]),
            ("archive_shooting", vec![("shooting", new_id)]),
            ("aggregate_history", vec![("aggregate_type", "shooting"), ("id", new_id)]),
            ("list_shootings", vec![]),
        ],
        "create_look" => {
            let shooting = "$request.path.shooting";
            vec![
                ("get_look", vec![("shooting", shooting), ("look", new_id)]),
                ("rename_look", vec![("shooting", shooting), ("look", new_id)]),
                ("change_look_products", vec![("shooting", shooting), ("look", new_id)]),
                ("change_look_subject", vec![("shooting", shooting), ("look", new_id)]),
                ("change_look_style", vec![("shooting", shooting), ("look", new_id)]),
                ("set_look_guidelines", vec![("shooting", shooting), ("look", new_id)]),
                ("set_look_shot_types", vec![("shooting", shooting), ("look", new_id)]),
                ("remove_look", vec![("shooting", shooting), ("look", new_id)]),
                ("aggregate_history", vec![("aggregate_type", "look"), ("id", new_id)]),
                ("list_looks", vec![("shooting", shooting)]),
                ("launch_shooting", vec![("shooting", shooting)]),
            ]
        }
        "launch_shooting" | "reopen_shooting" => {
            let shooting = "$request.path.shooting";
            // Not on from a reopen to another launch: a generator going round
            // that circle spends its run launching generations.
            if operation_id == "reopen_shooting" {
                vec![
                    ("get_shooting", vec![("shooting", shooting)]),
                    ("list_looks", vec![("shooting", shooting)]),
                ]
            } else {
                vec![
                    ("get_shooting", vec![("shooting", shooting)]),
                    ("cancel_shooting_launch", vec![("shooting", shooting)]),
                    ("complete_shooting", vec![("shooting", shooting)]),
                    ("reopen_shooting", vec![("shooting", shooting)]),
                    ("list_generations", vec![]),
                    ("list_predictions", vec![]),
                ]
            }
        }
        "list_predictions" => {
            let first = "$response.body#/items/0/prediction_id";
            vec![
                ("get_prediction", vec![("prediction", first)]),
                ("approve_prediction", vec![("prediction", first)]),
                ("reject_prediction", vec![("prediction", first)]),
                ("reset_review", vec![("prediction", first)]),
                ("request_revision", vec![("prediction", first)]),
                ("request_video", vec![("prediction", first)]),
                ("comment_on_prediction", vec![("prediction", first)]),
                ("aggregate_history", vec![("aggregate_type", "prediction"), ("id", first)]),
            ]
        }
        "comment_on_prediction"
        | "approve_prediction"
        | "reject_prediction"
        | "request_revision"
        | "reset_review" => {
            let prediction = "$request.path.prediction";
            let mut targets = vec![("get_prediction", vec![("prediction", prediction)])];
            // A review can be reset, and a reset prediction reviewed again.
            if operation_id == "reset_review" {
                targets.push(("approve_prediction", vec![("prediction", prediction)]));
                targets.push(("reject_prediction", vec![("prediction", prediction)]));
            } else if operation_id != "comment_on_prediction" {
                targets.push(("reset_review", vec![("prediction", prediction)]));
            }
            if operation_id == "approve_prediction" {
                targets.push(("request_video", vec![("prediction", prediction)]));
            }
            let mut links = link_names(&targets);
            for link in links.values_mut() {
                link["parameters"]["brand"] = json!(brand);
            }
            if operation_id == "approve_prediction" {
                // An approved prediction can be exported: as a zip to
                // download, formatted by a built-in preset.
                links.insert(
                    "RequestExport".into(),
                    json!({"operationId": "request_export", "parameters": {"brand": brand}, "requestBody": {
                        "predictions": ["$request.path.prediction"],
                        "channel": "web-pdp",
                        "destination": {"kind": "zip_download"}
                    }}),
                );
            }
            return Some(links);
        }
        "archive_product" => vec![
            ("restore_product", vec![("product", "$request.path.product")]),
            ("get_product", vec![("product", "$request.path.product")]),
        ],
        "list_generations" => {
            let first = "$response.body#/items/0/generation_id";
            vec![
                ("get_generation", vec![("generation", first)]),
                ("cancel_generation", vec![("generation", first)]),
                ("retry_generation", vec![("generation", first)]),
                ("aggregate_history", vec![("aggregate_type", "generation"), ("id", first)]),
            ]
        }
        "request_export" => vec![
            ("get_export", vec![("export", new_id)]),
            ("download_export", vec![("export", new_id)]),
            ("aggregate_history", vec![("aggregate_type", "export"), ("id", new_id)]),
            ("list_exports", vec![]),
        ],
        "list_products" => {
            let first = "$response.body#/items/0/product_id";
            vec![
                ("get_product", vec![("product", first)]),
                ("update_product", vec![("product", first)]),
                ("list_product_deliveries", vec![("product", first)]),
            ]
        }
        "list_shootings" => {
            let first = "$response.body#/items/0/shooting_id";
            vec![
                ("get_shooting", vec![("shooting", first)]),
                ("list_looks", vec![("shooting", first)]),
                ("create_look", vec![("shooting", first)]),
            ]
        }
        "list_looks" => {
            let shooting = "$request.path.shooting";
            let first = "$response.body#/items/0/look_id";
            vec![
                ("get_look", vec![("shooting", shooting), ("look", first)]),
                ("rename_look", vec![("shooting", shooting), ("look", first)]),
                ("launch_shooting", vec![("shooting", shooting)]),
            ]
        }
        "list_channel_presets" => {
            vec![("remove_channel_preset", vec![("channel", "$response.body#/items/0/channel")])]
        }
        "list_exports" => {
            let first = "$response.body#/items/0/export_id";
            vec![("get_export", vec![("export", first)]), ("download_export", vec![("export", first)])]
        }
        "start_import" => {
            let import = "$response.body#/import_id";
            vec![
                ("get_import", vec![("import", import)]),
                ("import_errors", vec![("import", import)]),
                ("cancel_import", vec![("import", import)]),
                ("aggregate_history", vec![("aggregate_type", "import"), ("id", import)]),
                ("list_imports", vec![]),
            ]
        }
        "list_imports" => {
            let first = "$response.body#/items/0/import_id";
            vec![
                ("get_import", vec![("import", first)]),
                ("import_errors", vec![("import", first)]),
                ("cancel_import", vec![("import", first)]),
            ]
        }
        "register_api_client" => {
            vec![("revoke_api_client", vec![("client", new_id)]), ("list_api_clients", vec![])]
        }
        "list_api_clients" => {
            vec![("revoke_api_client", vec![("client", "$response.body#/items/0/api_client_id")])]
        }
        "add_member" => vec![
            ("change_role", vec![("member", new_id)]),
            ("remove_member", vec![("member", new_id)]),
            ("list_members", vec![]),
        ],
        "list_members" => {
            let first = "$response.body#/items/0/member_id";
            vec![("change_role", vec![("member", first)]), ("remove_member", vec![("member", first)])]
        }
        "define_channel_preset" => vec![
            ("remove_channel_preset", vec![("channel", "$request.path.channel")]),
            ("list_channel_presets", vec![]),
        ],
        // Not on to archiving or retiring: the first item is often one the
        // seeded shootings use.
        "list_styles" => {
            let first = "$response.body#/items/0/style_id";
            vec![
                ("get_style", vec![("style", first)]),
                ("revise_style", vec![("style", first)]),
                ("upload_style_reference", vec![("style", first)]),
            ]
        }
        "list_subjects" => {
            let first = "$response.body#/items/0/subject_id";
            vec![
                ("get_subject", vec![("subject", first)]),
                ("update_subject", vec![("subject", first)]),
                ("upload_subject_image", vec![("subject", first)]),
            ]
        }
        // A session leads to who signed in, a chosen password to signing in
        // (neither has a brand in its path).
        "sign_in" => return Some(link_names(&[("me", vec![])])),
        "set_password" => return Some(link_names(&[("sign_in", vec![])])),
        _ => return None,
    };
    let mut links = link_names(&targets);
    for link in links.values_mut() {
        link["parameters"]["brand"] = json!(brand);
    }
    Some(links)
}

/// Links named after their targets (`get_look` → `GetLook`; a second link to
/// the same operation is told apart by its parameters' values).
fn link_names(targets: &[(&str, Vec<(&str, &str)>)]) -> Map<String, Value> {
    let mut links = Map::new();
    for (operation, parameters) in targets {
        let mut name: String = operation
            .split('_')
            .map(|word| {
                let mut chars = word.chars();
                chars
                    .next()
                    .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                    .unwrap_or_default()
            })
            .collect();
        if *operation == "aggregate_history"
            && let Some((_, kind)) = parameters.iter().find(|(name, _)| *name == "aggregate_type")
        {
            name = format!("{}History", kind[..1].to_ascii_uppercase() + &kind[1..]);
        }
        let parameters: Map<String, Value> =
            parameters.iter().map(|(name, value)| ((*name).to_owned(), json!(value))).collect();
        links.insert(name, json!({"operationId": operation, "parameters": parameters}));
    }
    links
}
