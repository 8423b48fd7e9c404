//! The Kafka listeners: each accepts connections (bounded, shared across
//! listeners), runs the TLS handshake where the listener serves TLS, reads
//! length-prefixed frames, hands them to `protocol::handle_frame` one at a
//! time in arrival order (each takes effect before the next is read), and
//! writes the responses back in the same order. Never parses a record batch.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::broker::Broker;
use crate::metrics::{AuthLabels, KindLabels};
use crate::protocol::timing::Waits;
use crate::protocol::{self, Arrival, Connection, Queued, Written};
use crate::security::sasl::{ListenerSecurity, Session};
use crate::security::Principal;
use crate::tasks::Tasks;

/// Largest step in which a request frame's buffer grows.
const READ_CHUNK: usize = 1 << 20;
/// Step in which responses are written; each must progress within
/// `connections_max_idle_ms`.
const WRITE_CHUNK: usize = 64 * 1024;

/// One listener as the server runs it.
pub struct Endpoint {
    pub security: Arc<ListenerSecurity>,
    /// Set where the listener serves TLS (SSL, SASL_SSL).
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}

/// Accepts Kafka connections on every listener and serves each on a task
/// of `connections`, until dropped. At shutdown the owner drains
/// `connections`: each stops reading requests, finishes the ones it started
/// and closes. `max_connections` bounds all listeners together.
pub async fn run(listeners: Vec<(TcpListener, Arc<Endpoint>)>, broker: Arc<Broker>, connections: Tasks) {
    let limit = Arc::new(Semaphore::new(broker.config.max_connections));
    let accepting = listeners
        .into_iter()
        .map(|(listener, endpoint)| accept_loop(listener, endpoint, broker.clone(), connections.clone(), limit.clone()));
    futures::future::join_all(accepting).await;
}

