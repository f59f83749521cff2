//! The OpenAPI 3.1 document of `/api/v1`, generated from the handlers'
//! annotations and the request/response types, served at
//! `/api/v1/openapi.json` and checked in as `gateway/openapi.json` (a test
//! fails when they differ: `GPS_UPDATE_OPENAPI=1 cargo test -p gps-gateway`
//! rewrites it).

use utoipa::Modify;
use utoipa::OpenApi;
use utoipa::openapi::extensions::ExtensionsBuilder;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};

use crate::routes::{self, actions};
use crate::{audit, configure, events, imports, live, operate, queries, review, uploads};

/// The API description.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "GPS API",
        version = "1",
        description = "The Generative Production System's HTTP API. Commands answer with the stream \
                       sequence they were recorded at (`gps-stream-sequence`); `Idempotency-Key` makes a \
                       command safe to retry. Errors are RFC 9457 problem documents. Brand-scoped \
                       operations carry `x-gps-action`: the role permission they need."
    ),
    paths(
        routes::sign_in,
        routes::sign_out,
        routes::me,
        routes::set_password,
        routes::create_brand,
        routes::add_member,
        routes::change_role,
        routes::remove_member,
        routes::register_api_client,
        routes::revoke_api_client,
        routes::create_product,
        routes::update_product,
        routes::archive_product,
        routes::restore_product,
        configure::create_subject,
        configure::update_subject,
        configure::retire_subject,
        configure::create_style,
        configure::revise_style,
        configure::archive_style,
        configure::create_shooting,
        configure::rename_shooting,
        configure::update_shooting_defaults,
        configure::set_shooting_rules,
        configure::launch_shooting,
        configure::reopen_shooting,
        configure::cancel_shooting_launch,
        configure::complete_shooting,
        configure::archive_shooting,
        configure::create_look,
        configure::rename_look,
        configure::change_look_products,
        configure::change_look_subject,
        configure::change_look_style,
        configure::set_look_guidelines,
        configure::set_look_shot_types,
        configure::remove_look,
        review::approve_prediction,
        review::reject_prediction,
        review::request_revision,
        review::request_video,
        review::comment_on_prediction,
        review::reset_review,
        operate::cancel_generation,
        operate::retry_generation,
        operate::define_channel_preset,
        operate::remove_channel_preset,
        operate::request_export,
        live::live,
        events::list_events,
        queries::get_brand,
        queries::list_members,
        queries::list_api_clients,
        queries::list_channel_presets,
        queries::list_products,
        queries::get_product,
        queries::list_subjects,
        queries::get_subject,
        queries::list_styles,
        queries::get_style,
        queries::list_shootings,
        queries::get_shooting,
        queries::list_looks,
        queries::get_look,
        queries::list_generations,
        queries::get_generation,
        queries::list_predictions,
        queries::get_prediction,
        queries::list_exports,
        queries::get_export,
        queries::download_export,
        queries::list_product_deliveries,
        queries::list_activity,
        queries::get_usage,
        audit::aggregate_history,
        audit::audit_trail,
        uploads::upload_product_image,
        uploads::upload_subject_image,
        uploads::upload_style_reference,
        imports::start_import,
        imports::list_imports,
        imports::get_import,
        imports::import_errors,
        imports::cancel_import,
    ),
    components(schemas(crate::error::Problem)),
    modifiers(&SecurityAndActions)
)]
pub struct ApiDoc;

struct SecurityAndActions;

impl Modify for SecurityAndActions {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                crate::auth::SESSION_COOKIE,
                "Set by POST /api/v1/session (named `__Host-gps_session` and `Secure` when served over HTTPS). \
                 Writes must also send the x-csrf-token header.",
            ))),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API key of one brand: `Authorization: Bearer gps_…`"))
                    .build(),
            ),
        );
        for item in openapi.paths.paths.values_mut() {
            for operation in [&mut item.get, &mut item.post, &mut item.put, &mut item.patch, &mut item.delete]
                .into_iter()
                .flatten()
            {
                let Some(id) = operation.operation_id.as_deref() else { continue };
                if let Some((_, action)) = actions::BY_OPERATION.iter().find(|(name, _)| *name == id) {
                    let name = format!("{action:?}").to_lowercase();
                    operation.extensions = Some(
                        ExtensionsBuilder::new().add("x-gps-action", serde_json::Value::String(name)).build(),
                    );
                }
            }
        }
    }
}

