//! Fetching a URL someone else gave us (catalog image URLs, later export
//! webhooks) without letting them aim our servers at our own network (SSRF).
//!
//! Rules, each checked on every hop:
//! - `http` and `https` only, no credentials in the URL;
//! - the host is resolved once, and the request goes to exactly that address
//!   (no second lookup that DNS rebinding could change); a host any of whose
//!   addresses is loopback, private, link-local (incl. the cloud metadata
//!   address 169.254.169.254), unique-local, unspecified, multicast, shared
//!   (100.64/10), or an IPv4-mapped / -compatible / 6to4 / NAT64 form of one,
//!   is refused. IPv4 literals in decimal, octal or hex (`http://2130706433/`)
//!   are normalised by the WHATWG URL parser before the check;
//! - redirects are followed by hand, at most `max_redirects`, each target
//!   checked like the first URL;
//! - the body is counted while it arrives and abandoned past `max_bytes`; the
//!   whole fetch, redirects included, has one deadline.
//!
//! `allow` lists socket addresses exempt from the address rules (a test
//! server, a known internal endpoint); nothing else is.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use url::{Host, Url};

/// Limits of one fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchLimits {
    /// The most body bytes accepted.
    pub max_bytes: u64,
    /// The deadline of the whole fetch, redirects included.
    pub timeout: Duration,
    /// The most redirects followed.
    pub max_redirects: u8,
}

impl Default for FetchLimits {
    fn default() -> Self {
        FetchLimits { max_bytes: 40 * 1024 * 1024, timeout: Duration::from_secs(20), max_redirects: 3 }
    }
}

/// Why a fetch did not succeed, in words for the person who gave the URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// Not a URL, or not one GPS fetches.
    #[error("{url:?} cannot be fetched: {reason}")]
    Refused {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The host resolves to an address GPS does not fetch from.
    #[error("{url:?} points at {address}, a {kind} address; only public internet addresses are fetched")]
    ForbiddenAddress {
        /// The URL.
        url: String,
        /// The address.
        address: IpAddr,
        /// Which kind of address.
        kind: &'static str,
    },
    /// The host could not be resolved or reached.
    #[error("{url:?} could not be reached: {reason}")]
    Unreachable {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The server answered with an error status.
    #[error("{url:?} answered HTTP {status}")]
    Status {
        /// The URL.
        url: String,
        /// The status.
        status: u16,
    },
    /// The body is larger than the limit.
    #[error("{url:?} is larger than {limit} bytes, the limit")]
    TooLarge {
        /// The URL.
        url: String,
        /// The limit.
        limit: u64,
    },
    /// More redirects than allowed.
    #[error("{url:?} redirected more than {limit} times")]
    TooManyRedirects {
        /// The first URL.
        url: String,
        /// The limit.
        limit: u8,
    },
    /// The deadline passed.
    #[error("{url:?} did not answer within {seconds} s")]
    Timeout {
        /// The first URL.
        url: String,
        /// The deadline.
        seconds: u64,
    },
}

/// A fetched body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The body.
    pub body: Bytes,
    /// The `Content-Type` the server sent (never trusted for the file type).
    pub content_type: Option<String>,
    /// The URL finally fetched, after redirects.
    pub final_url: String,
}

