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
mod docs;
mod durability;
mod edge;
mod errors;
mod health;
mod landing;
mod logs;
mod metrics;
mod one_fate;
mod operator;
mod properties;
mod redelivery;
mod repair;
mod resilience;
mod startup;
#[path = "../support/mod.rs"]
mod support;
