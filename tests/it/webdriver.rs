//! Thin W3C WebDriver client for the browser tests.
//!
//! It speaks the W3C WebDriver protocol (plain JSON over HTTP) to a real `chromedriver`, which drives Debian's
//! headless Chromium. We deliberately do not use `fantoccini` or `thirtyfour`: they switch on extra features of
//! crates the project already depends on (hyper, rustls, tokio, ...), and Cargo's feature unification would then
//! rebuild most of the dependency tree whenever the tests are built. This client needs only `tokio`, `reqwest`,
//! `serde_json` and `base64`, with the features the project already uses.
//!
//! Everything here runs inside tests, so failures panic instead of returning errors, and every panic carries
//! enough context (WebDriver command, error, message, current URL, page text) to debug a red CI run from its log.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

/// How long the waiting helpers poll before giving up: the UI renders asynchronously, and 30 s is generous even
/// on a loaded 2-core CI machine.
pub(crate) const WAIT: Duration = Duration::from_secs(30);
/// Polling interval of the waiting helpers.
const POLL: Duration = Duration::from_millis(100);
/// Upper bound for one HTTP round trip to chromedriver, so that a hung driver fails the test instead of hanging
/// it. Must exceed the page-load timeout requested in the session capabilities.
const HTTP_TIMEOUT: Duration = Duration::from_secs(90);
/// Page-load timeout given to chromedriver (its default is 300 s).
const PAGE_LOAD_TIMEOUT_MS: u64 = 60_000;
/// Size of the viewport the tests see (and of the screenshots).
const VIEWPORT: (i64, i64) = (1280, 800);

/// W3C key under which a web element reference is serialized (the "web element identifier" of the spec).
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";
/// Pre-W3C (JSON wire protocol) key, still emitted by some drivers.
const LEGACY_ELEMENT_KEY: &str = "ELEMENT";

/// Chromium flags. The background-networking ones matter: the test machines have no network, and Chromium's
/// background requests (component updates, sync, QUIC probes) would otherwise be refused and slow it down.
const CHROMIUM_ARGS: &[&str] = &[
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,800",
];

/// An error answer of chromedriver (`{"value": {"error", "message"}}`), or a transport failure.
#[derive(Debug, Clone)]
struct WdError {
    command: String,
    error: String,
    message: String,
}

impl WdError {
    /// The element was removed from the DOM since it was found; the live UI re-renders, so waits retry this.
    fn is_stale(&self) -> bool {
        self.error == "stale element reference"
    }
}

impl std::fmt::Display for WdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WebDriver {} failed: {}: {}", self.command, self.error, self.message)
    }
}

/// Sends one WebDriver command and returns its `value`.
async fn request(
    http: &reqwest::Client,
    method: Method,
    url: &str,
    body: Option<&Value>,
) -> Result<Value, WdError> {
    let command = format!("{method} {url}");
    let fail =
        |error: &str, message: String| WdError { command: command.clone(), error: error.to_owned(), message };
    let mut builder = http.request(method.clone(), url);
    if let Some(body) = body {
        builder = builder.json(body);
    }
    let response = builder.send().await.map_err(|e| fail("transport", format!("{e:?}")))?;
    let status = response.status();
    let text = response.text().await.map_err(|e| fail("transport", format!("reading body: {e:?}")))?;
    let mut parsed: Value = serde_json::from_str(&text)
        .map_err(|e| fail("invalid response", format!("HTTP {status}, {e}, body: {text}")))?;
    let value = parsed["value"].take();
    if status.is_success() {
        return Ok(value);
    }
    let field = |name: &str| value[name].as_str().unwrap_or("<missing>").to_owned();
    Err(fail(&field("error"), field("message")))
}

/// Extracts the id from a serialized web element reference.
fn element_id(value: &Value) -> Option<String> {
    let id = value.get(ELEMENT_KEY).or_else(|| value.get(LEGACY_ELEMENT_KEY))?;
    id.as_str().map(str::to_owned)
}

