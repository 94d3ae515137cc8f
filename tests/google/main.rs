//! The Google Cloud sinks against real local stand-ins (fake-gcs-server, local-bigquery, the
//! Pub/Sub emulator). `.ci/tools.sh` installs them on first use; this binary starts one set
//! and its tests share it, each in a bucket, datasets and topics of its own
//! ([`support::emulators::Google`]). Tests that stop an emulator start their own.

/// Runs tests written for one write API once with each: `NAME::storage` and
/// `NAME::insert_all`.
macro_rules! with_each_write_api {
    ($($test:ident),* $(,)?) => {$(
        mod $test {
            use crate::support::emulators::WriteApi;

            #[tokio::test]
            async fn storage() {
                super::$test(WriteApi::Storage).await
            }

            #[tokio::test]
            async fn insert_all() {
                super::$test(WriteApi::InsertAll).await
            }
        }
    )*};
}

mod batch_layout;
mod catalog;
mod curated;
mod end_to_end;
mod faults;
mod repair;
mod replay;
mod schema;
mod sinks;
mod storage;
#[path = "../support/mod.rs"]
mod support;
mod unwrapped;
