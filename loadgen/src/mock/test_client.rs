//! A bare TLS + HTTP/2 client for the mocks' own tests: it shows exactly what went
//! over the wire (status, headers, whether HEADERS ended the stream, DATA frames).

use std::net::SocketAddr;

use anyhow::Context as _;
use bytes::Bytes;
use http::{HeaderMap, Method};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::tls::TestCa;

/// One HTTP/2 connection to a mock; clones share the connection.
#[derive(Clone)]
pub(crate) struct Client {
    addr: SocketAddr,
    send: h2::client::SendRequest<Bytes>,
}

/// A response as it arrived.
#[derive(Debug)]
pub(crate) struct Response {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// END_STREAM was set on the HEADERS frame (no DATA frame followed).
    pub end_stream_on_headers: bool,
    pub data_frames: usize,
}

impl Response {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| {
            panic!(
                "body is not JSON ({error}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl Client {
    pub async fn connect(ca: &TestCa, addr: SocketAddr) -> anyhow::Result<Client> {
        let tcp = TcpStream::connect(addr).await.context("connect to mock")?;
        tcp.set_nodelay(true)?;
        let tls = TlsConnector::from(ca.client_config())
            .connect(ServerName::try_from("localhost")?.to_owned(), tcp)
            .await
            .context("TLS handshake with mock")?;
        anyhow::ensure!(
            tls.get_ref().1.alpn_protocol() == Some(b"h2"),
            "mock did not negotiate h2"
        );
        let (send, connection) = h2::client::handshake(tls)
            .await
            .context("HTTP/2 handshake with mock")?;
        tokio::spawn(async move {
            // The connection ends when the test drops the client or the mock closes.
            let _ = connection.await;
        });
        Ok(Client { addr, send })
    }

    /// Peer's advertised `MAX_CONCURRENT_STREAMS` as h2 currently applies it.
    pub fn max_send_streams(&self) -> usize {
        self.send.current_max_send_streams()
    }

    pub async fn request(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> anyhow::Result<Response> {
        let mut request = http::Request::builder()
            .method(method)
            .uri(format!("https://{}{path}", self.addr));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(())?;
        let mut send = self.send.clone().ready().await?;
        let (response, mut stream) = send.send_request(request, body.is_empty())?;
        if !body.is_empty() {
            stream.send_data(Bytes::copy_from_slice(body), true)?;
        }
        let response = response.await?;
        let (head, mut recv) = response.into_parts();
        let end_stream_on_headers = recv.is_end_stream();
        let mut data = Vec::new();
        let mut data_frames = 0;
        while let Some(chunk) = recv.data().await {
            let chunk = chunk?;
            data_frames += 1;
            let _ = recv.flow_control().release_capacity(chunk.len());
            data.extend_from_slice(&chunk);
        }
        Ok(Response {
            status: head.status.as_u16(),
            headers: head.headers,
            body: Bytes::from(data),
            end_stream_on_headers,
            data_frames,
        })
    }

    pub async fn post(
        &mut self,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> anyhow::Result<Response> {
        self.request(Method::POST, path, headers, body).await
    }
}

/// The `(status, reason)` list a mock's `rejections()` should equal.
pub(crate) fn rejections(expected: &[(u16, &str)]) -> Vec<(u16, String)> {
    expected.iter().map(|(s, r)| (*s, r.to_string())).collect()
}
