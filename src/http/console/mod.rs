//! `/ops/console`: the ops console, a web page over the ops API, with an
//! Account view over the user API.
//!
//! The page and its assets (HTML, CSS, JavaScript modules under
//! `src/http/console/assets/`) are compiled into the binary
//! ([`ASSETS`], `include_bytes!`): nothing is fetched from elsewhere, and no
//! build step runs. They are anonymous static content; every figure the ops
//! views show comes from the ops API with `Authorization: Bearer <ops
//! token>`, which the page keeps in `sessionStorage` (never in a URL). The
//! Account view signs a user in with e-mail and password and keeps the token
//! pair in a module variable only (`account-api.js`): never in storage, a
//! cookie or a URL, and never sent by the ops views.
//!
//! Every response here carries a strict Content-Security-Policy (no inline
//! script or style, nothing from other origins, no framing, no form
//! submission: a sign-in form submitted without its script cannot put the
//! token anywhere), `X-Content-Type-Options: nosniff` and
//! `Referrer-Policy: no-referrer`.
//!
//! Routes: `GET /ops/console` (the page), `GET /ops/console/assets/{file}`
//! (one route template, so an unknown file is a 404 under that template's
//! metrics label, not a series of its own), and `GET /ops/console/config`
//! (ops token): what the page adapts to. Only the last is in the OpenAPI
//! document; the page and its assets are not part of the API.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Json;
use serde::Serialize;
use troupe_actors::events::EventKind;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Operator;
use super::error::{ApiError, Problem};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(config))
        .route("/ops/console", get(page))
        .route("/ops/console/assets/{file}", get(asset))
        .layer(axum::middleware::map_response(security_headers))
}

/// What the page may load and do: its own scripts, styles and API only.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'none'";

/// One embedded file: its name under `assets/` and its content type.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $type:expr) => {
        Asset {
            name: $name,
            content_type: $type,
            body: include_bytes!(concat!("assets/", $name)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// The page, served at `/ops/console` itself.
const PAGE: Asset = asset!("index.html", "text/html; charset=utf-8");

/// Its files, served under `/ops/console/assets/`.
const ASSETS: &[Asset] = &[
    asset!("console.css", "text/css; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
    asset!("main.js", JS),
    asset!("api.js", JS),
    asset!("dom.js", JS),
    asset!("actors.js", JS),
    asset!("faults.js", JS),
    asset!("bulk.js", JS),
    asset!("queue.js", JS),
    asset!("chart.js", JS),
    asset!("events.js", JS),
    asset!("sse.js", JS),
    asset!("fleet.js", JS),
    asset!("account.js", JS),
    asset!("account-api.js", JS),
];

fn find(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|asset| asset.name == name)
}

/// An asset as a response. `no-cache`: the browser revalidates, so a new
/// binary's page is never mixed with an old one's modules.
fn serve(asset: &Asset) -> Response {
    (
        [
            (header::CONTENT_TYPE, asset.content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        asset.body,
    )
        .into_response()
}

/// `GET /ops/console`: the page (anonymous: it holds no data).
async fn page() -> Response {
    serve(&PAGE)
}

/// `GET /ops/console/assets/{file}`: one of the page's files, or 404 (also
/// for a name that is not UTF-8 once percent-decoded).
async fn asset(file: Result<Path<String>, PathRejection>) -> Result<Response, ApiError> {
    file.ok()
        .and_then(|Path(file)| find(&file))
        .map(serve)
        .ok_or_else(|| ApiError::NotFound("no such console asset".into()))
}

/// The console's headers, on every response of its routes (errors too).
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let set = [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ];
    for (name, value) in set {
        headers.insert::<HeaderName>(name, HeaderValue::from_static(value));
    }
    response
}

/// What the console adapts to on this instance.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConsoleConfig {
    /// The instance that answered (its id, as `/ops/cluster` lists it).
    #[schema(example = "web-1-4242-a1b2c3")]
    pub instance: String,
    /// Whether `POST /ops/actors/{name}/fault` is enabled (`ops.fault_injection`).
    pub fault_injection: bool,
    /// Every event kind `GET /ops/events?kinds=` accepts.
    pub event_kinds: Vec<&'static str>,
}

/// What the ops console needs to know before it draws: this instance's id,
/// whether fault injection is on, the event kinds. The console also calls it
/// to check an ops token at sign-in.
#[utoipa::path(get, path = "/ops/console/config", tag = "Ops", security(("ops-token" = [])), responses(
    (status = 200, body = ConsoleConfig),
    (status = 401, description = "Missing or wrong ops token", body = Problem, content_type = "application/problem+json"),
))]
#[tracing::instrument(skip_all)]
async fn config(State(state): State<AppState>, _operator: Operator) -> Json<ConsoleConfig> {
    Json(ConsoleConfig {
        instance: state.actors.fleet.instance().to_owned(),
        fault_injection: state.settings.ops.fault_injection,
        event_kinds: EventKind::names().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_the_page_names_is_embedded() {
        let page = std::str::from_utf8(PAGE.body).unwrap();
        for part in page.split("/ops/console/assets/").skip(1) {
            let name = part.split('"').next().unwrap();
            assert!(
                find(name).is_some(),
                "index.html names {name}, not embedded"
            );
        }
    }

    #[test]
    fn every_module_import_is_embedded() {
        // `import … from "./x.js"`: a module the table misses would 404 in the browser.
        for asset in ASSETS.iter().filter(|a| a.name.ends_with(".js")) {
            let source = std::str::from_utf8(asset.body).unwrap();
            for part in source.split("from \"./").skip(1) {
                let name = part.split('"').next().unwrap();
                assert!(
                    find(name).is_some(),
                    "{} imports {name}, not embedded",
                    asset.name
                );
            }
        }
    }

    #[test]
    fn no_asset_has_inline_script_or_style() {
        let page = std::str::from_utf8(PAGE.body).unwrap();
        assert!(!page.contains("<script>") && !page.contains("style="));
        assert!(
            !page.contains("<style"),
            "inline <style> is refused by the CSP"
        );
        // No inline event handlers (`onclick=…`): an attribute named on<letters>=.
        let handler = page.split(" on").skip(1).any(|rest| {
            let name: String = rest.chars().take_while(char::is_ascii_lowercase).collect();
            !name.is_empty() && rest[name.len()..].starts_with('=')
        });
        assert!(!handler, "an inline event handler in index.html");
    }
}
