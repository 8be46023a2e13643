//! A pool of long-lived HTTP/2 connections to one vendor endpoint.
//!
//! Each slot holds at most one live connection; requests pick slots round-robin and
//! wait in h2's `ready()` for a free stream, so a connection carries up to the peer's
//! `SETTINGS_MAX_CONCURRENT_STREAMS` requests at once and never provokes
//! `REFUSED_STREAM` by over-opening. A slot whose connection died (GOAWAY, I/O error)
//! reconnects on next use. Errors say whether the request is safe to retry: only when
//! the server provably did not process it (connect/TLS failure, GOAWAY above the last
//! stream id, `REFUSED_STREAM`), and then the pool retries it once on a fresh
//! connection itself.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Request, StatusCode};
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Where a vendor lives: scheme, host and port of its base URL.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// `scheme://host:port` with no trailing slash; request URIs are built on it.
    pub base: String,
}

impl Endpoint {
    pub fn parse(url: &str) -> Result<Self, Error> {
        let uri: http::Uri = url
            .parse()
            .map_err(|_| Error::BadEndpoint(url.to_string()))?;
        let tls = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(Error::BadEndpoint(url.to_string())),
        };
        let host = uri
            .host()
            .ok_or_else(|| Error::BadEndpoint(url.to_string()))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let authority = uri.authority().expect("a URI with a host has an authority");
        let base = format!("{}://{}", if tls { "https" } else { "http" }, authority);
        Ok(Self {
            tls,
            host,
            port,
            base,
        })
    }
}

/// Why a request got no HTTP response.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("bad endpoint url {0:?}")]
    BadEndpoint(String),
    #[error("connect to {endpoint} failed")]
    Connect {
        endpoint: String,
        #[source]
        source: std::io::Error,
    },
    #[error("tls handshake with {endpoint} failed")]
    Tls {
        endpoint: String,
        #[source]
        source: std::io::Error,
    },
    #[error("http/2 handshake with {endpoint} failed")]
    Handshake {
        endpoint: String,
        #[source]
        source: h2::Error,
    },
    #[error("request to {endpoint} failed before it was processed")]
    NotProcessed {
        endpoint: String,
        #[source]
        source: h2::Error,
    },
    #[error("request to {endpoint} failed")]
    Stream {
        endpoint: String,
        #[source]
        source: h2::Error,
    },
    #[error("request to {endpoint} timed out")]
    Timeout { endpoint: String },
}

impl Error {
    /// True when the server provably did not process the request.
    pub fn not_processed(&self) -> bool {
        matches!(
            self,
            Error::Connect { .. }
                | Error::Tls { .. }
                | Error::Handshake { .. }
                | Error::NotProcessed { .. }
        )
    }
}

/// A complete vendor response.
#[derive(Debug)]
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

struct Conn {
    send: h2::client::SendRequest<Bytes>,
    closed: Arc<AtomicBool>,
}

#[derive(Default)]
struct Slot {
    conn: ArcSwapOption<Conn>,
    connecting: tokio::sync::Mutex<()>,
}

struct Inner {
    endpoint: Endpoint,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    slots: Box<[Slot]>,
    next: AtomicUsize,
    timeout: Duration,
    connects: AtomicU64,
}

/// Cheaply cloneable handle to a vendor connection pool.
#[derive(Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

impl Pool {
    /// A pool of `connections` lazily opened connections to `endpoint`. `tls` must
    /// offer ALPN `h2` when the endpoint is https; http endpoints use h2c with prior
    /// knowledge.
    pub fn new(
        endpoint: Endpoint,
        tls: Arc<ClientConfig>,
        connections: usize,
        timeout: Duration,
    ) -> Result<Self, Error> {
        let tls = if endpoint.tls {
            let name = ServerName::try_from(endpoint.host.clone())
                .map_err(|_| Error::BadEndpoint(endpoint.base.clone()))?;
            Some((TlsConnector::from(tls), name))
        } else {
            None
        };
        Ok(Self {
            inner: Arc::new(Inner {
                endpoint,
                tls,
                slots: (0..connections.max(1)).map(|_| Slot::default()).collect(),
                next: AtomicUsize::new(0),
                timeout,
                connects: AtomicU64::new(0),
            }),
        })
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.inner.endpoint
    }

    /// Connections opened so far (reconnects included).
    pub fn connects(&self) -> u64 {
        self.inner.connects.load(Ordering::Relaxed)
    }

