//! The Kafka listener: accepts connections (bounded), reads length-prefixed
//! frames, hands them to `protocol::handle_frame` in arrival order, and
//! writes the responses back in the same order. Never parses a record batch.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};

use crate::broker::Broker;
use crate::metrics::KindLabels;
use crate::protocol::{self, ResponseFuture};

/// Serves Kafka connections on `listener` until `shutdown` completes.
pub async fn run(listener: TcpListener, broker: Arc<Broker>, shutdown: impl Future<Output = ()>) {
    let limit = Arc::new(Semaphore::new(broker.config.max_connections));
    tokio::pin!(shutdown);
    let mut backoff_ms = 5;
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(ok) => {
                backoff_ms = 5;
                ok
            }
            Err(e) => {
                // Out of file descriptors and the like: back off, keep going.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(backoff_ms)).await;
                backoff_ms = (backoff_ms * 2).min(1000);
                continue;
            }
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            tracing::warn!(%peer, max = broker.config.max_connections, "connection limit reached, closing new connection");
            drop(stream);
            continue;
        };
        let broker = broker.clone();
        tokio::spawn(async move {
            broker.metrics.connections.inc();
            broker.metrics.connections_total.inc();
            serve_connection(stream, peer, &broker).await;
            broker.metrics.connections.dec();
            drop(permit);
        });
    }
}

#[tracing::instrument(name = "connection", skip_all, fields(%peer))]
async fn serve_connection(stream: TcpStream, peer: SocketAddr, broker: &Arc<Broker>) {
    let _ = stream.set_nodelay(true);
    let (read_half, write_half) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<ResponseFuture>(broker.config.max_inflight_requests_per_connection);
    let writer = tokio::spawn(async move {
        let mut out = BufWriter::with_capacity(64 * 1024, write_half);
        while let Some(response) = rx.recv().await {
            if let Some(bytes) = response.await {
                if out.write_all(&bytes).await.is_err() {
                    return;
                }
            }
            // Flush when no further response is queued, so pipelined
            // responses share a syscall.
            if rx.is_empty() && out.flush().await.is_err() {
                return;
            }
        }
        let _ = out.flush().await;
    });
    let host = peer.ip().to_string();
    let mut reader = BufReader::with_capacity(64 * 1024, read_half);
    let max = broker.config.max_request_bytes;
    // Ends when the client closes the connection.
    while let Ok(len) = reader.read_i32().await {
        if len < 0 || len as usize > max {
            tracing::warn!(len, max, "request size out of bounds, closing connection");
            broker
                .metrics
                .protocol_errors
                .get_or_create(&KindLabels { kind: "frame_size" })
                .inc();
            break;
        }
        let mut frame = BytesMut::zeroed(len as usize);
        if reader.read_exact(&mut frame).await.is_err() {
            break;
        }
        match protocol::handle_frame(broker, frame.freeze(), &host) {
            Ok(response) => {
                if tx.send(response).await.is_err() {
                    break;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "bad request, closing connection");
                broker.metrics.protocol_errors.get_or_create(&KindLabels { kind: e.kind() }).inc();
                break;
            }
        }
    }
    // Let queued responses go out before the socket closes.
    drop(tx);
    let _ = writer.await;
}