/// Maps key names used by the tests to the WebDriver code points of non-printable keys.
fn special_key(name: &str) -> Option<char> {
    Some(match name {
        "Backspace" => '\u{E003}',
        "Tab" => '\u{E004}',
        "Enter" => '\u{E007}',
        "Shift" => '\u{E008}',
        "Control" => '\u{E009}',
        "Alt" => '\u{E00A}',
        "Escape" => '\u{E00C}',
        "PageUp" => '\u{E00E}',
        "PageDown" => '\u{E00F}',
        "End" => '\u{E010}',
        "Home" => '\u{E011}',
        "ArrowLeft" => '\u{E012}',
        "ArrowUp" => '\u{E013}',
        "ArrowRight" => '\u{E014}',
        "ArrowDown" => '\u{E015}',
        "Delete" => '\u{E017}',
        _ => return None,
    })
}

/// The WebDriver session, shared by the browser and its elements.
struct Session {
    http: reqwest::Client,
    /// `http://127.0.0.1:PORT/session/ID`, the prefix of every command URL.
    url: String,
}

impl Session {
    async fn try_cmd(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value, WdError> {
        request(&self.http, method, &format!("{}{path}", self.url), body).await
    }

    async fn get(&self, path: &str) -> Value {
        self.try_cmd(Method::GET, path, None).await.unwrap_or_else(|e| panic!("{e}"))
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.try_cmd(Method::POST, path, Some(&body)).await.unwrap_or_else(|e| panic!("{e}"))
    }

    async fn delete(&self, path: &str) -> Value {
        self.try_cmd(Method::DELETE, path, None).await.unwrap_or_else(|e| panic!("{e}"))
    }

    async fn try_execute(&self, script: &str, args: Vec<Value>) -> Result<Value, WdError> {
        self.try_cmd(Method::POST, "/execute/sync", Some(&json!({ "script": script, "args": args }))).await
    }

    /// Ids of the elements matching `css`, in the document or below `parent`.
    async fn try_find_ids(&self, parent: Option<&str>, css: &str) -> Result<Vec<String>, WdError> {
        let path = match parent {
            Some(id) => format!("/element/{id}/elements"),
            None => "/elements".to_owned(),
        };
        let body = json!({ "using": "css selector", "value": css });
        let found = self.try_cmd(Method::POST, &path, Some(&body)).await?;
        let list = found.as_array().map(Vec::as_slice).unwrap_or_default();
        Ok(list
            .iter()
            .map(|v| element_id(v).unwrap_or_else(|| panic!("{path} {css:?} returned a non-element: {v}")))
            .collect())
    }

    async fn find_ids(&self, parent: Option<&str>, css: &str) -> Vec<String> {
        self.try_find_ids(parent, css).await.unwrap_or_else(|e| panic!("{e}"))
    }

    /// First element matching `css` that is displayed and, if `text` is given, whose visible text contains it.
    async fn first_displayed(
        &self,
        parent: Option<&str>,
        css: &str,
        text: Option<&str>,
    ) -> Result<Option<String>, WdError> {
        for id in self.try_find_ids(parent, css).await? {
            let displayed = self.try_cmd(Method::GET, &format!("/element/{id}/displayed"), None).await?;
            if displayed != Value::Bool(true) {
                continue;
            }
            if let Some(wanted) = text {
                let visible = self.try_cmd(Method::GET, &format!("/element/{id}/text"), None).await?;
                if !visible.as_str().unwrap_or_default().contains(wanted) {
                    continue;
                }
            }
            return Ok(Some(id));
        }
        Ok(None)
    }

    async fn wait_displayed(&self, parent: Option<&str>, css: &str, text: Option<&str>) -> String {
        let mut what = format!("waiting for a displayed element matching {css:?}");
        if let Some(text) = text {
            what += &format!(" with text containing {text:?}");
        }
        if let Some(parent) = parent {
            what += &format!(" inside element {parent}");
        }
        let mut patience = Patience::new();
        loop {
            match self.first_displayed(parent, css, text).await {
                Ok(Some(id)) => return id,
                Ok(None) => {}
                Err(e) => patience.tolerate(&what, e),
            }
            patience.pause(self, &what).await;
        }
    }

    /// Current URL and the start of the page text, appended to timeout panics. Never panics itself, so that it
    /// cannot hide the original failure.
    async fn page_report(&self) -> String {
        let url = match self.try_cmd(Method::GET, "/url", None).await {
            Ok(url) => url.as_str().unwrap_or_default().to_owned(),
            Err(e) => format!("<unavailable: {e}>"),
        };
        let script = "return document.body ? document.body.innerText : '<no body>'";
        let text = match self.try_execute(script, Vec::new()).await {
            Ok(text) => text.as_str().unwrap_or_default().chars().take(2000).collect(),
            Err(e) => format!("<unavailable: {e}>"),
        };
        format!("current URL: {url}\npage text (first 2000 chars):\n{text}")
    }
}

/// Deadline bookkeeping of the waiting helpers.
struct Patience {
    started: Instant,
    limit: Duration,
    /// Last tolerated (stale element) error, reported if the wait times out.
    last_error: Option<WdError>,
}

impl Patience {
    fn new() -> Self {
        Self::with_limit(WAIT)
    }

