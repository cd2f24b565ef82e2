//! The control API's connections: an accept loop over hyper that bounds how many are open and
//! how long each may sit idle.
//!
//! Anyone on the machine can open a TCP connection to the API without a token, and an open
//! connection costs the daemon a file descriptor, the same resource its peers' connections and
//! its content files need. So:
//!
//! - At most [`MAX_API_CONNECTIONS`] connections are open at once. A connection accepted over
//!   the cap closes the oldest open connection that is not in a request (an idle kept-alive
//!   one, or one whose client has not finished sending its headers), so a flood of idle sockets
//!   cannot lock out the CLI; if every open connection is in a request, the new one is closed
//!   at once. A request in flight is never cut off to make room.
//! - A request's headers must arrive within [`HEADER_READ_TIMEOUT`] of the connection's start,
//!   or of the previous response on a kept-alive connection; the connection is closed
//!   otherwise. So no connection is idle for longer than that.
//! - When `shutdown` completes, accepting stops, idle connections are closed, requests in
//!   flight finish, and then [`serve_connections`] returns.
//!
//! HTTP/1.0 and 1.1 only (no HTTP/2): what the CLI, curl and Prometheus speak.

use std::{
    collections::BTreeMap,
    future::Future,
    io,
    net::SocketAddr,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::Router;
use hyper::{body::Incoming, server::conn::http1, service::Service as _};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{oneshot, watch},
    task::JoinSet,
};
use tracing::{debug, warn};

/// Most control-API connections open at once. The CLI uses one per command and Prometheus one
/// per scrape; 64 leaves room for many of both while a flood of idle sockets costs the daemon at
/// most 64 descriptors.
pub const MAX_API_CONNECTIONS: usize = 64;
/// How long a client may take to send a request's headers, counted from the connection's start
/// or from the previous response on a kept-alive connection (so also the longest a connection
/// stays idle). The CLI sends its headers at once.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait after an accept fails for lack of resources (no descriptor or memory left)
/// before accepting again, so the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_secs(1);

/// The bounds [`serve_connections`] keeps.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    /// Most connections open at once.
    pub max_connections: usize,
    /// How long a request's headers may take to arrive.
    pub header_read_timeout: Duration,
}

impl Default for ConnectionLimits {
    /// [`MAX_API_CONNECTIONS`] and [`HEADER_READ_TIMEOUT`].
    fn default() -> Self {
        ConnectionLimits {
            max_connections: MAX_API_CONNECTIONS,
            header_read_timeout: HEADER_READ_TIMEOUT,
        }
    }
}

/// Serves `router` on `listener` within `limits` (see the module docs) until `shutdown`
/// completes, then lets the requests in flight finish and returns.
pub async fn serve_connections(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let open = Arc::new(Mutex::new(OpenConnections {
        max: limits.max_connections.max(1),
        ..OpenConnections::default()
    }));
    let (stop, stopping) = watch::channel(());
    let mut tasks = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let admitted = lock(&open).admit();
                    match admitted {
                        Some(slot) => {
                            let connection = Connection {
                                slot,
                                open: open.clone(),
                                stopping: stopping.clone(),
                            };
                            tasks.spawn(connection.serve(
                                stream,
                                peer,
                                router.clone(),
                                limits.header_read_timeout,
                            ));
                        }
                        None => debug!(
                            %peer,
                            "control API: every connection is in a request; closed a new one"
                        ),
                    }
                }
                Err(e) if is_connection_error(&e) => {}
                Err(e) => {
                    warn!("control API: cannot accept a connection: {e}");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                }
            },
        }
    }
    drop(listener);
    // Every connection task holds a receiver from before this send, so each sees it.
    let _ = stop.send(());
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// An accept error that concerns only the connection being accepted.
fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

fn lock(open: &Mutex<OpenConnections>) -> std::sync::MutexGuard<'_, OpenConnections> {
    open.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The open connections, oldest first (ids only grow).
#[derive(Default)]
struct OpenConnections {
    /// The cap.
    max: usize,
    next_id: u64,
    by_id: BTreeMap<u64, OpenConnection>,
}

struct OpenConnection {
    /// Requests being answered on it (0 or 1: HTTP/1.1 without pipelining).
    in_request: Arc<AtomicUsize>,
    /// Closes it.
    close: oneshot::Sender<()>,
}

