//! The server's integration tests: one binary, a module per topic, each test with its own server
//! (and rooms) from `helpers`.

mod alerts;
mod auth;
mod cluster;
mod embedded_postgres;
mod epochs;
mod faults;
mod helpers;
mod history;
mod live_path;
mod metrics;
mod pages;
mod realtime;
mod startup;
mod storage;
mod telemetry;
