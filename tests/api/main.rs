//! Integration tests: the app on port 0, driven over HTTP, asserting on files, rows,
//! statuses and bodies (every JSON body is also checked against openapi/landfall.yaml).

mod auth;
mod bad_input;
mod batch_layout;
mod catalog;
mod contract;
mod crash;
mod credentials;
mod curated;
mod dead_letter;
mod errors;
#[path = "../support/front_end.rs"]
mod front_end;
mod health;
mod helpers;
mod landing;
mod logs;
mod metrics;
#[path = "../support/oidc.rs"]
mod oidc;
mod one_fate;
mod properties;
mod redelivery;
mod repair;
mod resilience;
mod startup;
#[path = "../support/tools.rs"]
mod tools;
