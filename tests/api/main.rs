//! Integration tests: the app on port 0, driven over HTTP, asserting on files, rows,
//! statuses and bodies (every JSON body is also checked against openapi/landfall.yaml).

mod auth;
mod bad_input;
mod catalog;
mod dead_letter;
mod health;
mod helpers;
mod landing;
#[path = "../support/oidc.rs"]
mod oidc;
mod redelivery;
mod resilience;
mod startup;
