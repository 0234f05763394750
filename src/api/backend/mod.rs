//! The server API for backends (protocol §7): publishing (one message or a
//! batch), broadcasts, history and presence, and control of users' live
//! sessions (disconnect, join, leave) on every node. Every route needs the
//! API key; its OpenAPI 3 document is generated from these handlers and
//! their types, and served at `/api/openapi.json`. The nodes and rooms
//! routes feed the operator's page (`/admin`).

mod access;
mod amend;
mod control;
pub(crate) mod fuzzing;
mod messages;
mod stats;

use axum::Router;
use axum::http::header;
use axum::routing::get;
use utoipa::OpenApi;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::gateway::Gateway;

/// The document's fixed parts; the paths come from the handlers.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "rtgate server API",
        description = "For backends: publish, broadcast, history, presence, and control of live sessions. \
                       Every route takes `Authorization: apikey <key>`.",
    ),
    modifiers(&KeyAuth),
    security(("apikey" = [])),
)]
struct ApiDoc;

/// `Authorization: apikey <key>`.
struct KeyAuth;

impl utoipa::Modify for KeyAuth {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "apikey",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Authorization",
                "`apikey <key>` with the node's --api-key",
            ))),
        );
    }
}

/// The API's routes, and `/api/openapi.json` describing them.
pub(crate) fn router() -> Router<Gateway> {
    let (router, api) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(messages::publish))
        .routes(routes!(messages::broadcast))
        .routes(routes!(messages::history))
        .routes(routes!(amend::amend))
        .routes(routes!(control::presence))
        .routes(routes!(control::disconnect))
        .routes(routes!(control::join))
        .routes(routes!(control::leave))
        .routes(routes!(stats::nodes))
        .routes(routes!(stats::rooms))
        .routes(routes!(stats::events))
        .split_for_parts();
    let doc = api
        .to_pretty_json()
        .expect("the OpenAPI document serializes");
    router.route(
        "/api/openapi.json",
        get(move || async move { ([(header::CONTENT_TYPE, "application/json")], doc) }),
    )
}
