//! How the UI reaches the platform: the [`Api`] port the gateway implements
//! in-process, and the [`Client`] the components use.
//!
//! Why the public API rather than the query functions and the command
//! handler directly: every screen action then passes exactly the checks an
//! API call passes (session, CSRF, role in the brand, validation), words its
//! errors the same way, and reads with read-your-writes; the UI cannot grow a
//! second, laxer path into the system. The calls never leave the process.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use futures::Stream;
use serde_json::Value;

/// One API request made on behalf of the signed-in person.
#[derive(Debug, Clone)]
pub struct ApiCall {
    /// `GET`, `POST`, `PUT`, `PATCH` or `DELETE`.
    pub method: &'static str,
    /// The path and query, e.g. `/api/v1/brands/acme/products?limit=50`.
    pub path: String,
    /// A JSON body, for writes.
    pub json: Option<Value>,
    /// Read at least this stream sequence (the person's last write).
    pub min_sequence: Option<u64>,
}

/// The answer to an [`ApiCall`].
#[derive(Debug, Clone)]
pub struct ApiReply {
    /// The HTTP status.
    pub status: u16,
    /// The body (JSON, or a problem document).
    pub body: Bytes,
}

/// The gateway's API, called in-process with the person's session.
pub trait Api: Send + Sync + 'static {
    /// Runs one request.
    fn call(&self, call: ApiCall) -> Pin<Box<dyn Future<Output = ApiReply> + Send>>;
    /// Follows a Server-Sent Events endpoint; yields each event's `data`.
    /// The stream ends when the endpoint refuses or closes.
    fn follow(&self, path: String) -> Pin<Box<dyn Stream<Item = String> + Send>>;
}

/// What went wrong with a call, worded for the person.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Problem {
    pub(crate) status: u16,
    pub(crate) message: String,
}

impl Problem {
    fn from_reply(reply: &ApiReply) -> Problem {
        let message = match serde_json::from_slice::<Value>(&reply.body) {
            Ok(problem) => {
                let title = problem["title"].as_str().unwrap_or("The request failed");
                worded(&problem).unwrap_or_else(|| title.to_owned())
            }
            Err(_) => format!("The server answered {} without details; try again.", reply.status),
        };
        let message = match reply.status {
            401 => format!("Your session has ended ({message}). Sign in again."),
            _ => message,
        };
        Problem { status: reply.status, message }
    }
}

/// A problem document's detail, led by the field it names (unless the
/// detail already starts with it); `None` without a detail.
pub(crate) fn worded(problem: &Value) -> Option<String> {
    let detail = problem["detail"].as_str().filter(|d| !d.is_empty())?;
    Some(match problem["field"].as_str() {
        Some(field) if !detail.starts_with(&format!("{field}:")) => format!("{field}: {detail}"),
        _ => detail.to_owned(),
    })
}

/// The components' handle on the API: remembers the person's last write so
/// the next read waits for it (read-your-writes).
#[derive(Clone)]
pub(crate) struct Client {
    api: Arc<dyn Api>,
    last_write: Rc<Cell<u64>>,
}

impl PartialEq for Client {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.api, &other.api)
    }
}

impl Client {
    pub(crate) fn new(api: Arc<dyn Api>) -> Client {
        Client { api, last_write: Rc::new(Cell::new(0)) }
    }

    fn min_sequence(&self) -> Option<u64> {
        Some(self.last_write.get()).filter(|sequence| *sequence > 0)
    }

    /// `GET path` as JSON.
    pub(crate) async fn get(&self, path: &str) -> Result<Value, Problem> {
        let call =
            ApiCall { method: "GET", path: path.to_owned(), json: None, min_sequence: self.min_sequence() };
        let reply = self.api.call(call).await;
        Self::json(reply)
    }

    /// A write; its stream sequence becomes the floor of later reads.
    pub(crate) async fn send(
        &self,
        method: &'static str,
        path: &str,
        json: Option<Value>,
    ) -> Result<Value, Problem> {
        let call = ApiCall { method, path: path.to_owned(), json, min_sequence: None };
        let reply = self.api.call(call).await;
        let body = Self::json(reply)?;
        if let Some(sequence) = body["stream_sequence"].as_u64() {
            self.last_write.set(self.last_write.get().max(sequence));
        }
        Ok(body)
    }

    /// Records a sequence written outside [`Client::send`] (an upload the
    /// browser sent itself).
    pub(crate) fn saw_write(&self, sequence: u64) {
        self.last_write.set(self.last_write.get().max(sequence));
    }

    pub(crate) fn follow(&self, path: String) -> Pin<Box<dyn Stream<Item = String> + Send>> {
        self.api.follow(path)
    }

    fn json(reply: ApiReply) -> Result<Value, Problem> {
        if !(200..300).contains(&reply.status) {
            return Err(Problem::from_reply(&reply));
        }
        if reply.body.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&reply.body).map_err(|e| Problem {
            status: reply.status,
            message: format!("The server's answer was not JSON: {e}"),
        })
    }
}

/// A field of a JSON object as display text (strings as they are, numbers
/// and booleans printed, anything missing empty).
pub(crate) fn text(value: &Value, key: &str) -> String {
    match &value[key] {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The `items` of a page.
pub(crate) fn items(page: &Value) -> Vec<Value> {
    page["items"].as_array().cloned().unwrap_or_default()
}

/// Percent-encodes a query parameter value.
pub(crate) fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(byte as char),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// A signed CDN URL at a listed width (a derivative the CDN renders once).
pub(crate) fn sized(url: &str, width: u32) -> String {
    if url.is_empty() {
        return String::new();
    }
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}w={width}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_name_the_field_and_what_to_do() {
        let reply = ApiReply {
            status: 400,
            body: Bytes::from_static(br#"{"title":"Bad request","detail":"must not be empty","field":"name","status":400,"type":"x"}"#),
        };
        assert_eq!(Problem::from_reply(&reply).message, "name: must not be empty");
        let named = ApiReply {
            status: 400,
            body: Bytes::from_static(br#"{"title":"Bad request","detail":"sku: it is empty","field":"sku"}"#),
        };
        assert_eq!(Problem::from_reply(&named).message, "sku: it is empty", "the field is named once");
        let expired = ApiReply {
            status: 401,
            body: Bytes::from_static(br#"{"title":"x","detail":"the session has expired"}"#),
        };
        assert!(Problem::from_reply(&expired).message.contains("Sign in again"));
        let html = ApiReply { status: 502, body: Bytes::from_static(b"<html>") };
        assert!(Problem::from_reply(&html).message.contains("502"));
    }

    #[test]
    fn query_values_are_encoded_and_urls_sized() {
        assert_eq!(encode("navy dress/2"), "navy%20dress%2F2");
        assert_eq!(sized("/cdn/a?exp=1&sig=x", 320), "/cdn/a?exp=1&sig=x&w=320");
        assert_eq!(sized("", 320), "");
    }
}
