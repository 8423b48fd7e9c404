//! The Kafka listener: accepts connections (bounded), reads length-prefixed
//! frames, hands them to `protocol::handle_frame` one at a time in arrival
//! order (each takes effect before the next is read), and writes the
//! responses back in the same order. Never parses a record batch.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::broker::Broker;
use crate::metrics::KindLabels;
use crate::protocol::{self, ResponseFuture};
use crate::tasks::Tasks;

/// Largest step in which a request frame's buffer grows.
const READ_CHUNK: usize = 1 << 20;
/// Step in which responses are written; each must progress within
/// `connections_max_idle_ms`.
const WRITE_CHUNK: usize = 64 * 1024;

/// Accepts Kafka connections on `listener` and serves each on a task of
/// `connections`, until dropped. At shutdown the owner drains `connections`:
/// each stops reading requests, finishes the ones it started and closes.
pub async fn run(listener: TcpListener, broker: Arc<Broker>, connections: Tasks) {
    let limit = Arc::new(Semaphore::new(broker.config.max_connections));
    let mut backoff_ms = 5;
    loop {
        let accepted = listener.accept().await;
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
        let draining = connections.draining();
        connections.spawn(async move {
            broker.metrics.connections_total.inc();
            let _open = OpenConnection::new(&broker, permit);
            serve_connection(stream, peer, &broker, draining).await;
        });
    }
}

/// Counts an open connection and holds its slot under `max_connections`
/// until dropped, however the connection's task ends.
struct OpenConnection {
    broker: Arc<Broker>,
    _permit: OwnedSemaphorePermit,
}

impl OpenConnection {
    fn new(broker: &Arc<Broker>, permit: OwnedSemaphorePermit) -> Self {
        broker.metrics.connections.inc();
        Self {
            broker: broker.clone(),
            _permit: permit,
        }
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.broker.metrics.connections.dec();
    }
}

#[tracing::instrument(name = "connection", skip_all, fields(%peer))]
async fn serve_connection(stream: TcpStream, peer: SocketAddr, broker: &Arc<Broker>, draining: CancellationToken) {
    let _ = stream.set_nodelay(true);
    let (read_half, write_half) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<ResponseFuture>(broker.config.max_inflight_requests_per_connection);
    let stall = Duration::from_millis(broker.config.connections_max_idle_ms);
    // The writer runs beside the reader in this task, so cancelling the
    // connection stops both.
    let writer = async move {
        let mut out = BufWriter::with_capacity(WRITE_CHUNK, write_half);
        while let Some(response) = rx.recv().await {
            if let Some(response) = response.await {
                // An empty response is one we could not encode: closing
                // tells the client at once instead of leaving it to time out.
                if response.frame.is_empty() || !write_frame(&mut out, &response.frame, stall).await {
                    return;
                }
                // Its share of the response memory goes back only now.
                drop(response);
            }
            // Flush when no further response is queued, so pipelined
            // responses share a syscall.
            if rx.is_empty() && !matches!(tokio::time::timeout(stall, out.flush()).await, Ok(Ok(()))) {
                return;
            }
        }
        let _ = tokio::time::timeout(stall, out.flush()).await;
    };
    let reader = read_requests(read_half, peer, broker, tx, draining);
    tokio::join!(reader, writer);
}

/// Reads request frames and hands each to the protocol in order, queueing
/// its response for the writer, until the client goes, idles, errs or the
/// broker drains. Dropping `tx` at the end lets queued responses go out.
async fn read_requests(
    read_half: tokio::net::tcp::OwnedReadHalf,
    peer: SocketAddr,
    broker: &Arc<Broker>,
    tx: mpsc::Sender<ResponseFuture>,
    draining: CancellationToken,
) {
    let host = peer.ip().to_string();
    let mut reader = BufReader::with_capacity(64 * 1024, read_half);
    let max = broker.config.max_request_bytes;
    let idle = Duration::from_millis(broker.config.connections_max_idle_ms);
    loop {
        let next = tokio::select! {
            // A request already started is finished; none is begun.
            _ = draining.cancelled() => break,
            next = tokio::time::timeout(idle, reader.read_i32()) => next,
        };
        let len = match next {
            Ok(Ok(len)) => len,
            Ok(Err(_)) => break, // closed by the client
            Err(_) => {
                tracing::debug!("idle connection closed");
                break;
            }
        };
        if len < 0 || len as usize > max {
            tracing::warn!(len, max, "request size out of bounds, closing connection");
            broker
                .metrics
                .protocol_errors
                .get_or_create(&KindLabels { kind: "frame_size" })
                .inc();
            break;
        }
        let len = len as usize;
        // The whole frame is taken from the broker-wide budget of request
        // memory before its body is read, waiting while the budget is used
        // up (Kafka mutes the connection the same way). All or nothing: a
        // connection never holds part of a share while it waits for more, so
        // readers cannot deadlock each other.
        let budget = &broker.request_memory;
        let mut memory = budget.empty();
        if !budget.try_grow(&mut memory, len) {
            broker.metrics.request_memory_waits.inc();
            tokio::select! {
                _ = draining.cancelled() => break,
                _ = budget.grow(&mut memory, len) => {}
            }
        }
        // The buffer itself grows as bytes arrive rather than trusting the
        // length prefix: a client that claims 100 MiB and sends nothing holds
        // a share of the budget, but no memory.
        let mut frame = BytesMut::with_capacity(len.min(READ_CHUNK));
        while frame.len() < len {
            frame.reserve((len - frame.len()).min(READ_CHUNK));
            let want = len - frame.len();
            // A client that stops mid-request is as idle as one that stops
            // between requests.
            match tokio::time::timeout(idle, (&mut reader).take(want as u64).read_buf(&mut frame)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
                Ok(Ok(_)) => {}
            }
        }
        if frame.len() < len {
            break;
        }
        let handled = protocol::handle_frame(broker, frame.freeze(), &host).await;
        // The request's effect is done; its bytes are no longer held.
        drop(memory);
        match handled {
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
}

/// Writes one response frame. False when the socket failed or the reader
/// stopped taking bytes for a whole idle period: a reader that never reads
/// must not hold its response (and its memory) forever.
async fn write_frame(out: &mut BufWriter<tokio::net::tcp::OwnedWriteHalf>, frame: &[u8], stall: Duration) -> bool {
    for chunk in frame.chunks(WRITE_CHUNK) {
        match tokio::time::timeout(stall, out.write_all(chunk)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return false,
            Err(_) => {
                tracing::info!("client stopped reading its responses; closing the connection");
                return false;
            }
        }
    }
    true
}
