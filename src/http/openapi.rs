//! The OpenAPI document: [`ApiDoc`] (title, tags, shared schemas), the
//! bearer schemes (`SecuritySchemes`), and [`document_common_responses`], which adds
//! the responses every operation of a kind can give. Each operation documents
//! itself beside its handler (`#[utoipa::path]`); `super::routes` collects them.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "Troupe", description = "An actor-system backend: JWT auth, a Redis read-through cache, a persistent job queue."),
    modifiers(&SecuritySchemes),
    tags(
        (name = "Auth", description = "Sign-up, login, token refresh and logout"),
        (name = "Users", description = "User profiles"),
        (name = "Jobs", description = "The persistent job queue (ops token)"),
        (name = "Logs", description = "Categorised log files (ops token)"),
        (name = "Ops", description = "Actor introspection, fault injection, events, the fleet (ops token)"),
        (name = "App", description = "Service information and health probes"),
    ),
    components(schemas(
        super::error::Problem,
        super::error::FieldError,
        super::ops::HandlingView,
        super::ops::FailureView,
        super::ops::PoolView,
        super::ops::CacheView,
        super::ops::LocalTierView,
        super::ops::ActorNode,
        super::ops::DeadLetterView,
        super::ops::WaitView,
    )),
)]
pub struct ApiDoc;

/// Bearer schemes: `access-token` for user endpoints, `refresh-token` for
/// `/users/refresh`, `ops-token` for operators.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for (name, what) in [
            (
                "access-token",
                "An access token from signup, login or refresh",
            ),
            (
                "refresh-token",
                "A refresh token from signup, login or refresh",
            ),
            ("ops-token", "The operator token (OPS_TOKEN)"),
            (
                "metrics-token",
                "The metrics token (METRICS_TOKEN), when /metrics requires one",
            ),
        ] {
            components.add_security_scheme(
                name,
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .bearer_format("JWT")
                        .description(Some(what))
                        .build(),
                ),
            );
        }
    }
}

/// The responses every operation of a kind can give, documented once here
/// rather than on each handler: 408/413/415 wherever a JSON body is read, 503
/// wherever an actor or store answers (an actor restarting, MongoDB
/// unreachable, a timeout).
pub fn document_common_responses(openapi: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{RefOr, ResponseBuilder};
    let problem = |what: &str| {
        RefOr::T(
            ResponseBuilder::new()
                .description(what)
                .content(
                    "application/problem+json",
                    utoipa::openapi::ContentBuilder::new()
                        .schema(Some(utoipa::openapi::Ref::from_schema_name("Problem")))
                        .build(),
                )
                .build(),
        )
    };
    for (path, item) in openapi.paths.paths.iter_mut() {
        let always_up = ["/", "/health/live", "/health/ready", "/metrics"].contains(&path.as_str());
        for operation in [
            &mut item.get,
            &mut item.post,
            &mut item.patch,
            &mut item.put,
            &mut item.delete,
        ]
        .into_iter()
        .flatten()
        {
            let responses = &mut operation.responses.responses;
            if operation.request_body.is_some() {
                responses
                    .entry("413".into())
                    .or_insert_with(|| problem("Body too large"));
                responses
                    .entry("415".into())
                    .or_insert_with(|| problem("Body is not application/json"));
                responses
                    .entry("408".into())
                    .or_insert_with(|| problem("Body not received within server.body_timeout"));
            }
            if !always_up {
                responses
                    .entry("503".into())
                    .or_insert_with(|| problem("Temporarily unavailable (an actor restarting, the store unreachable, a timeout)"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use utoipa::openapi::path::Operation;

    use super::*;

    fn operations(doc: &utoipa::openapi::OpenApi) -> Vec<(String, &Operation)> {
        let mut all = Vec::new();
        for (path, item) in &doc.paths.paths {
            for operation in [&item.get, &item.post, &item.patch, &item.put, &item.delete]
                .into_iter()
                .flatten()
            {
                all.push((path.clone(), operation));
            }
        }
        all
    }

    #[test]
    fn every_body_reading_operation_documents_408_413_and_415() {
        let doc = crate::http::openapi_document();
        let readers: Vec<_> = operations(&doc)
            .into_iter()
            .filter(|(_, op)| op.request_body.is_some())
            .collect();
        assert!(readers.iter().any(|(path, _)| path == "/users/signup"));
        for (path, op) in readers {
            for status in ["408", "413", "415"] {
                assert!(
                    op.responses.responses.contains_key(status),
                    "{path} {status}"
                );
            }
        }
    }

    #[test]
    fn every_operation_but_the_probes_and_the_root_documents_503() {
        let doc = crate::http::openapi_document();
        for (path, op) in operations(&doc) {
            let has_503 = op.responses.responses.contains_key("503");
            match path.as_str() {
                // Readiness documents its own 503 (a failing dependency).
                "/" | "/health/live" | "/metrics" => assert!(!has_503, "{path}"),
                "/health/ready" => {}
                _ => assert!(has_503, "{path}"),
            }
        }
    }

    #[test]
    fn the_four_bearer_schemes_are_declared() {
        let doc = ApiDoc::openapi();
        let schemes = &doc.components.expect("components").security_schemes;
        for name in [
            "access-token",
            "refresh-token",
            "ops-token",
            "metrics-token",
        ] {
            assert!(schemes.contains_key(name), "{name}");
        }
    }

    /// Every `$ref` in `value`.
    fn refs<'a>(value: &'a serde_json::Value, out: &mut Vec<&'a str>) {
        match value {
            serde_json::Value::Object(map) => {
                if let Some(serde_json::Value::String(target)) = map.get("$ref") {
                    out.push(target);
                }
                map.values().for_each(|child| refs(child, out));
            }
            serde_json::Value::Array(items) => items.iter().for_each(|item| refs(item, out)),
            _ => {}
        }
    }

    /// A `$ref` to a schema the document does not hold makes client
    /// generators (openapi-python-client) drop every schema that names it
    /// and the response types of the operations answering them.
    #[test]
    fn every_ref_names_a_schema_the_document_holds() {
        let doc = serde_json::to_value(crate::http::openapi_document()).unwrap();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        let mut found = Vec::new();
        refs(&doc, &mut found);
        assert!(found.len() > 20, "the walk finds the refs: {}", found.len());
        for target in found {
            let name = target.trim_start_matches("#/components/schemas/");
            assert!(
                schemas.contains_key(name),
                "{target} is not a schema of the document"
            );
        }
    }

    /// Doc comments become the document's descriptions: an intra-doc link
    /// there (`[`Type`]`) names code the API's readers cannot see.
    #[test]
    fn no_description_links_to_the_code() {
        fn walk(value: &serde_json::Value, leaks: &mut Vec<String>) {
            match value {
                serde_json::Value::Object(map) => {
                    if let Some(serde_json::Value::String(text)) = map.get("description") {
                        if text.contains("[`") {
                            leaks.push(text.clone());
                        }
                    }
                    map.values().for_each(|child| walk(child, leaks));
                }
                serde_json::Value::Array(items) => items.iter().for_each(|item| walk(item, leaks)),
                _ => {}
            }
        }
        let mut leaks = Vec::new();
        walk(
            &serde_json::to_value(crate::http::openapi_document()).unwrap(),
            &mut leaks,
        );
        assert!(leaks.is_empty(), "{leaks:#?}");
    }
}
