//! The embedded S3 endpoint: `s3s-fs` (an S3 implementation over a local
//! folder) served by hyper on 127.0.0.1 with SigV4 authentication, so the
//! default installation and the tests use exactly the client code that talks
//! to AWS S3 or MinIO in production.

use std::net::SocketAddr;
use std::path::Path;

use hyper_util::rt::TokioIo;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::settings::{SecretKey, StorageSettings};
use crate::store::StorageError;

/// The bucket of the embedded endpoint.
const EMBEDDED_BUCKET: &str = "gps";

/// A running embedded endpoint. Dropping it stops accepting connections.
#[derive(Debug)]
pub struct EmbeddedS3 {
    address: SocketAddr,
    settings: StorageSettings,
    stop: watch::Sender<bool>,
    accept_loop: Option<JoinHandle<()>>,
}

impl EmbeddedS3 {
    /// Serves `dir` (created if missing) on 127.0.0.1 at a free port, with a
    /// fresh random key pair that exists only in this process.
    pub async fn start(dir: &Path) -> Result<Self, StorageError> {
        std::fs::create_dir_all(dir.join(EMBEDDED_BUCKET)).map_err(|source| StorageError::Embedded {
            detail: format!("cannot create the storage folder {}: {source}", dir.display()),
        })?;
        let filesystem = s3s_fs::FileSystem::new(dir).map_err(|error| StorageError::Embedded {
            detail: format!("cannot serve the storage folder {}: {error:?}", dir.display()),
        })?;
        let access_key = format!("gps-{}", random_hex(8));
        let secret = random_hex(32);
        let mut builder = S3ServiceBuilder::new(filesystem);
        builder.set_auth(SimpleAuth::from_single(access_key.clone(), secret.clone()));
        let service = builder.build();

        let listener = TcpListener::bind(("127.0.0.1", 0)).await.map_err(|source| {
            StorageError::Embedded { detail: format!("cannot listen on 127.0.0.1: {source}") }
        })?;
        let address = listener
            .local_addr()
            .map_err(|source| StorageError::Embedded { detail: format!("no local address: {source}") })?;
        let (stop, mut stopped) = watch::channel(false);
        let accept_loop = tokio::spawn(async move {
            loop {
                let socket = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((socket, _)) => socket,
                        Err(error) => {
                            tracing::warn!(%error, "embedded S3: accept failed");
                            continue;
                        }
                    },
                    _ = stopped.changed() => break,
                };
                let service = service.clone();
                tokio::spawn(async move {
                    let connection = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(socket), service);
                    if let Err(error) = connection.await {
                        tracing::debug!(%error, "embedded S3: connection ended with an error");
                    }
                });
            }
        });
        let settings = StorageSettings::new(
            format!("http://{address}"),
            EMBEDDED_BUCKET,
            access_key,
            SecretKey::new(secret),
        );
        Ok(EmbeddedS3 { address, settings, stop, accept_loop: Some(accept_loop) })
    }

    /// Where the endpoint listens.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The settings a client needs to reach this endpoint.
    pub fn settings(&self) -> &StorageSettings {
        &self.settings
    }

    /// Stops accepting connections and waits for the accept loop to end.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(accept_loop) = self.accept_loop.take() {
            let _ = accept_loop.await;
        }
    }
}

impl Drop for EmbeddedS3 {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    getrandom::fill(&mut buffer).expect("the OS random source is available");
    hex::encode(buffer)
}