/// Why an address is not fetched from, or `None` for a public address.
pub fn forbidden_kind(address: IpAddr) -> Option<&'static str> {
    match address {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(v4: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = v4.octets();
    if v4.is_loopback() {
        Some("loopback")
    } else if v4.is_private() {
        Some("private")
    } else if v4.is_link_local() {
        Some("link-local (cloud metadata)")
    } else if v4.is_unspecified() || a == 0 {
        Some("unspecified")
    } else if v4.is_broadcast() || v4.is_multicast() || a >= 240 {
        Some("multicast or reserved")
    } else if a == 100 && (64..128).contains(&b) {
        Some("shared (carrier-grade NAT)")
    } else if a == 192 && b == 0 && v4.octets()[2] == 0 {
        Some("IETF protocol assignment")
    } else if a == 198 && (b & 0xfe) == 18 {
        Some("benchmarking")
    } else if matches!(v4.octets()[..3], [192, 0, 2] | [198, 51, 100] | [203, 0, 113]) {
        Some("documentation")
    } else if matches!(v4.octets()[..3], [192, 88, 99]) {
        Some("6to4 relay anycast")
    } else {
        None
    }
}

fn forbidden_v6(v6: Ipv6Addr) -> Option<&'static str> {
    let segments = v6.segments();
    if v6.is_loopback() {
        Some("loopback")
    } else if v6.is_unspecified() {
        Some("unspecified")
    } else if v6.is_multicast() {
        Some("multicast")
    } else if segments[0] & 0xfe00 == 0xfc00 {
        Some("unique-local")
    } else if segments[0] & 0xffc0 == 0xfe80 {
        Some("link-local")
    } else if v6.to_ipv4_mapped().is_some() {
        Some("IPv4-mapped")
    } else if segments[..6] == [0, 0, 0, 0, 0, 0] {
        Some("IPv4-compatible")
    } else if segments[0] == 0x2002 {
        Some("6to4 (embeds an IPv4 address)")
    } else if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] || segments[..2] == [0x64, 0xff9b] {
        Some("NAT64 (embeds an IPv4 address)")
    } else if segments[0] == 0x2001 && segments[1] == 0 {
        Some("Teredo (embeds an IPv4 address)")
    } else if segments[0] == 0x2001 && segments[1] < 0x200 {
        Some("IETF protocol assignment")
    } else if (segments[0] == 0x2001 && segments[1] == 0xdb8)
        || (segments[0] == 0x3fff && segments[1] < 0x1000)
    {
        Some("documentation")
    } else if segments[..4] == [0x100, 0, 0, 0] {
        Some("discard-only")
    } else if segments[0] & 0xffc0 == 0xfec0 {
        Some("site-local")
    } else if segments[0] == 0x5f00 {
        Some("segment routing (SRv6)")
    } else {
        None
    }
}

/// Fetches URLs under the rules of this module.
#[derive(Clone)]
pub struct SafeFetcher {
    limits: FetchLimits,
    allow: Vec<SocketAddr>,
    tls: tokio_rustls::TlsConnector,
}

