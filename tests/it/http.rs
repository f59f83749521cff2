//! A minimal HTTP/1.1 client for tests: one request per connection
//! (`Connection: close`), so what the server sends is exactly what is read
//! (for an event stream, which never ends, only its head).

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A response as received.
#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
}

impl Response {
    /// The first header of that name (case-insensitive).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str())
    }

    /// The body as JSON.
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// Fails the test unless `response` has `status`, showing the body.
#[track_caller]
pub(crate) fn assert_status(response: &Response, status: u16) {
    assert_eq!(response.status, status, "{}", response.body);
}

/// Sends a request to `127.0.0.1:port`; `body` is sent as JSON when given.
pub(crate) async fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&serde_json::Value>,
) -> Response {
    request_from(None, port, method, path, headers, body).await
}

/// Like [`request`], from the loopback address `source` when given (any of
/// 127.0.0.0/8), so a test can play callers at different addresses.
pub(crate) async fn request_from(
    source: Option<std::net::Ipv4Addr>,
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&serde_json::Value>,
) -> Response {
    let server = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = match source {
        None => tokio::net::TcpStream::connect(server).await.expect("connect"),
        Some(source) => {
            let socket = tokio::net::TcpSocket::new_v4().expect("socket");
            socket.bind(std::net::SocketAddr::from((source, 0))).expect("bind the source address");
            socket.connect(server).await.expect("connect")
        }
    };
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    let mut text = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    if body.is_some() {
        text.push_str("Content-Type: application/json\r\n");
    }
    text.push_str(&format!("Content-Length: {}\r\n\r\n{payload}", payload.len()));
    stream.write_all(text.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    let mut buffer = [0u8; 8192];
    loop {
        let read = tokio::time::timeout(std::time::Duration::from_secs(60), stream.read(&mut buffer))
            .await
            .expect("the server answers within 60 s")
            .expect("read");
        if read == 0 {
            break;
        }
        raw.extend_from_slice(&buffer[..read]);
        // An event stream never ends: its head is the answer.
        let so_far = String::from_utf8_lossy(&raw);
        if let Some((head, _)) = so_far.split_once("\r\n\r\n")
            && head.to_ascii_lowercase().contains("content-type: text/event-stream")
        {
            break;
        }
    }
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw.as_str(), ""));
    let mut lines = head.lines();
    let status =
        lines.next().and_then(|line| line.split(' ').nth(1)).and_then(|s| s.parse().ok()).expect("status");
    let headers = lines
        .filter_map(|line| line.split_once(':').map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned())))
        .collect::<Vec<_>>();
    let body = if headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v == "chunked") {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Response { status, headers, body }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else { break };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}