/// The document as served and checked in: pretty JSON with a final newline.
pub fn document() -> String {
    let mut document = serde_json::to_value(ApiDoc::openapi())
        .unwrap_or_else(|e| serde_json::json!({"error": e.to_string()}));
    crate::openapi_rules::declare(&mut document);
    // Keys in order whatever the build: a workspace build can unify
    // serde_json's `preserve_order` feature in, which keeps insertion order.
    document.sort_all_objects();
    let mut json =
        serde_json::to_string_pretty(&document).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    json.push('\n');
    json
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Relative to the package (cargo runs unit tests there): a path baked in
    /// at compile time would name another checkout when two checkouts share
    /// one target directory.
    fn checked_in() -> std::path::PathBuf {
        std::path::PathBuf::from("openapi.json")
    }

    #[test]
    fn the_checked_in_openapi_document_matches_the_code() {
        let generated = document();
        if std::env::var_os("GPS_UPDATE_OPENAPI").is_some() {
            std::fs::write(checked_in(), &generated).expect("write openapi.json");
        }
        let stored = std::fs::read_to_string(checked_in()).unwrap_or_default();
        let first_difference = stored
            .lines()
            .zip(generated.lines())
            .position(|(stored, generated)| stored != generated)
            .map_or_else(|| "in its length".to_owned(), |line| format!("at line {}", line + 1));
        assert!(
            stored == generated,
            "gateway/openapi.json differs from the code ({first_difference}); review the change and run \
             `GPS_UPDATE_OPENAPI=1 cargo test -p gps-gateway` to rewrite it"
        );
    }

    /// Every `$ref` in `value`, with where it was found.
    fn references(value: &serde_json::Value, at: &str, found: &mut Vec<(String, String)>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, item) in map {
                    match (key.as_str(), item) {
                        ("$ref", serde_json::Value::String(target)) => {
                            found.push((at.to_owned(), target.clone()))
                        }
                        _ => references(item, &format!("{at}/{key}"), found),
                    }
                }
            }
            serde_json::Value::Array(items) => {
                for (index, item) in items.iter().enumerate() {
                    references(item, &format!("{at}/{index}"), found);
                }
            }
            _ => {}
        }
    }

    #[test]
    fn every_reference_in_the_document_resolves() {
        let document: serde_json::Value = serde_json::from_str(&document()).expect("json");
        let mut found = Vec::new();
        references(&document, "#", &mut found);
        assert!(!found.is_empty(), "the document has no references at all");
        let dangling: Vec<String> = found
            .iter()
            .filter(|(_, target)| {
                let Some(pointer) = target.strip_prefix('#') else { return true };
                document.pointer(pointer).is_none()
            })
            .map(|(at, target)| format!("{at} -> {target}"))
            .collect();
        assert!(dangling.is_empty(), "references that resolve to nothing:\n{}", dangling.join("\n"));
    }

    #[test]
    fn the_document_is_openapi_3_1_and_every_brand_operation_names_its_action() {
        let document: serde_json::Value = serde_json::from_str(&document()).expect("json");
        assert!(
            document["openapi"].as_str().is_some_and(|v| v.starts_with("3.1")),
            "{}",
            document["openapi"]
        );
        let paths = document["paths"].as_object().expect("paths");
        let mut brand_operations = 0;
        for (path, item) in paths {
            for (method, operation) in item.as_object().expect("item") {
                if path.contains("{brand}") {
                    brand_operations += 1;
                    assert!(operation["x-gps-action"].is_string(), "{method} {path} lacks x-gps-action");
                }
            }
        }
        assert_eq!(brand_operations, actions::BY_OPERATION.len());
    }
}