impl SafeFetcher {
    /// A fetcher with `limits`, trusting the Mozilla root certificates.
    pub fn new(limits: FetchLimits) -> Self {
        let roots = tokio_rustls::rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
        let config = tokio_rustls::rustls::ClientConfig::builder_with_provider(Arc::new(
            tokio_rustls::rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("the default protocol versions are supported")
        .with_root_certificates(roots)
        .with_no_client_auth();
        SafeFetcher { limits, allow: Vec::new(), tls: tokio_rustls::TlsConnector::from(Arc::new(config)) }
    }

    /// Exempts one socket address from the address rules.
    pub fn allowing(mut self, address: SocketAddr) -> Self {
        self.allow.push(address);
        self
    }

    /// The limits.
    pub fn limits(&self) -> FetchLimits {
        self.limits
    }

    /// GETs `url` under the rules.
    pub async fn get(&self, url: &str) -> Result<Fetched, FetchError> {
        let deadline = self.limits.timeout;
        match tokio::time::timeout(deadline, self.follow(url)).await {
            Ok(result) => result,
            Err(_) => Err(FetchError::Timeout { url: url.to_owned(), seconds: deadline.as_secs() }),
        }
    }

    async fn follow(&self, first: &str) -> Result<Fetched, FetchError> {
        let mut current = first.to_owned();
        for _ in 0..=self.limits.max_redirects {
            let url = parse(&current)?;
            match self.fetch_once(&url).await? {
                Hop::Done(fetched) => return Ok(fetched),
                Hop::Redirect(location) => {
                    let next = url.join(&location).map_err(|error| FetchError::Refused {
                        url: current.clone(),
                        reason: format!("it redirects to {location:?}, which is not a URL ({error})"),
                    })?;
                    current = next.to_string();
                }
            }
        }
        Err(FetchError::TooManyRedirects { url: first.to_owned(), limit: self.limits.max_redirects })
    }

    /// The one address this URL may be fetched from.
    async fn address(&self, url: &Url) -> Result<SocketAddr, FetchError> {
        let port = url.port_or_known_default().unwrap_or(80);
        let candidates: Vec<SocketAddr> = match url.host() {
            Some(Host::Ipv4(v4)) => vec![SocketAddr::new(IpAddr::V4(v4), port)],
            Some(Host::Ipv6(v6)) => vec![SocketAddr::new(IpAddr::V6(v6), port)],
            Some(Host::Domain(domain)) => tokio::net::lookup_host((domain, port))
                .await
                .map_err(|error| FetchError::Unreachable {
                    url: url.to_string(),
                    reason: format!("the host name does not resolve ({error})"),
                })?
                .collect(),
            None => return Err(refused(url, "it has no host")),
        };
        // Every address must be public: a name with one private address
        // among public ones is an attack, not a mistake.
        for candidate in &candidates {
            if self.allow.contains(candidate) {
                continue;
            }
            if let Some(kind) = forbidden_kind(candidate.ip()) {
                return Err(FetchError::ForbiddenAddress {
                    url: url.to_string(),
                    address: candidate.ip(),
                    kind,
                });
            }
        }
        candidates.into_iter().next().ok_or_else(|| FetchError::Unreachable {
            url: url.to_string(),
            reason: "the host name has no address".into(),
        })
    }

    /// Checks that `url` may be fetched or posted to — its scheme, and every
    /// address its host resolves to — without sending anything. A request
    /// that names a URL (an export's webhook) is refused up front with this.
    pub async fn check_target(&self, url: &str) -> Result<(), FetchError> {
        self.resolve_target(url).await.map(|_| ())
    }

    /// The one address `url` is reached at, checked against the rules: a
    /// client that connects to it (and does not look the name up again)
    /// cannot be sent elsewhere by a DNS answer that changes after the check.
    pub async fn resolve_target(&self, url: &str) -> Result<SocketAddr, FetchError> {
        self.address(&parse(url)?).await
    }

    /// POSTs `body` to `url` under the same address rules, with `headers`.
    /// Redirects are not followed (a POST is not repeated elsewhere); any
    /// answer but 2xx is an error. At most 64 KiB of the answer is kept.
    pub async fn post(&self, url: &str, headers: &[(&str, &str)], body: Bytes) -> Result<Posted, FetchError> {
        let deadline = self.limits.timeout;
        let attempt = async {
            let parsed = parse(url)?;
            let mut request = hyper::Request::post(path_and_query(&parsed));
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            let request = request
                .header(hyper::header::CONTENT_LENGTH, body.len())
                .body(http_body_util::Full::new(body))
                .map_err(|error| refused(&parsed, &error.to_string()))?;
            let response = self.send_to(&parsed, request).await?;
            let status = response.status();
            let answer = read_limited(response.into_body(), 64 * 1024).await;
            if !status.is_success() {
                return Err(FetchError::Status { url: parsed.to_string(), status: status.as_u16() });
            }
            Ok(Posted { status: status.as_u16(), body: answer })
        };
        match tokio::time::timeout(deadline, attempt).await {
            Ok(result) => result,
            Err(_) => Err(FetchError::Timeout { url: url.to_owned(), seconds: deadline.as_secs() }),
        }
    }

    /// Connects to the one permitted address of `url` (TLS for https) and sends `request`.
    async fn send_to(
        &self,
        url: &Url,
        request: hyper::Request<http_body_util::Full<Bytes>>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, FetchError> {
        let address = self.address(url).await?;
        let unreachable = |reason: String| FetchError::Unreachable { url: url.to_string(), reason };
        let tcp = TcpStream::connect(address).await.map_err(|error| unreachable(error.to_string()))?;
        let host = url.host_str().unwrap_or_default().to_owned();
        let (mut parts, body) = request.into_parts();
        let host_header = url.port().map_or(host.clone(), |port| format!("{host}:{port}"));
        parts.headers.insert(
            hyper::header::HOST,
            hyper::header::HeaderValue::from_str(&host_header)
                .map_err(|error| refused(url, &error.to_string()))?,
        );
        parts
            .headers
            .insert(hyper::header::USER_AGENT, hyper::header::HeaderValue::from_static("GPS-fetch/1"));
        let request = hyper::Request::from_parts(parts, body);
        if url.scheme() == "https" {
            let name = tokio_rustls::rustls::pki_types::ServerName::try_from(
                host.trim_matches(['[', ']']).to_owned(),
            )
            .map_err(|error| refused(url, &format!("not a TLS server name ({error})")))?;
            let tls =
                self.tls.connect(name, tcp).await.map_err(|error| unreachable(format!("TLS: {error}")))?;
            send(TokioIo::new(tls), request).await
        } else {
            send(TokioIo::new(tcp), request).await
        }
        .map_err(unreachable)
    }

    async fn fetch_once(&self, url: &Url) -> Result<Hop, FetchError> {
        let unreachable = |reason: String| FetchError::Unreachable { url: url.to_string(), reason };
        let request = hyper::Request::get(path_and_query(url))
            .body(http_body_util::Full::new(Bytes::new()))
            .map_err(|error| refused(url, &error.to_string()))?;
        let response = self.send_to(url, request).await?;

        let status = response.status();
        if status.is_redirection() {
            let location = response
                .headers()
                .get(hyper::header::LOCATION)
                .and_then(|value| value.to_str().ok())
                .ok_or_else(|| FetchError::Status { url: url.to_string(), status: status.as_u16() })?;
            return Ok(Hop::Redirect(location.to_owned()));
        }
        if !status.is_success() {
            return Err(FetchError::Status { url: url.to_string(), status: status.as_u16() });
        }
        let limit = self.limits.max_bytes;
        let too_large = || FetchError::TooLarge { url: url.to_string(), limit };
        let declared = response
            .headers()
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|length| length > limit) {
            return Err(too_large());
        }
        let content_type = response
            .headers()
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut body = response.into_body();
        let mut collected = BytesMut::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|error| unreachable(format!("the body broke off ({error})")))?;
            if let Some(data) = frame.data_ref() {
                if collected.len() as u64 + data.len() as u64 > limit {
                    return Err(too_large());
                }
                collected.extend_from_slice(data);
            }
        }
        Ok(Hop::Done(Fetched { body: collected.freeze(), content_type, final_url: url.to_string() }))
    }
}

