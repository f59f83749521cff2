//! The embedded S3 endpoint: `s3s-fs` (an S3 implementation over a local
//! folder) served by hyper on 127.0.0.1 with SigV4 authentication, so the
//! default installation and the tests use exactly the client code that talks
//! to AWS S3 or MinIO in production.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use s3s::auth::SimpleAuth;
use s3s::service::{S3Service, S3ServiceBuilder};
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
        let root = dir.to_path_buf();
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
                let (service, root) = (service.clone(), root.clone());
                let durable = hyper::service::service_fn(move |request| {
                    serve_durably(service.clone(), root.clone(), request)
                });
                tokio::spawn(async move {
                    let connection = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(socket), durable);
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

/// Serves one request; once it completed an object (PutObject, CopyObject,
/// CompleteMultipartUpload), flushes the object's file and folder to disk
/// before answering. `s3s-fs` renames a buffered temporary file into place
/// without fsync, and a caller records the object in the log as soon as it
/// has the answer: acknowledged must mean durable, as with a real S3.
async fn serve_durably(
    service: S3Service,
    root: PathBuf,
    request: hyper::Request<hyper::body::Incoming>,
) -> Result<s3s::HttpResponse, s3s::HttpError> {
    let completed_file = completes_object(request.method(), request.uri())
        .then(|| object_file(&root, request.uri().path()))
        .flatten();
    let response = hyper::service::Service::call(&service, request).await?;
    let Some(file) = completed_file.filter(|_| response.status().is_success()) else { return Ok(response) };
    let synced =
        tokio::task::spawn_blocking(move || sync_file_and_folder(&file).map_err(|e| (file, e))).await;
    match synced {
        Ok(Ok(())) => Ok(response),
        Ok(Err((file, error))) => {
            tracing::error!(file = %file.display(), %error, "embedded S3: an object could not be flushed to disk");
            Ok(internal_error())
        }
        Err(error) => {
            tracing::error!(%error, "embedded S3: the flush task failed");
            Ok(internal_error())
        }
    }
}

/// Whether a request completes an object when it succeeds: a PUT that is not
/// one part of a multipart upload, or the POST that completes one.
fn completes_object(method: &hyper::Method, uri: &hyper::Uri) -> bool {
    let query = uri.query().unwrap_or("");
    let has = |name: &str| query.split('&').any(|pair| pair.split('=').next() == Some(name));
    (method == hyper::Method::PUT && !has("partNumber") && !has("uploadId"))
        || (method == hyper::Method::POST && has("uploadId"))
}

/// The file `s3s-fs` keeps a path-style object URL in (`/<bucket>/<key>`
/// under the root), or `None` for a URL that names no object.
fn object_file(root: &Path, url_path: &str) -> Option<PathBuf> {
    let decoded = percent_decode(url_path.trim_start_matches('/'))?;
    let (bucket, key) = decoded.split_once('/')?;
    let relative = Path::new(bucket).join(key);
    // A key is never allowed to leave the root (s3s-fs refuses such keys too).
    if key.is_empty() || relative.components().any(|part| !matches!(part, std::path::Component::Normal(_))) {
        return None;
    }
    Some(root.join(relative))
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let hex = text.get(index + 1..index + 3)?;
            decoded.push(u8::from_str_radix(hex, 16).ok()?);
            index += 3;
        } else {
            decoded.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(decoded).ok()
}

/// fsync of the file, then of its folder (which makes the rename durable).
fn sync_file_and_folder(file: &Path) -> std::io::Result<()> {
    std::fs::File::open(file)?.sync_all()?;
    if let Some(folder) = file.parent() {
        std::fs::File::open(folder)?.sync_all()?;
    }
    Ok(())
}

fn internal_error() -> s3s::HttpResponse {
    let mut response = s3s::HttpResponse::new(s3s::Body::from(
        "<Error><Code>InternalError</Code><Message>the object could not be flushed to disk</Message></Error>"
            .to_owned(),
    ));
    *response.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
    response
}

fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    getrandom::fill(&mut buffer).expect("the OS random source is available");
    hex::encode(buffer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_requests_that_complete_an_object_are_flushed() {
        let uri = |text: &str| text.parse::<hyper::Uri>().expect("uri");
        assert!(completes_object(&hyper::Method::PUT, &uri("/gps/brands/acme/a")));
        assert!(completes_object(&hyper::Method::POST, &uri("/gps/brands/acme/a?uploadId=7")));
        assert!(!completes_object(&hyper::Method::PUT, &uri("/gps/brands/acme/a?partNumber=1&uploadId=7")));
        assert!(!completes_object(&hyper::Method::POST, &uri("/gps/brands/acme/a?uploads")));
        assert!(!completes_object(&hyper::Method::GET, &uri("/gps/brands/acme/a")));
    }

    #[test]
    fn an_object_url_maps_to_its_file_under_the_root_and_never_outside_it() {
        let root = Path::new("/data/objects");
        assert_eq!(
            object_file(root, "/gps/brands/acme/content/ab%20c"),
            Some(PathBuf::from("/data/objects/gps/brands/acme/content/ab c"))
        );
        assert_eq!(object_file(root, "/gps/../etc/passwd"), None);
        assert_eq!(object_file(root, "/gps/%2e%2e/x"), None);
        assert_eq!(object_file(root, "/gps"), None);
        assert_eq!(object_file(root, "/gps/a%zz"), None);
    }

    #[tokio::test]
    async fn a_stored_object_is_on_disk_where_the_flush_looks_for_it() {
        let dir = tempfile::tempdir().expect("dir");
        let (store, _server) = crate::ObjectStore::embedded(dir.path()).await.expect("embedded store");
        let brand = gps_domain::ids::BrandId::parse("acme").expect("brand");
        let stored =
            store.put(&brand, bytes::Bytes::from_static(b"durable"), "text/plain").await.expect("put");
        let file = object_file(dir.path(), &format!("/{EMBEDDED_BUCKET}/{}", stored.key)).expect("a file");
        assert_eq!(std::fs::read(&file).expect("the object's file"), b"durable");
    }
}