    /// Send one request with `body` and read the whole response. `make` builds the
    /// request head; it is called again if the request is retried on a new connection.
    pub async fn send(
        &self,
        make: impl Fn() -> Request<()>,
        body: Bytes,
    ) -> Result<Response, Error> {
        let n = self.inner.slots.len();
        let first = self.inner.next.fetch_add(1, Ordering::Relaxed) % n;
        let mut last_err = None;
        for attempt in 0..2 {
            let slot = &self.inner.slots[(first + attempt) % n];
            let conn = self.connection(slot).await?;
            let fut = self.send_on(&conn, make(), body.clone());
            let result = match tokio::time::timeout(self.inner.timeout, fut).await {
                Ok(r) => r,
                Err(_) => Err(Error::Timeout {
                    endpoint: self.inner.endpoint.base.clone(),
                }),
            };
            match result {
                Ok(r) => return Ok(r),
                Err(e) if e.not_processed() => {
                    Self::invalidate(slot, &conn);
                    last_err = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last_err.expect("loop ran"))
    }

    fn invalidate(slot: &Slot, conn: &Arc<Conn>) {
        conn.closed.store(true, Ordering::Relaxed);
        let current = slot.conn.load();
        if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, conn)) {
            slot.conn.store(None);
        }
    }

    async fn connection(&self, slot: &Slot) -> Result<Arc<Conn>, Error> {
        if let Some(c) = slot.conn.load_full() {
            if !c.closed.load(Ordering::Relaxed) {
                return Ok(c);
            }
        }
        let _guard = slot.connecting.lock().await;
        if let Some(c) = slot.conn.load_full() {
            if !c.closed.load(Ordering::Relaxed) {
                return Ok(c);
            }
        }
        let conn = Arc::new(self.connect().await?);
        slot.conn.store(Some(conn.clone()));
        Ok(conn)
    }

    async fn connect(&self) -> Result<Conn, Error> {
        let ep = &self.inner.endpoint;
        let tcp = TcpStream::connect((ep.host.as_str(), ep.port))
            .await
            .map_err(|source| Error::Connect {
                endpoint: ep.base.clone(),
                source,
            })?;
        tcp.set_nodelay(true).map_err(|source| Error::Connect {
            endpoint: ep.base.clone(),
            source,
        })?;
        self.inner.connects.fetch_add(1, Ordering::Relaxed);
        let closed = Arc::new(AtomicBool::new(false));
        let send = match &self.inner.tls {
            Some((connector, name)) => {
                let tls = connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|source| Error::Tls {
                        endpoint: ep.base.clone(),
                        source,
                    })?;
                if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
                    return Err(Error::Tls {
                        endpoint: ep.base.clone(),
                        source: std::io::Error::other("server did not negotiate ALPN h2"),
                    });
                }
                self.handshake(tls, closed.clone()).await?
            }
            None => self.handshake(tcp, closed.clone()).await?,
        };
        tracing::debug!(endpoint = %ep.base, "vendor connection established");
        Ok(Conn { send, closed })
    }

    async fn handshake<T>(
        &self,
        io: T,
        closed: Arc<AtomicBool>,
    ) -> Result<h2::client::SendRequest<Bytes>, Error>
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let ep = self.inner.endpoint.base.clone();
        let (send, connection) = h2::client::Builder::new()
            .initial_max_send_streams(100)
            .initial_window_size(1 << 20)
            .initial_connection_window_size(4 << 20)
            .max_concurrent_streams(0)
            .enable_push(false)
            .handshake::<_, Bytes>(io)
            .await
            .map_err(|source| Error::Handshake {
                endpoint: ep.clone(),
                source,
            })?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(endpoint = %ep, error = %e, "vendor connection ended");
            }
            closed.store(true, Ordering::Relaxed);
        });
        Ok(send)
    }

    async fn send_on(&self, conn: &Conn, req: Request<()>, body: Bytes) -> Result<Response, Error> {
        let ep = &self.inner.endpoint.base;
        let not_processed = |source| Error::NotProcessed {
            endpoint: ep.clone(),
            source,
        };
        let stream_err = |source: h2::Error| {
            if source.reason() == Some(h2::Reason::REFUSED_STREAM)
                || (source.is_go_away() && source.is_remote())
            {
                Error::NotProcessed {
                    endpoint: ep.clone(),
                    source,
                }
            } else {
                Error::Stream {
                    endpoint: ep.clone(),
                    source,
                }
            }
        };
        let mut send = conn.send.clone().ready().await.map_err(not_processed)?;
        let end = body.is_empty();
        let (response, mut stream) = send.send_request(req, end).map_err(not_processed)?;
        if !end {
            stream.send_data(body, true).map_err(stream_err)?;
        }
        let response = response.await.map_err(stream_err)?;
        let (parts, mut recv) = response.into_parts();
        let mut buf = BytesMut::new();
        while let Some(chunk) = recv.data().await {
            let chunk = chunk.map_err(stream_err)?;
            let _ = recv.flow_control().release_capacity(chunk.len());
            buf.extend_from_slice(&chunk);
        }
        Ok(Response {
            status: parts.status,
            headers: parts.headers,
            body: buf.freeze(),
        })
    }
}