impl std::fmt::Debug for SafeFetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SafeFetcher").field("limits", &self.limits).field("allow", &self.allow).finish()
    }
}

enum Hop {
    Done(Fetched),
    Redirect(String),
}

/// What a POST got back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posted {
    /// The (2xx) status.
    pub status: u16,
    /// The start of the answer's body.
    pub body: Bytes,
}

fn path_and_query(url: &Url) -> String {
    match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_owned(),
    }
}

/// Up to `limit` bytes of `body`; the rest is dropped, as is a broken tail.
async fn read_limited(mut body: hyper::body::Incoming, limit: usize) -> Bytes {
    let mut collected = BytesMut::new();
    while collected.len() < limit {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    let room = limit - collected.len();
                    collected.extend_from_slice(&data[..data.len().min(room)]);
                }
            }
            _ => break,
        }
    }
    collected.freeze()
}

async fn send<IO>(
    io: IO,
    request: hyper::Request<http_body_util::Full<Bytes>>,
) -> Result<hyper::Response<hyper::body::Incoming>, String>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(io).await.map_err(|error| error.to_string())?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    sender.send_request(request).await.map_err(|error| error.to_string())
}

fn refused(url: &Url, reason: &str) -> FetchError {
    FetchError::Refused { url: url.to_string(), reason: reason.to_owned() }
}

