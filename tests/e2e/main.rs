//! End-to-end tests: the real binary on loopback ports, real clients.

mod api;
mod browser;
mod chat;
mod cluster;
mod common;
mod config;
mod control;
mod durability;
mod example_clients;
mod hardening;
mod hook_fairness;
mod hooks;
mod lab;
mod legacy;
mod limits;
mod login;
mod messaging;
mod monitoring;
mod msgpack;
#[path = "../support/netlab.rs"]
mod netlab;
mod nginx;
mod ops;
mod outbox;
mod presence;
mod push;
mod push_services;
mod redis_durability;
#[path = "../support/redis_server.rs"]
mod redis_server;
mod redundancy;
mod slow_readers;
mod sse;
mod traces;
mod webhook;
mod wt;
mod wt_browsers;
mod wt_client;
mod wt_migration;
mod wt_streams;
