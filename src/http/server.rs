//! The accept loop: each connection served by hyper (HTTP/1.1, and HTTP/2 for a front end
//! that speaks it end to end) through the router, watched by [`super::connection`], and
//! drained on shutdown.
//!
//! axum's own `serve` takes none of the limits a push endpoint needs: how many headers a
//! request may carry (a Pub/Sub message has up to 100 attributes, each a header in the
//! unwrapped form, besides the ~20 that Pub/Sub and Cloud Run add), and how long a connection
//! may take over a head or sit idle.

use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt;

use super::connection::{Activity, ConnectionLimits, MAX_HEADERS, Watched};

/// How often each connection is looked at for an expired limit.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// Serves `router` on `listener` until `shutdown` resolves, then stops accepting and returns
/// once every connection has finished what it was answering.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let mut shutdown = pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    wait_after_accept_error(&e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        tokio::spawn(serve_connection(stream, router.clone(), limits, &graceful));
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Serves one connection until the client closes it, it outstays a limit, or a graceful
/// shutdown has let it finish what it was answering.
fn serve_connection(
    stream: TcpStream,
    router: Router,
    limits: ConnectionLimits,
    graceful: &GracefulShutdown,
) -> impl Future<Output = ()> + Send + 'static {
    let _ = stream.set_nodelay(true);
    let activity = Activity::new();
    let service = {
        let activity = activity.clone();
        hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let answered = activity.request();
            let router = router.clone();
            async move {
                let response = router.oneshot(request.map(Body::new)).await;
                drop(answered);
                response
            }
        })
    };
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().max_headers(MAX_HEADERS);
    let io = TokioIo::new(Watched::new(stream, activity.clone()));
    let connection = builder
        .serve_connection_with_upgrades(io, service)
        .into_owned();
    let connection = graceful.watch(connection);
    async move {
        let mut connection = pin!(connection);
        let mut watch = tokio::time::interval(WATCH_EVERY);
        loop {
            tokio::select! {
                _ = &mut connection => return,
                _ = watch.tick() => {
                    // Dropping the connection closes it; nothing is being answered on it.
                    if let Some(why) = activity.expired(&limits) {
                        tracing::debug!(?why, "closing a connection");
                        return;
                    }
                }
            }
        }
    }
}

/// An accept that fails with too many open files (or any other reason than a client that went
/// away) is retried shortly: connections close all the time.
async fn wait_after_accept_error(error: &std::io::Error) {
    use std::io::ErrorKind::*;
    if matches!(
        error.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %error, "cannot accept a connection");
    tokio::time::sleep(Duration::from_millis(50)).await;
}
