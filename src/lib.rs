//! landfall: the ingestion edge of the e-commerce data platform. Pub/Sub pushes each message
//! here; landfall verifies the sender, decodes and validates the event, lands it in the
//! landing layer (a file) and the raw layer (a row), and answers with the status Pub/Sub
//! reads as the ack.
//!
//! Modules, in the order a request flows through them:
//!
//! - [`config`]    command line and environment → validated [`config::Config`]
//! - [`telemetry`] tracing subscriber: text locally, Cloud Logging JSON in production
//! - [`startup`]   [`startup::Application`]: builds sinks, auth and router; serves until stopped
//! - [`auth`]      OIDC verification of push requests against Google's cached keys
//! - [`envelope`]  Pub/Sub push envelopes (wrapped and unwrapped) → [`envelope::Delivery`]
//! - [`event`]     delivery → validated event or dead letter, as a [`event::Record`]
//! - [`schema`]    the one table definition behind validation, SQLite and BigQuery
//! - [`sink`]      the [`sink::Sink`] trait, group commit, fan-out; local and Google backends
//! - [`push`]      the `/push` handler: ties the above together and builds the ack
//! - [`health`]    `/healthz` and `/readyz`
//! - [`error`]     the HTTP-boundary error and its status codes

pub mod auth;
pub mod config;
pub mod envelope;
pub mod error;
pub mod event;
pub mod health;
pub mod push;
pub mod schema;
pub mod sink;
pub mod startup;
pub mod telemetry;
