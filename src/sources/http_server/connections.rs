//! Accepting and serving connections: at most `max_connections` at once, each with a time limit on
//! reading request headers, so that slow or idle clients cannot hold the server.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::log_limit::LogLimiter;

/// How long the accept loop pauses after a failed `accept`, such as when the process has no file
/// descriptors left, so that it does not spin while the cause lasts.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// The limits of the connections of one server.
#[derive(Debug, Clone, Copy)]
pub(super) struct ConnectionLimits {
    /// Connections served at once at most.
    pub max_connections: usize,
    /// Time limit for receiving a request's headers, counted from the first read of each request.
    /// A keep-alive connection that stays idle this long is closed too.
    pub header_read_timeout: Duration,
}

/// Serves `router` on every connection of `listener` until `shutdown` is cancelled, then stops
/// accepting, lets each connection finish its request in flight, and returns once all are closed.
pub(super) async fn serve_connections(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    component_id: &str,
    shutdown: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let connections = TaskTracker::new();
    let mut limiter = LogLimiter::new(Duration::from_secs(60));

    loop {
        // A free slot is taken before accepting, so connections over the limit wait in the listen
        // backlog of the operating system until a served connection closes. Waiting costs the server
        // nothing, and the header read timeout makes sure that slots come free.
        let permit = match permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if let Some(count) = limiter.check("max_connections") {
                    tracing::warn!(
                        component_id,
                        max_connections = limits.max_connections,
                        count,
                        "all connections are in use; new connections wait until one closes"
                    );
                }
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    permit = permits.clone().acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => break,
                    },
                }
            }
        };

        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                let connection = serve_connection(stream, router.clone(), limits, shutdown.clone(), permit);
                connections.spawn(connection);
            }
            Err(error) => {
                if let Some(count) = limiter.check("accept") {
                    tracing::warn!(component_id, %error, count, "accepting a connection failed");
                }
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
            }
        }
    }

    drop(listener);
    connections.close();
    connections.wait().await;
}

/// Serves one connection with HTTP/1.1. The permit is released when the connection closes.
async fn serve_connection(
    stream: TcpStream,
    router: Router,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
    _permit: OwnedSemaphorePermit,
) {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    let connection = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(router));
    tokio::pin!(connection);

    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = shutdown.cancelled() => {
            // An idle connection closes at once; one with a request in flight closes after its
            // response. A request still sending its headers or body is ended by the read timeouts.
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        // Timeouts, malformed requests and clients that disconnect end here; each is the client's
        // problem and is not worth more than a debug line.
        tracing::debug!(%error, "connection closed with an error");
    }
}
