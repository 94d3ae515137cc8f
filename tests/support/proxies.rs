//! Both of landfall's ways to BigQuery behind fault proxies (stand-ins written for these
//! tests): REST (insertAll, lookup queries) through [`FaultProxy`], the Storage Write API
//! through [`GrpcProxy`]; what a test asks of "the writes" goes to the one in use.

use std::time::Duration;

use super::emulators::{Google, WriteApi};
use super::fault_proxy::{Call, FaultProxy};
use super::grpc_proxy::GrpcProxy;

/// The fault proxies landfall's BigQuery calls go through (the test's own queries do not):
/// REST (insertAll, queries) and gRPC (the Storage Write API).
pub struct Proxies {
    pub rest: FaultProxy,
    pub grpc: GrpcProxy,
    pub api: WriteApi,
}

impl Proxies {
    /// Rows of the writes that reached BigQuery, through the API in use.
    pub fn rows_written(&self) -> usize {
        match self.api {
            WriteApi::Storage => self.grpc.rows(),
            WriteApi::InsertAll => self
                .rest
                .insert_bodies()
                .iter()
                .map(|body| body["rows"].as_array().map_or(0, Vec::len))
                .sum(),
        }
    }

    /// Every write from now on fails with this HTTP status (or its gRPC code).
    pub fn fail_writes(&self, status: u16) {
        match self.api {
            WriteApi::Storage => self.grpc.fail(match status {
                429 => 8,
                500 => 13,
                _ => 14,
            }),
            WriteApi::InsertAll => self.rest.fail(Call::InsertAll, status),
        }
    }

    pub fn delay_writes(&self, by: Duration) {
        match self.api {
            WriteApi::Storage => self.grpc.delay(by),
            WriteApi::InsertAll => self.rest.delay(Call::InsertAll, by),
        }
    }

    /// Writes answered with an injected error.
    pub fn failed_writes(&self) -> usize {
        match self.api {
            WriteApi::Storage => self.grpc.failed(),
            WriteApi::InsertAll => self.rest.failed(),
        }
    }

    pub fn heal(&self) {
        self.rest.heal();
        self.grpc.heal();
    }
}

/// The test's stack with landfall's BigQuery calls going through the fault proxies.
pub async fn through_proxies(api: WriteApi) -> (Google, Proxies) {
    let google = Google::new().await;
    let rest = FaultProxy::start(&google.bigquery.url()).await;
    let grpc = GrpcProxy::start(&google.bigquery.grpc_url());
    let google = google
        .through(&rest.url)
        .through_grpc(&grpc.url)
        .writing_with(api);
    (google, Proxies { rest, grpc, api })
}
