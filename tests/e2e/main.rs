//! End-to-end tests: the real binary on loopback ports, real clients.

mod api;
mod browser;
mod common;
mod config;
mod durability;
mod legacy;
mod limits;
mod login;
mod messaging;
mod ops;
mod wt;
mod wt_client;