fn parse(text: &str) -> Result<Url, FetchError> {
    let url = Url::parse(text).map_err(|error| FetchError::Refused {
        url: text.to_owned(),
        reason: format!("it is not an absolute URL ({error})"),
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(refused(&url, "only http and https URLs are fetched"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(refused(&url, "URLs with credentials are not fetched"));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn internal_addresses_are_named_and_public_ones_pass() {
        for (address, kind) in [
            ("127.0.0.1", "loopback"),
            ("10.0.0.1", "private"),
            ("172.16.5.4", "private"),
            ("192.168.1.1", "private"),
            ("169.254.169.254", "link-local (cloud metadata)"),
            ("0.0.0.0", "unspecified"),
            ("100.64.0.1", "shared (carrier-grade NAT)"),
            ("::1", "loopback"),
            ("::ffff:127.0.0.1", "IPv4-mapped"),
            ("::127.0.0.1", "IPv4-compatible"),
            ("fc00::1", "unique-local"),
            ("fd12:3456::1", "unique-local"),
            ("fe80::1", "link-local"),
            ("2002:7f00:1::", "6to4 (embeds an IPv4 address)"),
            ("64:ff9b::7f00:1", "NAT64 (embeds an IPv4 address)"),
            // The rest of the IANA special-purpose registries (RFC 6890 and later).
            ("198.18.0.1", "benchmarking"),
            ("198.19.255.254", "benchmarking"),
            ("192.0.2.10", "documentation"),
            ("198.51.100.7", "documentation"),
            ("203.0.113.99", "documentation"),
            ("192.88.99.1", "6to4 relay anycast"),
            ("255.255.255.255", "multicast or reserved"),
            ("224.0.0.1", "multicast or reserved"),
            ("64:ff9b:1::a00:1", "NAT64 (embeds an IPv4 address)"),
            ("2001:2::1", "IETF protocol assignment"),
            ("2001:10::1", "IETF protocol assignment"),
            ("2001:db8::1", "documentation"),
            ("3fff::1", "documentation"),
            ("100::1", "discard-only"),
            ("fec0::1", "site-local"),
            ("5f00::1", "segment routing (SRv6)"),
            ("ff02::1", "multicast"),
        ] {
            assert_eq!(forbidden_kind(address.parse().expect("ip")), Some(kind), "{address}");
        }
        for address in ["8.8.8.8", "151.101.1.69", "198.20.0.1", "2606:4700::1111", "2001:4860:4860::8888"] {
            assert_eq!(forbidden_kind(address.parse().expect("ip")), None, "{address}");
        }
    }

    #[tokio::test]
    async fn urls_to_internal_addresses_in_any_spelling_are_refused_before_connecting() {
        let fetcher = SafeFetcher::new(FetchLimits::default());
        for url in [
            "http://127.0.0.1/",
            "http://10.0.0.1/",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::1]:8080/",
            "http://2130706433/",
            "http://0x7f.0.0.1/",
            "http://0177.0.0.1/",
            "http://localhost/",
        ] {
            let refused = fetcher.get(url).await;
            assert!(matches!(refused, Err(FetchError::ForbiddenAddress { .. })), "{url}: {refused:?}");
        }
        for url in
            ["ftp://example.com/x.jpg", "file:///etc/passwd", "not a url", "http://user:pw@example.com/"]
        {
            assert!(matches!(fetcher.get(url).await, Err(FetchError::Refused { .. })), "{url}");
        }
    }

    /// A tiny HTTP server answering each path with a canned response.
    async fn serve(responses: Vec<(&'static str, String)>) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else { break };
                let responses = responses.clone();
                tokio::spawn(async move {
                    let mut buffer = vec![0u8; 4096];
                    let read = socket.read(&mut buffer).await.unwrap_or(0);
                    let head = String::from_utf8_lossy(&buffer[..read]).to_string();
                    let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
                    match responses.iter().find(|(p, _)| *p == path) {
                        Some((_, response)) if response == "hang" => {
                            tokio::time::sleep(Duration::from_secs(30)).await;
                        }
                        Some((_, response)) => {
                            let _ = socket.write_all(response.as_bytes()).await;
                        }
                        None => {
                            let _ = socket
                                .write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
                                .await;
                        }
                    }
                });
            }
        });
        address
    }

    #[tokio::test]
    async fn an_allowed_server_is_fetched_within_limits_and_a_redirect_to_loopback_is_refused() {
        let big = "x".repeat(2000);
        let server = serve(vec![
            (
                "/ok",
                "HTTP/1.1 200 OK\r\ncontent-type: image/png\r\ncontent-length: 5\r\n\r\nhello".to_owned(),
            ),
            ("/big", format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{big}", big.len())),
            (
                "/big-chunked",
                format!("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n7d0\r\n{big}\r\n0\r\n\r\n"),
            ),
            (
                "/to-loopback",
                "HTTP/1.1 302 Found\r\nlocation: http://127.0.0.1:9/secret\r\ncontent-length: 0\r\n\r\n"
                    .to_owned(),
            ),
            ("/to-ok", "HTTP/1.1 301 Moved\r\nlocation: /ok\r\ncontent-length: 0\r\n\r\n".to_owned()),
            ("/loop", "HTTP/1.1 302 Found\r\nlocation: /loop\r\ncontent-length: 0\r\n\r\n".to_owned()),
            ("/slow", "hang".to_owned()),
        ])
        .await;
        let limits = FetchLimits { max_bytes: 1000, timeout: Duration::from_secs(2), max_redirects: 3 };
        let fetcher = SafeFetcher::new(limits).allowing(server);
        let url = |path: &str| format!("http://{server}{path}");

        let fetched = fetcher.get(&url("/ok")).await.expect("fetched");
        assert_eq!(fetched.body, Bytes::from_static(b"hello"));
        assert_eq!(fetched.content_type.as_deref(), Some("image/png"));
        assert_eq!(fetcher.get(&url("/to-ok")).await.expect("redirected").final_url, url("/ok"));
        assert!(matches!(fetcher.get(&url("/big")).await, Err(FetchError::TooLarge { limit: 1000, .. })));
        assert!(matches!(fetcher.get(&url("/big-chunked")).await, Err(FetchError::TooLarge { .. })));
        let redirected = fetcher.get(&url("/to-loopback")).await;
        assert!(
            matches!(&redirected, Err(FetchError::ForbiddenAddress { kind: "loopback", .. })),
            "{redirected:?}"
        );
        assert!(matches!(
            fetcher.get(&url("/loop")).await,
            Err(FetchError::TooManyRedirects { limit: 3, .. })
        ));
        assert!(matches!(fetcher.get(&url("/missing")).await, Err(FetchError::Status { status: 404, .. })));
        assert!(matches!(fetcher.get(&url("/slow")).await, Err(FetchError::Timeout { .. })));

        // Without the exemption the very same server is loopback, and refused.
        let strict = SafeFetcher::new(limits);
        assert!(matches!(strict.get(&url("/ok")).await, Err(FetchError::ForbiddenAddress { .. })));
    }
}
