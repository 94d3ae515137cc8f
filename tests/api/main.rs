//! Integration tests: the app on port 0, driven over HTTP, asserting on files, rows,
//! statuses and bodies (every JSON body is also checked against openapi/landfall.yaml).

mod auth;
mod bad_input;
mod batch_layout;
mod catalog;
mod crash;
mod curated;
mod dead_letter;
mod errors;
mod health;
mod helpers;
mod landing;
mod logs;
mod metrics;
#[path = "../support/oidc.rs"]
mod oidc;
mod one_fate;
mod redelivery;
mod repair;
mod resilience;
mod startup;
#[path = "../support/tools.rs"]
mod tools;