    fn with_limit(limit: Duration) -> Self {
        Patience { started: Instant::now(), limit, last_error: None }
    }

    /// Remembers a stale-element error to retry after it; any other WebDriver error is a real failure.
    fn tolerate(&mut self, what: &str, error: WdError) {
        if !error.is_stale() {
            panic!("{what}: {error}");
        }
        self.last_error = Some(error);
    }

    /// Sleeps until the next poll, or panics with the page state once `WAIT` is exhausted.
    async fn pause(&self, session: &Session, what: &str) {
        if self.started.elapsed() > self.limit {
            let last = match &self.last_error {
                Some(e) => format!(" (last retried error: {e})"),
                None => String::new(),
            };
            panic!("timed out after {:?} {what}{last}\n{}", self.limit, session.page_report().await);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Scratch folder holding Chromium's fresh profile and chromedriver's log; removed on drop.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn create() -> ScratchDir {
        // Unique per process and per browser, so parallel tests and leftovers of killed runs never collide.
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("webdriver-{}-{n}", std::process::id()));
        // A leftover of an earlier process with the same pid would hold a stale profile: start clean.
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(path.join("profile"))
            .unwrap_or_else(|e| panic!("cannot create browser scratch dir {}: {e}", path.display()));
        ScratchDir(path)
    }

    fn log_path(&self) -> PathBuf {
        self.0.join("chromedriver.log")
    }

    fn read_log(&self) -> String {
        std::fs::read_to_string(self.log_path())
            .unwrap_or_else(|e| format!("<cannot read chromedriver log: {e}>"))
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        // Chromium's processes may still be exiting (and writing to the profile) for a moment after the session
        // was deleted, which can make one removal attempt fail with "directory not empty".
        for _ in 0..10 {
            if std::fs::remove_dir_all(&self.0).is_ok() || !self.0.exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Ends a session without async, for `Drop`: killing chromedriver alone would leave its Chromium running.
fn delete_session_blocking(driver: SocketAddr, session_id: &str) {
    let Ok(mut stream) = TcpStream::connect_timeout(&driver, Duration::from_secs(2)) else {
        return;
    };
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    let _ = stream.set_read_timeout(Some(Duration::from_secs(20)));
    let request = format!(
        "DELETE /session/{session_id} HTTP/1.1\r\nHost: {driver}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    if stream.write_all(request.as_bytes()).is_ok() {
        // Wait for the answer, so that Chromium is told to quit before chromedriver is killed; its content does
        // not matter.
        read_http_response(&mut stream);
    }
}

/// Reads one HTTP response. chromedriver answers `Connection: close` but keeps the socket open, so this reads up
/// to the announced Content-Length instead of to the end of the stream.
fn read_http_response(stream: &mut TcpStream) {
    let mut response = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => response.extend_from_slice(&buf[..n]),
        }
        let Some(head_end) = response.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&response[..head_end]).to_ascii_lowercase();
        let body_length = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length:"))
            .and_then(|length| length.trim().parse::<usize>().ok())
            .unwrap_or(0);
        if response.len() >= head_end + 4 + body_length {
            return;
        }
    }
}

/// A headless Chromium driven through its own chromedriver process.
pub(crate) struct Browser {
    session: Arc<Session>,
    session_id: String,
    driver_addr: SocketAddr,
    /// chromedriver, killed on drop.
    driver: Child,
    /// Set by `close`, so that `Drop` does not end the session a second time.
    closed: bool,
    /// Declared last so that it is removed after chromedriver was killed (fields drop in declaration order).
    scratch: ScratchDir,
}

impl Browser {
    /// Starts chromedriver on a free port, opens a session with a fresh Chromium profile and sizes the viewport
    /// to 1280x800. `GPS_CHROMIUM` and `GPS_CHROMEDRIVER` override the binaries' paths.
    pub(crate) async fn start() -> Browser {
        let chromium = std::env::var("GPS_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
        let chromedriver =
            std::env::var("GPS_CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".to_owned());
        let scratch = ScratchDir::create();

        // Let the kernel pick a free port. chromedriver binds it a moment after we release it; a collision in
        // between is unlikely and would show up as chromedriver exiting, reported below.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("picking a free port for chromedriver")
            .port();
        let driver_addr = SocketAddr::from(([127, 0, 0, 1], port));

        // Output goes to a file rather than a pipe: an unread pipe could fill up and block chromedriver.
        let log = std::fs::File::create(scratch.log_path()).expect("creating the chromedriver log file");
        let log_for_stderr = log.try_clone().expect("duplicating the chromedriver log handle");
        let mut driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_for_stderr)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start chromedriver {chromedriver:?}: {e}"));

        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(HTTP_TIMEOUT)
            .build()
            .expect("building the WebDriver HTTP client");
        let base = format!("http://{driver_addr}");

        let started = Instant::now();
        loop {
            if let Some(status) = driver.try_wait().expect("polling the chromedriver process") {
                panic!(
                    "chromedriver {chromedriver:?} exited ({status}) before becoming ready; its output:\n{}",
                    scratch.read_log()
                );
            }
            let status = request(&http, Method::GET, &format!("{base}/status"), None).await;
            if status.is_ok_and(|status| status["ready"] == Value::Bool(true)) {
                break;
            }
            if started.elapsed() > WAIT {
                panic!(
                    "chromedriver {chromedriver:?} not ready on {base} after {WAIT:?}; its output:\n{}",
                    scratch.read_log()
                );
            }
            tokio::time::sleep(POLL).await;
        }

        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|arg| arg.to_string()).collect();
        args.push(format!("--user-data-dir={}", scratch.0.join("profile").display()));
        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "timeouts": { "pageLoad": PAGE_LOAD_TIMEOUT_MS },
            "goog:chromeOptions": { "binary": chromium, "args": args },
        }}});
        let created = request(&http, Method::POST, &format!("{base}/session"), Some(&capabilities))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start Chromium {chromium:?}: {e}\nchromedriver output:\n{}",
                    scratch.read_log()
                )
            });
        let session_id = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("new session answer without sessionId: {created}"))
            .to_owned();

        // Built right away so that a failure from here on still ends the session (see Drop).
        let browser = Browser {
            session: Arc::new(Session { http, url: format!("{base}/session/{session_id}") }),
            session_id,
            driver_addr,
            driver,
            closed: false,
            scratch,
        };
        browser.size_viewport().await;
        browser
    }

    /// Sizes the window to 1280x800, then grows it by whatever the browser reserves outside the page (headless
    /// Chromium still subtracts a simulated toolbar), so that pages and screenshots are exactly `VIEWPORT`.
    async fn size_viewport(&self) {
        let (width, height) = VIEWPORT;
        self.session.post("/window/rect", json!({ "width": width, "height": height })).await;
        let inner = self.execute("return [window.innerWidth, window.innerHeight]", Vec::new()).await;
        let (Some(inner_width), Some(inner_height)) = (inner[0].as_i64(), inner[1].as_i64()) else {
            panic!("unexpected viewport size answer: {inner}");
        };
        if (inner_width, inner_height) != VIEWPORT {
            let (grown_width, grown_height) = (2 * width - inner_width, 2 * height - inner_height);
            self.session.post("/window/rect", json!({ "width": grown_width, "height": grown_height })).await;
        }
    }

    pub(crate) async fn goto(&self, url: &str) {
        self.session.post("/url", json!({ "url": url })).await;
    }

    pub(crate) async fn current_url(&self) -> String {
        let url = self.session.get("/url").await;
        url.as_str().unwrap_or_else(|| panic!("current URL is not a string: {url}")).to_owned()
    }

    fn element(&self, id: String) -> Element {
        Element { session: Arc::clone(&self.session), id }
    }

    /// Waits (polling every 100 ms, up to `WAIT`) until an element matching the CSS selector exists and is
    /// displayed, and returns it. Panics with the selector, the current URL and the page text on timeout.
    pub(crate) async fn find(&self, css: &str) -> Element {
        self.element(self.session.wait_displayed(None, css, None).await)
    }

    /// Like `find`, but waits for a displayed element whose visible text contains `text`.
    pub(crate) async fn find_with_text(&self, css: &str, text: &str) -> Element {
        self.element(self.session.wait_displayed(None, css, Some(text)).await)
    }

    /// Types `value` into the element matching `css` (cleared first), finding
    /// it again when the live page re-rendered it in between.
    pub(crate) async fn fill_in(&self, css: &str, value: &str) {
        let mut patience = Patience::new();
        loop {
            let element = self.find(css).await;
            let mut typed =
                self.session.try_cmd(Method::POST, &element.path("clear"), Some(&json!({}))).await;
            if typed.is_ok() && !value.is_empty() {
                let body = json!({ "text": value });
                typed = self.session.try_cmd(Method::POST, &element.path("value"), Some(&body)).await;
            }
            match typed {
                Ok(_) => return,
                Err(error) => patience.tolerate(&format!("typing into {css:?}"), error),
            }
            patience.pause(&self.session, &format!("typing into {css:?}")).await;
        }
    }

    /// Sets the files of the `<input type=file>` matching `css`, finding it
    /// again when the live page re-rendered it in between.
    pub(crate) async fn upload_to(&self, css: &str, paths: &[&Path]) {
        let mut patience = Patience::new();
        loop {
            let element = self.find(css).await;
            match element.try_upload(paths).await {
                Ok(()) => return,
                Err(error) => patience.tolerate(&format!("uploading to {css:?}"), error),
            }
            patience.pause(&self.session, &format!("uploading to {css:?}")).await;
        }
    }

    /// Clicks the element matching `css` (and showing `text`, if given),
    /// finding it again when the live page re-rendered it in between.
    pub(crate) async fn click_on(&self, css: &str, text: Option<&str>) {
        let mut patience = Patience::new();
        loop {
            let element = self.element(self.session.wait_displayed(None, css, text).await);
            match self.session.try_cmd(Method::POST, &element.path("click"), Some(&json!({}))).await {
                Ok(_) => return,
                Err(error) => patience.tolerate(&format!("clicking {css:?}"), error),
            }
            patience.pause(&self.session, &format!("clicking {css:?}")).await;
        }
    }

    /// All elements currently matching `css`, displayed or not (no waiting).
    pub(crate) async fn find_all(&self, css: &str) -> Vec<Element> {
        self.session.find_ids(None, css).await.into_iter().map(|id| self.element(id)).collect()
    }

    /// Waits until at least `n` elements match `css` (displayed or not) and returns them all.
    pub(crate) async fn wait_count(&self, css: &str, n: usize) -> Vec<Element> {
        self.wait_count_within(css, n, WAIT).await
    }

    /// [`Browser::wait_count`] with its own time limit, for what waits on
    /// background work (generations, deliveries) rather than on the page.
    pub(crate) async fn wait_count_within(&self, css: &str, n: usize, limit: Duration) -> Vec<Element> {
        let what = format!("waiting for at least {n} elements matching {css:?}");
        let patience = Patience::with_limit(limit);
        loop {
            let ids = self.session.find_ids(None, css).await;
            if ids.len() >= n {
                return ids.into_iter().map(|id| self.element(id)).collect();
            }
            patience.pause(&self.session, &format!("{what} (found {})", ids.len())).await;
        }
    }

    /// Waits until no element matches `css`.
    pub(crate) async fn wait_gone(&self, css: &str) {
        let what = format!("waiting for no element to match {css:?}");
        let patience = Patience::new();
        while !self.session.find_ids(None, css).await.is_empty() {
            patience.pause(&self.session, &what).await;
        }
    }

    /// Runs synchronous JavaScript (`return ...` gives the result) with `args` as `arguments`; elements can be
    /// passed with `Value::from(&element)`.
    pub(crate) async fn execute(&self, script: &str, args: Vec<Value>) -> Value {
        self.session.try_execute(script, args).await.unwrap_or_else(|e| panic!("{e}\nscript: {script}"))
    }

    /// Presses and releases `key` on whatever has the focus, as keyboard shortcuts are handled. `key` is either
    /// a named key ("Enter", "Escape", "ArrowDown", ... as in `KeyboardEvent.key`) or text typed char by char.
    pub(crate) async fn press_key(&self, key: &str) {
        let keys: Vec<String> = match special_key(key) {
            Some(code) => vec![code.to_string()],
            None => key.chars().map(String::from).collect(),
        };
        let actions: Vec<Value> = keys
            .iter()
            .flat_map(|k| [json!({ "type": "keyDown", "value": k }), json!({ "type": "keyUp", "value": k })])
            .collect();
        self.session
            .post("/actions", json!({ "actions": [{ "type": "key", "id": "keyboard", "actions": actions }] }))
            .await;
        // Resets the driver's input state so no key counts as held by later actions.
        self.session.delete("/actions").await;
    }

    /// Saves a PNG screenshot of the viewport to `path`, creating its parent folders.
    pub(crate) async fn screenshot(&self, path: &Path) {
        let encoded = self.session.get("/screenshot").await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().unwrap_or_default())
            .expect("screenshot is not valid base64");
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .unwrap_or_else(|e| panic!("cannot create {}: {e}", parent.display()));
        }
        std::fs::write(path, png)
            .unwrap_or_else(|e| panic!("cannot write screenshot {}: {e}", path.display()));
    }

    /// Drags with the left mouse button from `from` to `to`, both in CSS pixels relative to the element's
    /// top-left corner, moving in 5 steps so that pages see intermediate `mousemove`s.
    pub(crate) async fn drag_on(&self, element: &Element, from: (i64, i64), to: (i64, i64)) {
        // W3C pointer actions cannot reach outside the viewport; this is a no-op if the element is visible.
        self.execute(
            "arguments[0].scrollIntoView({ block: 'nearest', inline: 'nearest' })",
            vec![element.into()],
        )
        .await;
        // With an element origin, W3C offsets are relative to the element's in-view center point, which is
        // floor((left + right) / 2) in viewport coordinates (integral scroll offsets keep the floor the same in
        // the document coordinates of /rect). Convert from top-left-relative offsets.
        let (x, y, width, height) = element.rect().await;
        let center = ((x + width / 2.0).floor(), (y + height / 2.0).floor());
        let origin = Value::from(element);
        let move_to = |(dx, dy): (i64, i64), duration_ms: u64| {
            let from_center = |start: f64, d: i64, center: f64| (start + d as f64 - center).round() as i64;
            json!({
                "type": "pointerMove",
                "origin": origin,
                "x": from_center(x, dx, center.0),
                "y": from_center(y, dy, center.1),
                "duration": duration_ms,
            })
        };

        const STEPS: i64 = 5;
        let mut actions = vec![move_to(from, 0), json!({ "type": "pointerDown", "button": 0 })];
        for step in 1..=STEPS {
            let between = (from.0 + (to.0 - from.0) * step / STEPS, from.1 + (to.1 - from.1) * step / STEPS);
            actions.push(move_to(between, 20));
        }
        actions.push(json!({ "type": "pointerUp", "button": 0 }));
        let pointer = json!({ "type": "pointer", "id": "mouse", "parameters": { "pointerType": "mouse" }, "actions": actions });
        self.session.post("/actions", json!({ "actions": [pointer] })).await;
        self.session.delete("/actions").await;
    }

    /// Ends the session (Chromium quits) and stops chromedriver.
    pub(crate) async fn close(mut self) {
        if let Err(e) = self.session.try_cmd(Method::DELETE, "", None).await {
            panic!("{e}\nchromedriver output:\n{}", self.scratch.read_log());
        }
        self.closed = true;
        self.driver.kill().await.expect("killing chromedriver");
    }
}

