//! rtgate: a realtime messaging gateway. Browsers reach it over WebTransport
//! or WebSocket; both sit behind one session trait, so routing, storage and
//! auth never care which transport a user came on.
//!
//! The tree is the architecture, and imports point one way, down this list:
//! - [`protocol`]: the wire model, pure and tested on its own;
//! - [`model`]: shared domain types, the clock and the one fan-out plan;
//! - `transport`: the session trait and its WebSocket and WebTransport
//!   implementations;
//! - `hooks`: calls to the backend's connect, publish and join hooks;
//! - [`hub`]: this node's sessions by user and room, non-blocking delivery;
//! - [`store`] and `broker`: message logs, acks, dedupe, replay; moving
//!   envelopes between nodes and cluster presence (both over `redis_io` in
//!   cluster mode);
//! - `routing`: the publish path; `webhook`: events to the backend from
//!   the store's outbox;
//! - `session`: the per-connection driver (login, commands, heartbeat);
//! - `admission`, `api` and `quic`: the edges that accept connections;
//! - [`server`]: wiring and drain; `main.rs` on top.
//!
//! Beside them, imported from above: [`config`], [`certs`], `auth`,
//! `telemetry`, and `gateway` (the node's shared state handed to sessions
//! and handlers).

pub(crate) mod admission;
pub(crate) mod api;
pub(crate) mod auth;
pub(crate) mod broker;
pub(crate) mod budgets;
pub(crate) mod caps;
pub mod certs;
pub(crate) mod chat;
pub mod config;
#[doc(hidden)]
pub mod fuzzing;
pub(crate) mod gateway;
pub(crate) mod hooks;
pub mod hub;
#[cfg(test)]
mod layers;
pub mod model;
pub mod protocol;
pub(crate) mod push;
pub(crate) mod quic;
pub(crate) mod redis_io;
pub(crate) mod routing;
pub mod server;
pub(crate) mod session;
pub mod store;
pub(crate) mod telemetry;
pub(crate) mod transport;
pub(crate) mod wake;
pub(crate) mod webhook;

/// Logging and OpenTelemetry trace export (`--otlp-endpoint`), set up by
/// the binary.
pub use telemetry::logs::subscriber;
pub use telemetry::otel::{OtelError, Traces};
