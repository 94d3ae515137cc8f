//! What the integration tests share, in one place: one way to start each kind of landfall
//! (in-process on port 0, or the real binary), the local stand-ins for Google's services, the
//! fixtures, the OpenAPI contract check, the Prometheus parser, and one way to wait.
//!
//! Each test binary (`tests/api`, `tests/google`) and the benchmark include this module whole;
//! each uses a part of it.

#![allow(dead_code, unused_imports)]

pub mod app;
pub mod binary;
pub mod contract;
pub mod emulators;
pub mod fault_proxy;
pub mod filesystem;
pub mod fixtures;
pub mod front_end;
pub mod grpc_proxy;
pub mod metrics;
pub mod oidc;
pub mod poll;
pub mod proxies;
pub mod raw;
pub mod tools;

pub use app::{TestApp, config, spawn_app, spawn_app_with, spawn_with_config, text};
pub use binary::{Binary, landfall, landfall_with_env};
pub use contract::{assert_matches_openapi, json_body, json_body_of};
pub use fixtures::*;
pub use metrics::{Sample, parse_exposition, sample};
pub use poll::until;