/// A connection's place among the open ones.
struct Slot {
    id: u64,
    in_request: Arc<AtomicUsize>,
    closed: oneshot::Receiver<()>,
}

impl OpenConnections {
    /// Makes room for a new connection (closing the oldest one not in a request if the cap is
    /// reached) and registers it; `None` if every open connection is in a request.
    fn admit(&mut self) -> Option<Slot> {
        if self.by_id.len() >= self.max {
            let idle = self
                .by_id
                .iter()
                .find(|(_, c)| c.in_request.load(Ordering::Acquire) == 0)
                .map(|(id, _)| *id)?;
            if let Some(evicted) = self.by_id.remove(&idle) {
                let _ = evicted.close.send(());
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        let in_request = Arc::new(AtomicUsize::new(0));
        let (close, closed) = oneshot::channel();
        self.by_id.insert(
            id,
            OpenConnection {
                in_request: in_request.clone(),
                close,
            },
        );
        Some(Slot {
            id,
            in_request,
            closed,
        })
    }
}

/// One accepted connection; leaves the open set when dropped.
struct Connection {
    slot: Slot,
    open: Arc<Mutex<OpenConnections>>,
    stopping: watch::Receiver<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        lock(&self.open).by_id.remove(&self.slot.id);
    }
}

/// Counts a request on its connection while it is answered.
struct InRequest(Arc<AtomicUsize>);

impl InRequest {
    fn enter(count: &Arc<AtomicUsize>) -> InRequest {
        count.fetch_add(1, Ordering::AcqRel);
        InRequest(count.clone())
    }
}

impl Drop for InRequest {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Connection {
    async fn serve(
        mut self,
        stream: TcpStream,
        peer: SocketAddr,
        router: Router,
        header_read_timeout: Duration,
    ) {
        let routes = TowerToHyperService::new(router);
        let in_request = self.slot.in_request.clone();
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let counted = InRequest::enter(&in_request);
            let response = routes.call(request);
            async move {
                let response = response.await;
                drop(counted);
                response
            }
        });
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(header_read_timeout)
            .serve_connection(TokioIo::new(stream), service);
        let mut connection = std::pin::pin!(connection);
        tokio::select! {
            served = connection.as_mut() => {
                if let Err(e) = served {
                    debug!(%peer, "control API connection ended: {e}");
                }
            }
            _ = &mut self.slot.closed => {
                debug!(%peer, "control API: closed an idle connection to make room for a new one");
            }
            _ = self.stopping.changed() => {
                connection.as_mut().graceful_shutdown();
                if let Err(e) = connection.await {
                    debug!(%peer, "control API connection ended at shutdown: {e}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::Duration};

    use tokio::{
        io::{AsyncReadExt as _, AsyncWriteExt as _},
        net::TcpStream,
    };

    use super::ConnectionLimits;
    use crate::api::server::fake::{FakeNode, TestServer, within};

    const TOKEN: &str = "7a11000000000000000000000000000000000000000000000000000000000001";
    /// Long enough that only the cap closes connections in a test that uses it.
    const NEVER: Duration = Duration::from_secs(3600);

    async fn server(max_connections: usize, header_read_timeout: Duration) -> TestServer {
        let limits = ConnectionLimits {
            max_connections,
            header_read_timeout,
        };
        TestServer::start_with(
            Arc::new(FakeNode::default()),
            TOKEN.to_owned(),
            Some(limits),
        )
        .await
    }

    /// Reads `stream` until the server closes it; returns what it sent before.
    async fn until_closed(stream: &mut TcpStream) -> String {
        let mut received = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            match within(stream.read(&mut buf)).await {
                Ok(0) | Err(_) => return String::from_utf8_lossy(&received).into_owned(),
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    }

    /// Sends `GET /metrics` on `stream` (kept alive) and returns the reply's status line.
    async fn metrics_on(stream: &mut TcpStream, server: &TestServer) -> String {
        let request = format!("GET /metrics HTTP/1.1\r\nHost: {}\r\n\r\n", server.addr);
        within(stream.write_all(request.as_bytes())).await.unwrap();
        let mut buf = [0u8; 4096];
        let n = within(stream.read(&mut buf)).await.unwrap();
        let reply = String::from_utf8_lossy(&buf[..n]).into_owned();
        reply.lines().next().unwrap_or_default().to_owned()
    }

    async fn status(server: &TestServer) -> reqwest::StatusCode {
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let response = within(
            client
                .get(server.url("/v1/status"))
                .bearer_auth(TOKEN)
                .send(),
        )
        .await
        .unwrap();
        response.status()
    }

    /// Regression (issue 12, item 4): idle sockets, opened without a token, were kept for ever
    /// and without a bound until the daemon had no file descriptor left.
    #[tokio::test]
    async fn idle_connections_over_the_cap_close_the_oldest_and_the_api_still_answers() {
        let server = server(4, NEVER).await;
        let mut idle = Vec::new();
        for _ in 0..10 {
            idle.push(within(TcpStream::connect(server.addr)).await.unwrap());
        }
        // Connections are accepted in the order they were made: the API's own makes the 11th.
        assert_eq!(status(&server).await, reqwest::StatusCode::OK);
        let (oldest, newest) = idle.split_at_mut(7);
        for stream in oldest {
            assert_eq!(
                until_closed(stream).await,
                "",
                "an evicted connection got a reply"
            );
        }
        // The three newest are still open and answer.
        for stream in newest {
            let line = metrics_on(stream, &server).await;
            assert!(line.starts_with("HTTP/1.1 200"), "{line}");
        }
    }

    /// A request in flight is never cut off to make room; a connection over the cap when every
    /// open one is in a request is closed at once.
    #[tokio::test]
    async fn connections_in_a_request_are_never_closed_to_make_room() {
        let (entered_tx, mut entered) = tokio::sync::mpsc::channel::<()>(8);
        let release = Arc::new(tokio::sync::Semaphore::new(0));
        let gate = release.clone();
        let router = axum::Router::new().route(
            "/slow",
            axum::routing::get(move || {
                let (entered_tx, gate) = (entered_tx.clone(), gate.clone());
                async move {
                    let _ = entered_tx.send(()).await;
                    let _permit = gate.acquire().await;
                    "done"
                }
            }),
        );
        let listener = within(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = ConnectionLimits {
            max_connections: 2,
            header_read_timeout: NEVER,
        };
        let (stop_tx, stop) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(super::serve_connections(listener, router, limits, async {
            let _ = stop.await;
        }));
        let request = format!("GET /slow HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        let mut busy = Vec::new();
        for _ in 0..2 {
            let mut stream = within(TcpStream::connect(addr)).await.unwrap();
            within(stream.write_all(request.as_bytes())).await.unwrap();
            within(entered.recv()).await.unwrap();
            busy.push(stream);
        }
        // Both open connections are in a request: a third is closed without a reply.
        let mut third = within(TcpStream::connect(addr)).await.unwrap();
        assert_eq!(until_closed(&mut third).await, "");
        release.add_permits(2);
        for stream in &mut busy {
            let reply = until_closed(stream).await;
            assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
            assert!(reply.ends_with("done"), "{reply}");
        }
        let _ = stop_tx.send(());
        within(server).await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn headers_that_do_not_arrive_in_time_and_idle_kept_alive_connections_are_closed() {
        let server = server(64, Duration::from_millis(300)).await;
        // Half a request, never finished.
        let mut slow = within(TcpStream::connect(server.addr)).await.unwrap();
        within(slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n"))
            .await
            .unwrap();
        let reply = until_closed(&mut slow).await;
        assert!(!reply.contains(" 200 "), "{reply}");
        // A whole request on a kept-alive connection, then silence.
        let mut kept = within(TcpStream::connect(server.addr)).await.unwrap();
        let line = metrics_on(&mut kept, &server).await;
        assert!(line.starts_with("HTTP/1.1 200"), "{line}");
        until_closed(&mut kept).await;
        assert_eq!(status(&server).await, reqwest::StatusCode::OK);
    }

    #[tokio::test]
    async fn shutdown_closes_idle_connections_and_returns() {
        let server = server(64, NEVER).await;
        let mut idle = within(TcpStream::connect(server.addr)).await.unwrap();
        let mut kept = within(TcpStream::connect(server.addr)).await.unwrap();
        let line = metrics_on(&mut kept, &server).await;
        assert!(line.starts_with("HTTP/1.1 200"), "{line}");
        server.stop().await.unwrap();
        until_closed(&mut idle).await;
        until_closed(&mut kept).await;
    }
}