impl Drop for Browser {
    /// Runs when a test panics before `close`: quit Chromium too, not only chromedriver (killed by
    /// `kill_on_drop`), or it would outlive the test process.
    fn drop(&mut self) {
        if !self.closed {
            delete_session_blocking(self.driver_addr, &self.session_id);
            let _ = self.driver.start_kill();
        }
    }
}

/// A DOM element of the browser's current page.
#[derive(Clone)]
pub(crate) struct Element {
    session: Arc<Session>,
    id: String,
}

impl std::fmt::Debug for Element {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Element({})", self.id)
    }
}

/// Serializes an element as a WebDriver reference, for `Browser::execute` arguments.
impl From<&Element> for Value {
    fn from(element: &Element) -> Value {
        json!({ ELEMENT_KEY: element.id })
    }
}

impl Element {
    fn path(&self, command: &str) -> String {
        format!("/element/{}/{command}", self.id)
    }

    fn child(&self, id: String) -> Element {
        Element { session: Arc::clone(&self.session), id }
    }

    pub(crate) async fn click(&self) {
        self.session.post(&self.path("click"), json!({})).await;
    }

    /// Visible (rendered) text, as `innerText`: empty for hidden elements.
    pub(crate) async fn text(&self) -> String {
        let text = self.session.get(&self.path("text")).await;
        text.as_str().unwrap_or_default().to_owned()
    }