async fn accept_loop(listener: TcpListener, endpoint: Arc<Endpoint>, broker: Arc<Broker>, connections: Tasks, limit: Arc<Semaphore>) {
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
        let endpoint = endpoint.clone();
        let draining = connections.draining();
        connections.spawn(async move {
            broker.metrics.connections_total.inc();
            let _open = OpenConnection::new(&broker, permit);
            serve_connection(stream, peer, &broker, &endpoint, draining).await;
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

#[tracing::instrument(name = "connection", skip_all, fields(%peer, listener = %endpoint.security.name))]
async fn serve_connection(stream: TcpStream, peer: SocketAddr, broker: &Arc<Broker>, endpoint: &Endpoint, draining: CancellationToken) {
    let _ = stream.set_nodelay(true);
    let max_reauth_ms = broker.config.auth.connections_max_reauth_ms as i64;
    let Some(acceptor) = &endpoint.tls else {
        let session = Session::new(endpoint.security.clone(), Principal::anonymous(), max_reauth_ms);
        // Plain TCP splits without a lock between the halves.
        return serve_stream(stream.into_split(), peer, broker, session, draining).await;
    };
    let timeout = Duration::from_millis(broker.config.auth.tls_handshake_timeout_ms);
    let handshake = tokio::select! {
        _ = draining.cancelled() => return,
        done = tokio::time::timeout(timeout, acceptor.accept(stream)) => done,
    };
    let failure = match handshake {
        Ok(Ok(tls)) => {
            // With mutual TLS the verified certificate names the principal;
            // SASL, where the listener has it, names it again.
            let principal = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(crate::security::tls::principal_of)
                .unwrap_or_else(Principal::anonymous);
            if principal != Principal::anonymous() {
                broker.security.authenticated(&endpoint.security.name, "TLS", peer.ip());
            }
            let session = Session::new(endpoint.security.clone(), principal, max_reauth_ms);
            return serve_stream(tokio::io::split(tls), peer, broker, session, draining).await;
        }
        Ok(Err(e)) => e.to_string(),
        Err(_) => "no TLS handshake within tls_handshake_timeout_ms".to_string(),
    };
    broker
        .metrics
        .authentication_failures
        .get_or_create(&AuthLabels {
            listener: endpoint.security.name.clone(),
            mechanism: "TLS",
        })
        .inc();
    tracing::debug!(reason = %failure, "TLS handshake failed");
}

async fn serve_stream<R, W>(halves: (R, W), peer: SocketAddr, broker: &Arc<Broker>, session: Session, draining: CancellationToken)
where
    R: AsyncRead + Send + Unpin + 'static,
    W: AsyncWrite + Send + Unpin + 'static,
{
    let (read_half, write_half) = halves;
    let (tx, mut rx) = mpsc::channel::<Queued>(broker.config.max_inflight_requests_per_connection);
    let stall = Duration::from_millis(broker.config.connections_max_idle_ms);
    // The writer runs beside the reader in this task, so cancelling the
    // connection stops both.
    let writer = async move {
        let mut out = BufWriter::with_capacity(WRITE_CHUNK, write_half);
        while let Some(Queued { response, trace }) = rx.recv().await {
            let dequeued = Instant::now();
            let response = response.await;
            let completed = Instant::now();
            let (response_bytes, waits, throttle_ms) = response
                .as_ref()
                .map_or((0, Waits::default(), 0), |r| (r.frame.len(), r.waits, r.throttle_ms));
            if let Some(response) = response {
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
            trace.finish(
                broker,
                Written {
                    dequeued,
                    completed,
                    written: Instant::now(),
                    response_bytes,
                    waits,
                    throttle_ms,
                },
            );
        }
        let _ = tokio::time::timeout(stall, out.flush()).await;
        // TLS: a close_notify, so the client reads a clean end.
        let _ = tokio::time::timeout(stall, out.shutdown()).await;
    };
    let connection = Connection::new(session, peer);
    let reader = read_requests(read_half, connection, broker, tx, draining);
    tokio::join!(reader, writer);
}

/// Reads request frames and hands each to the protocol in order, queueing
/// its response for the writer, until the client goes, idles, errs or the
/// broker drains. Dropping `tx` at the end lets queued responses go out.
async fn read_requests<R: AsyncRead + Unpin>(
    read_half: R,
    mut connection: Connection,
    broker: &Arc<Broker>,
    tx: mpsc::Sender<Queued>,
    draining: CancellationToken,
) {
    let mut reader = BufReader::with_capacity(64 * 1024, read_half);
    let idle = Duration::from_millis(broker.config.connections_max_idle_ms);
    loop {
        let next = tokio::select! {
            // A request already started is finished; none is begun.
            _ = draining.cancelled() => break,
            next = tokio::time::timeout(idle, reader.read_i32()) => next,
        };
        let arrived = Instant::now();
        let len = match next {
            Ok(Ok(len)) => len,
            Ok(Err(_)) => break, // closed by the client
            Err(_) => {
                tracing::debug!("idle connection closed");
                break;
            }
        };
        // Before it has authenticated, a client may send only small
        // requests (SASL tokens): a stranger cannot make the broker hold
        // max_request_bytes.
        let max = if connection.session.is_open() {
            broker.config.max_request_bytes
        } else {
            broker.config.auth.sasl_max_receive_bytes
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
        let mut memory_wait = Duration::ZERO;
        if !budget.try_grow(&mut memory, len) {
            broker.metrics.request_memory_waits.inc();
            let waiting = Instant::now();
            tokio::select! {
                _ = draining.cancelled() => break,
                _ = budget.grow(&mut memory, len) => {}
            }
            memory_wait = waiting.elapsed();
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
        let arrival = Arrival {
            at: arrived,
            memory_wait,
            read: Instant::now(),
        };
        let handled = protocol::handle_frame(broker, frame.freeze(), arrival, &mut connection).await;
        // The request's effect is done; its bytes are no longer held.
        drop(memory);
        match handled {
            Ok(response) => {
                if tx.send(response).await.is_err() || connection.close_after_response {
                    break;
                }
                // A client over its quota: its response says how long to
                // wait, and nothing more is read from it meanwhile (Kafka's
                // mute, KIP-219), also if it does not wait as told.
                if connection.throttle_ms > 0 {
                    let until = Instant::now() + Duration::from_millis(connection.throttle_ms as u64);
                    connection.throttle_ms = 0;
                    // A client that goes meanwhile frees its connection
                    // slot at once, not when the mute ends.
                    let closed = tokio::select! {
                        _ = draining.cancelled() => true,
                        _ = tokio::time::sleep_until(until) => false,
                        filled = reader.fill_buf() => filled.map_or(true, |bytes| bytes.is_empty()),
                    };
                    // Otherwise a request is waiting: it is read once the
                    // mute ends.
                    if closed
                        || tokio::select! {
                            _ = draining.cancelled() => true,
                            _ = tokio::time::sleep_until(until) => false,
                        }
                    {
                        break;
                    }
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
async fn write_frame<W: AsyncWrite + Unpin>(out: &mut BufWriter<W>, frame: &[u8], stall: Duration) -> bool {
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
