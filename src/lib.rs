//! landfall: the ingestion edge of the e-commerce data platform. Pub/Sub pushes each message
//! here; landfall verifies the sender, decodes and validates the event against its catalog
//! schema, lands it in the landing layer (a file) and the raw layer (a row), and answers with
//! the status Pub/Sub reads as the ack.
//!
//! Modules, in the order a request flows through them:
//!
//! - [`config`]    command line and environment → validated [`config::Config`]
//! - [`telemetry`] logs (text, or Cloud Logging JSON with traces) and Prometheus metrics
//! - [`startup`]   [`startup::Application`]: builds catalog, sinks, auth and router; serves until stopped
//! - [`commands`]  `landfall schema check | print | apply`, `landfall redrive | backfill`
//! - [`repair`]    redrive and backfill: the landing layer read back through the classifier and sinks
//! - [`error`]     the HTTP-boundary error, its status codes and body shape
//! - [`push`]      the `/push` handler: ties the modules below together and builds the ack
//! - [`health`]    `/healthz`, `/readyz` and `/metrics`
//! - [`auth`]      OIDC verification of push requests against Google's cached keys
//! - [`envelope`]  Pub/Sub push envelopes (wrapped and unwrapped) → [`envelope::Delivery`]
//! - [`event`]     delivery → routed, validated event or dead letter, as an [`event::Record`]
//! - [`schema`]    the catalog: JSON Schema files → validators, typed rows, SQLite and BigQuery tables
//! - [`sink`]      the [`sink::Sink`] trait, group commit, landing-then-warehouse; SQLite and BigQuery
//! - [`landing`]   the landing layer: a layout (per event, per batch) over a folder or a bucket
//! - [`time`]      the one definition of a valid timestamp and date

pub mod auth;
pub mod commands;
pub mod config;
pub mod envelope;
pub mod error;
pub mod event;
pub mod health;
pub mod landing;
pub mod push;
pub mod repair;
pub mod schema;
pub mod sink;
pub mod startup;
pub mod telemetry;
pub mod time;