    /// The property if there is one, else the attribute (WebDriver "Get Element Attribute" semantics; boolean
    /// attributes give `Some("true")`).
    pub(crate) async fn attr(&self, name: &str) -> Option<String> {
        match self.session.get(&self.path(&format!("attribute/{name}"))).await {
            Value::Null => None,
            Value::String(value) => Some(value),
            other => Some(other.to_string()),
        }
    }

    /// Sets the files of an `<input type=file>`; several paths are sent joined by newlines, as chromedriver
    /// expects for `multiple` inputs. Relative paths are made absolute.
    async fn try_upload(&self, paths: &[&Path]) -> Result<(), WdError> {
        let absolute: Vec<String> = paths
            .iter()
            .map(|path| {
                let path = std::path::absolute(path)
                    .unwrap_or_else(|e| panic!("cannot resolve {}: {e}", path.display()));
                path.to_str()
                    .unwrap_or_else(|| panic!("upload path is not UTF-8: {}", path.display()))
                    .to_owned()
            })
            .collect();
        let body = json!({ "text": absolute.join("\n") });
        self.session.try_cmd(Method::POST, &self.path("value"), Some(&body)).await.map(|_| ())
    }

    /// Selects the `<option>` of this `<select>` whose text is `text` (trimmed), by clicking it like a user, so
    /// `input`/`change` fire. Waits for the option like `find`, as options are often filled in asynchronously.
    pub(crate) async fn select_text(&self, text: &str) {
        let wanted = text.trim();
        let what = format!("waiting for an <option> with text {wanted:?} in select {}", self.id);
        let mut patience = Patience::new();
        loop {
            match self.option_with_text(wanted).await {
                Ok(Some(option)) => {
                    option.click().await;
                    return;
                }
                Ok(None) => {}
                Err(e) => patience.tolerate(&what, e),
            }
            patience.pause(&self.session, &what).await;
        }
    }

    async fn option_with_text(&self, wanted: &str) -> Result<Option<Element>, WdError> {
        for id in self.session.try_find_ids(Some(&self.id), "option").await? {
            // The `text` property (whitespace-collapsed label) does not depend on the closed list being rendered.
            let label =
                self.session.try_cmd(Method::GET, &format!("/element/{id}/property/text"), None).await?;
            if label.as_str().map(str::trim) == Some(wanted) {
                return Ok(Some(self.child(id)));
            }
        }
        Ok(None)
    }

    /// First displayed descendant matching `css`, waiting like `Browser::find`.
    pub(crate) async fn find(&self, css: &str) -> Element {
        self.child(self.session.wait_displayed(Some(&self.id), css, None).await)
    }

    /// `(x, y, width, height)` in CSS pixels, relative to the document.
    pub(crate) async fn rect(&self) -> (f64, f64, f64, f64) {
        let rect = self.session.get(&self.path("rect")).await;
        let number =
            |key: &str| rect[key].as_f64().unwrap_or_else(|| panic!("element rect without {key}: {rect}"));
        (number("x"), number("y"), number("width"), number("height"))
    }
}
