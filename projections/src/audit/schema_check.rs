//! Checks a JSON value against a JSON Schema as `schemas/` publishes them, so
//! an export bundle's payloads are checked against the bundle's own schema
//! files, not only against this build's decoders.
//!
//! It covers the keywords the generated schemas use: `type`, `const`, `enum`,
//! `properties`, `required`, `additionalProperties`, `items`, `$ref` into
//! `$defs`, `oneOf`, `anyOf`, `allOf`, `minLength`/`maxLength`,
//! `minimum`/`maximum`, `minItems`/`maxItems`. `pattern` and `format` are left
//! to the typed decoders, which parse every id and value type anyway; an
//! unknown keyword is ignored, as JSON Schema prescribes.

use serde_json::Value;

/// Checks `value` against `schema` (whose `$defs` resolve `$ref`s); the
/// error names the JSON pointer at fault and why.
pub fn check(schema: &Value, value: &Value) -> Result<(), String> {
    check_at(schema, schema, value, "")
}

fn type_matches(name: &str, value: &Value) -> bool {
    match name {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "number" => value.is_number(),
        "integer" => value.as_i64().is_some() || value.as_u64().is_some(),
        _ => true,
    }
}

fn check_at(root: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    let Some(schema) = schema.as_object() else {
        // `true` accepts everything, `false` nothing.
        return if schema.as_bool() == Some(false) {
            Err(format!("{at}: no value is allowed here"))
        } else {
            Ok(())
        };
    };
    let here = if at.is_empty() { "/" } else { at };
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        let target = reference
            .strip_prefix("#/")
            .and_then(|path| path.split('/').try_fold(root, |node, key| node.get(key)))
            .ok_or_else(|| format!("{here}: the schema's $ref {reference} does not resolve"))?;
        check_at(root, target, value, at)?;
    }
    if let Some(types) = schema.get("type") {
        let names: Vec<&str> = match types {
            Value::String(name) => vec![name.as_str()],
            Value::Array(names) => names.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if !names.is_empty() && !names.iter().any(|name| type_matches(name, value)) {
            return Err(format!("{here}: expected {}, found {value}", names.join(" or ")));
        }
    }
    if let Some(expected) = schema.get("const")
        && expected != value
    {
        return Err(format!("{here}: expected {expected}, found {value}"));
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        return Err(format!("{here}: {value} is not one of {}", Value::Array(allowed.clone())));
    }
    if let Some(text) = value.as_str() {
        let length = text.chars().count() as u64;
        if schema.get("minLength").and_then(Value::as_u64).is_some_and(|min| length < min) {
            return Err(format!("{here}: shorter than its minLength"));
        }
        if schema.get("maxLength").and_then(Value::as_u64).is_some_and(|max| length > max) {
            return Err(format!("{here}: longer than its maxLength"));
        }
    }
    if let Some(number) = value.as_f64() {
        if schema.get("minimum").and_then(Value::as_f64).is_some_and(|min| number < min) {
            return Err(format!("{here}: {value} is below its minimum"));
        }
        if schema.get("maximum").and_then(Value::as_f64).is_some_and(|max| number > max) {
            return Err(format!("{here}: {value} is above its maximum"));
        }
    }
    if let Some(items) = value.as_array() {
        let count = items.len() as u64;
        if schema.get("minItems").and_then(Value::as_u64).is_some_and(|min| count < min) {
            return Err(format!("{here}: fewer items than its minItems"));
        }
        if schema.get("maxItems").and_then(Value::as_u64).is_some_and(|max| count > max) {
            return Err(format!("{here}: more items than its maxItems"));
        }
        if let Some(item_schema) = schema.get("items") {
            for (index, item) in items.iter().enumerate() {
                check_at(root, item_schema, item, &format!("{at}/{index}"))?;
            }
        }
    }
    if let Some(object) = value.as_object() {
        let properties = schema.get("properties").and_then(Value::as_object);
        for name in
            schema.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str)
        {
            if !object.contains_key(name) {
                return Err(format!("{here}: the required field {name:?} is missing"));
            }
        }
        for (name, field) in object {
            let path = format!("{at}/{name}");
            match properties.and_then(|p| p.get(name)) {
                Some(field_schema) => check_at(root, field_schema, field, &path)?,
                None => match schema.get("additionalProperties") {
                    Some(Value::Bool(false)) => return Err(format!("{path}: not a field of this schema")),
                    Some(extra) if extra.is_object() => check_at(root, extra, field, &path)?,
                    _ => {}
                },
            }
        }
    }
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        for part in all {
            check_at(root, part, value, at)?;
        }
    }
    if let Some(any) = schema.get("anyOf").and_then(Value::as_array) {
        let failures: Vec<String> =
            any.iter().filter_map(|part| check_at(root, part, value, at).err()).collect();
        if failures.len() == any.len() {
            return Err(format!("{here}: matches none of its alternatives ({})", failures.join("; ")));
        }
    }
    if let Some(one) = schema.get("oneOf").and_then(Value::as_array) {
        let matching = one.iter().filter(|part| check_at(root, part, value, at).is_ok()).count();
        if matching != 1 {
            return Err(format!("{here}: matches {matching} of its oneOf alternatives, not exactly one"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({
            "$defs": {"Role": {"oneOf": [{"const": "owner", "type": "string"}, {"const": "viewer", "type": "string"}]}},
            "type": "object",
            "additionalProperties": false,
            "required": ["name", "role"],
            "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 5},
                "role": {"$ref": "#/$defs/Role"},
                "tags": {"type": "array", "items": {"type": "string"}},
                "seed": {"type": ["integer", "null"], "minimum": 0}
            }
        })
    }

    #[test]
    fn a_matching_value_passes() {
        assert_eq!(
            check(&schema(), &json!({"name": "ana", "role": "owner", "tags": ["a"], "seed": null})),
            Ok(())
        );
    }

    #[test]
    fn each_kind_of_mismatch_is_named_with_its_place() {
        let cases = [
            (json!({"role": "owner"}), "\"name\" is missing"),
            (json!({"name": "ana", "role": "king"}), "/role"),
            (json!({"name": "", "role": "owner"}), "/name: shorter"),
            (json!({"name": "ana", "role": "owner", "extra": 1}), "/extra: not a field"),
            (json!({"name": "ana", "role": "owner", "tags": [1]}), "/tags/0: expected string"),
            (json!({"name": "ana", "role": "owner", "seed": -1}), "/seed: -1 is below"),
            (json!({"name": "ana", "role": "owner", "seed": 1.5}), "/seed: expected integer"),
        ];
        for (value, expected) in cases {
            let error = check(&schema(), &value).expect_err(&value.to_string());
            assert!(error.contains(expected), "{value}: {error}");
        }
    }
}
