//! landfall: the ingestion edge of the e-commerce data platform. Pub/Sub pushes each message
//! here; landfall verifies the sender, decodes and validates the event against its catalog
//! schema, lands it in the landing layer (a file) and the raw layer (a row), and answers with
//! the status Pub/Sub reads as the ack.
//!
//! Modules, from the process's entry down, in the order a push flows through them:
//!
//! - [`config`]    command line and environment → the settings each component owns
//! - [`process`]   what the process sets for itself: TLS backend, allocator, open-file limit
//! - [`telemetry`] logs (text, or Cloud Logging JSON with traces), metrics, failures in words
//! - [`startup`]   [`startup::Application`]: pipeline, authentication and router; serves until stopped
//! - [`commands`]  `landfall schema check | print | apply`, `landfall redrive | backfill`
//! - [`repair`]    redrive and backfill: the landing layer read back into the same pipeline
//! - [`http`]      the HTTP edge: router, `/push`, probes, errors, auth, connections, memory budget
//! - [`envelope`]  Pub/Sub push envelopes (wrapped and unwrapped) → [`envelope::Delivery`]
//! - [`pipeline`]  a delivery's fate: classify, land in every sink, decide; for `/push` and repair
//! - [`event`]     delivery → routed, validated event or dead letter, as an [`event::Record`]
//! - [`schema`]    the catalog: JSON Schema files → validators, typed rows, SQLite and BigQuery
//!   tables, protobuf row types
//! - [`landing`]   the landing layer: a layout (per event, per batch) over a folder or a bucket,
//!   written as a sink and read back
//! - [`sink`]      the [`sink::Sink`] trait, group commit, fan-out; SQLite and BigQuery
//! - [`json`]      the one reader of a sender's JSON: duplicate keys refused, problems in words
//! - [`time`]      the one definition of a valid timestamp and date

pub mod commands;
pub mod config;
pub mod envelope;
pub mod event;
pub mod http;
pub mod json;
pub mod landing;
pub mod pipeline;
pub mod process;
pub mod repair;
pub mod schema;
pub mod sink;
pub mod startup;
pub mod telemetry;
pub mod time;
