//! rtgate: a realtime messaging gateway. Browsers reach it over WebTransport
//! or WebSocket; both sit behind one session trait, so routing, storage and
//! auth never care which transport a user came on.
//!
//! The tree is the architecture:
//! - [`protocol`]: the wire model, pure and tested on its own;
//! - [`transport`]: the session trait and its WebSocket implementation;
//! - [`session`]: the per-connection driver (login, heartbeat, limits);
//! - [`hub`]: local routing of envelopes to sessions, and the publish path;
//! - [`store`]: message logs, acks, dedupe, replay;
//! - [`broker`]: moving envelopes between nodes, cluster presence;
//! - [`auth`], [`api`], [`config`], [`gateway`], [`server`], [`telemetry`].

pub mod api;
pub mod auth;
pub mod broker;
pub mod config;
pub mod gateway;
pub mod hub;
pub mod protocol;
pub mod server;
pub mod session;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod transport;
