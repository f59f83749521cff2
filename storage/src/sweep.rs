//! The sweep: deletes objects nothing refers to and aborts multipart uploads
//! nobody finished.
//!
//! Objects are stored before the event that refers to them is appended (an
//! upload, then `product.image_added`; a generated image, then
//! `prediction.produced`). When the append is refused or the process dies in
//! between, the object stays with no reference: an orphan. A process killed
//! during a multipart upload leaves its parts on the endpoint, invisible and
//! billed.
//!
//! What counts as referenced is the caller's to say (the `gps` binary reads
//! every content hash the log's events name, plus what running generations
//! hold in the compute store); this module decides and deletes. It keeps:
//! - every object touched within the grace period. An upload of bytes that
//!   are already stored refreshes the object's time ([`ObjectStore::put`]), so
//!   an object about to be referred to by an event still being appended is
//!   always younger than the grace, whatever its first upload's age;
//! - every content object whose key is referenced, and every derivative of
//!   one (derivatives of an unreferenced source go with it: they can be made
//!   again from nothing else);
//! - anything in the bucket that is not in GPS's layout (never GPS's to delete).
//!
//! Each candidate is looked at again just before it is deleted, so an upload
//! that touched it after the listing keeps it.
//!
//! Multipart uploads are tracked by a marker object per upload
//! (`_uploads/<id>`, holding the key and the upload id), written before the
//! first part and removed when the upload completes or is aborted, so a sweep
//! finds the uploads of dead processes on any S3 endpoint, including those
//! (like the embedded one) that do not list multipart uploads. (Uploads begun
//! by a GPS older than the markers are left to the bucket's own lifecycle
//! rule, `AbortIncompleteMultipartUpload`, on endpoints that have one.)

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use aws_sdk_s3::primitives::DateTime;
use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::key::ObjectKey;
use crate::store::{ObjectStore, StorageError, request_error};

/// The prefix of multipart upload markers; no brand id starts with `_`.
pub(crate) const UPLOAD_MARKERS: &str = "_uploads/";

/// The shortest grace a sweep accepts: an upload, its image checks and the
/// append of its event all finish well within it.
pub const MIN_GRACE: Duration = Duration::from_secs(3600);

/// The content objects something refers to, as content keys
/// (`<brand>/<sha256 hex>`).
#[derive(Debug, Clone, Default)]
pub struct References(HashSet<String>);

impl References {
    /// No references yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds every content hash written anywhere in `text` (a whole event
    /// payload as JSON, a stored step result): any run of exactly 64 lowercase
    /// hex digits, with or without the `sha256:` prefix. Reading the text
    /// rather than known fields keeps every reference of every event type and
    /// version, present and future; a false match only keeps an object longer.
    pub fn add_text(&mut self, brand: &str, text: &str) {
        let bytes = text.as_bytes();
        let hex = |b: &u8| matches!(b, b'0'..=b'9' | b'a'..=b'f');
        let mut start = 0;
        while start < bytes.len() {
            if !hex(&bytes[start]) {
                start += 1;
                continue;
            }
            let mut end = start;
            while end < bytes.len() && hex(&bytes[end]) {
                end += 1;
            }
            if end - start == 64 {
                self.0.insert(format!("{brand}/{}", &text[start..end]));
            }
            start = end;
        }
    }

    /// How many distinct content objects are referenced.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether nothing is referenced.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn holds(&self, key: &ObjectKey) -> bool {
        self.0.contains(&key.source_key().to_string())
    }
}

/// Why an object stays, or that it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Not in GPS's layout.
    Foreign,
    /// Touched within the grace period.
    Recent,
    /// Referenced (itself, or its source for a derivative).
    Referenced,
    /// Nothing refers to it and it is older than the grace.
    Orphan,
}

pub(crate) fn verdict(
    key: &str,
    modified: SystemTime,
    cutoff: SystemTime,
    references: &References,
) -> Verdict {
    let Ok(key) = ObjectKey::parse(key) else { return Verdict::Foreign };
    if modified > cutoff {
        Verdict::Recent
    } else if references.holds(&key) {
        Verdict::Referenced
    } else {
        Verdict::Orphan
    }
}

/// What a sweep found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SweepReport {
    /// Objects listed.
    pub examined: u64,
    /// Kept: referenced.
    pub referenced: u64,
    /// Kept: touched within the grace period.
    pub recent: u64,
    /// Kept: not in GPS's layout.
    pub foreign: u64,
    /// Orphans deleted (or that would be, in a dry run).
    pub orphans: Vec<String>,
    /// Their bytes.
    pub orphan_bytes: u64,
    /// Unfinished multipart uploads aborted (or that would be), as `key (upload id)`.
    pub abandoned_uploads: Vec<String>,
    /// Whether nothing was changed.
    pub dry_run: bool,
}

/// One listed object.
struct Listed {
    key: String,
    bytes: u64,
    modified: SystemTime,
}

fn system_time(at: Option<&DateTime>) -> SystemTime {
    // An object without a time is treated as new: kept.
    at.and_then(|at| SystemTime::try_from(*at).ok()).unwrap_or_else(SystemTime::now)
}

impl ObjectStore {
    /// Deletes the objects `references` does not hold that were last touched
    /// more than `grace` ago, and aborts multipart uploads started more than
    /// `grace` ago; with `dry_run`, only reports them.
    pub async fn sweep(
        &self,
        references: &References,
        grace: Duration,
        dry_run: bool,
    ) -> Result<SweepReport, StorageError> {
        if grace < MIN_GRACE {
            return Err(StorageError::Misconfigured {
                detail: format!(
                    "a sweep grace of {} s is too short: uploads in progress would lose their objects; give at least {} s",
                    grace.as_secs(),
                    MIN_GRACE.as_secs()
                ),
            });
        }
        let cutoff = SystemTime::now() - grace;
        let mut report = SweepReport { dry_run, ..SweepReport::default() };
        self.abort_abandoned_uploads(cutoff, dry_run, &mut report).await?;
        let mut after: Option<String> = None;
        loop {
            let (page, next) = self.list_page("", after.as_deref()).await?;
            for listed in page {
                if listed.key.starts_with(UPLOAD_MARKERS) {
                    continue;
                }
                report.examined += 1;
                match verdict(&listed.key, listed.modified, cutoff, references) {
                    Verdict::Foreign => report.foreign += 1,
                    Verdict::Recent => report.recent += 1,
                    Verdict::Referenced => report.referenced += 1,
                    Verdict::Orphan => {
                        // Looked at again: an upload may have touched it since the listing.
                        let still_old =
                            self.modified(&listed.key).await?.is_some_and(|modified| modified <= cutoff);
                        if !still_old {
                            report.recent += 1;
                            continue;
                        }
                        if !dry_run {
                            self.delete(&listed.key).await?;
                        }
                        report.orphan_bytes += listed.bytes;
                        report.orphans.push(listed.key);
                    }
                }
            }
            match next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        Ok(report)
    }

    async fn abort_abandoned_uploads(
        &self,
        cutoff: SystemTime,
        dry_run: bool,
        report: &mut SweepReport,
    ) -> Result<(), StorageError> {
        let mut after: Option<String> = None;
        loop {
            let (page, next) = self.list_page(UPLOAD_MARKERS, after.as_deref()).await?;
            for marker in page.into_iter().filter(|marker| marker.modified <= cutoff) {
                let body = match self.client.get_object().bucket(&self.bucket).key(&marker.key).send().await {
                    Ok(output) => {
                        output.body.collect().await.map_err(request_error("GetObject body"))?.into_bytes()
                    }
                    Err(error) if error.as_service_error().is_some_and(|e| e.is_no_such_key()) => continue,
                    Err(error) => return Err(request_error("GetObject")(error)),
                };
                let text = String::from_utf8_lossy(&body);
                let Some((key, upload_id)) = text.split_once('\n') else {
                    // Not a marker GPS wrote; leave it.
                    continue;
                };
                if !dry_run {
                    self.abort_upload(key, upload_id).await?;
                    self.delete(&marker.key).await?;
                }
                report.abandoned_uploads.push(format!("{key} ({upload_id})"));
            }
            match next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        Ok(())
    }

    /// Writes the marker of a multipart upload before its first part.
    pub(crate) async fn mark_upload(&self, key: &str, upload_id: &str) -> Result<(), StorageError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(marker_key(upload_id))
            .content_type("text/plain")
            .body(Bytes::from(format!("{key}\n{upload_id}")).into())
            .send()
            .await
            .map_err(request_error("PutObject (upload marker)"))?;
        Ok(())
    }

    /// Removes the marker of a finished or aborted multipart upload. A marker
    /// that cannot be removed now is removed by the next sweep, whose abort of
    /// an upload that no longer exists changes nothing.
    pub(crate) async fn unmark_upload(&self, upload_id: &str) {
        if let Err(error) = self.delete(&marker_key(upload_id)).await {
            tracing::warn!(%error, "the marker of a finished multipart upload stays until the next sweep");
        }
    }

    async fn abort_upload(&self, key: &str, upload_id: &str) -> Result<(), StorageError> {
        match self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            // Already completed or aborted: nothing is left to free.
            Err(error) if error.as_service_error().is_some_and(|e| e.is_no_such_upload()) => Ok(()),
            Err(error) if error.raw_response().is_some_and(|raw| raw.status().as_u16() == 404) => Ok(()),
            Err(error) => Err(request_error("AbortMultipartUpload")(error)),
        }
    }

    async fn list_page(
        &self,
        prefix: &str,
        after: Option<&str>,
    ) -> Result<(Vec<Listed>, Option<String>), StorageError> {
        let mut request = self.client.list_objects_v2().bucket(&self.bucket).max_keys(1000);
        if !prefix.is_empty() {
            request = request.prefix(prefix);
        }
        if let Some(after) = after {
            request = request.start_after(after);
        }
        let listed = request.send().await.map_err(request_error("ListObjectsV2"))?;
        let page: Vec<Listed> = listed
            .contents()
            .iter()
            .filter_map(|object| {
                Some(Listed {
                    key: object.key()?.to_owned(),
                    bytes: object.size().and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
                    modified: system_time(object.last_modified()),
                })
            })
            .collect();
        let next =
            if listed.is_truncated() == Some(true) { page.last().map(|last| last.key.clone()) } else { None };
        Ok((page, next))
    }

    async fn modified(&self, key: &str) -> Result<Option<SystemTime>, StorageError> {
        match self.client.head_object().bucket(&self.bucket).key(key).send().await {
            Ok(head) => Ok(Some(system_time(head.last_modified()))),
            Err(error) if error.as_service_error().is_some_and(|e| e.is_not_found()) => Ok(None),
            Err(error) => Err(request_error("HeadObject")(error)),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(request_error("DeleteObject"))?;
        Ok(())
    }
}

fn marker_key(upload_id: &str) -> String {
    // Upload ids are the endpoint's; hashed, any of them makes a plain key.
    format!("{UPLOAD_MARKERS}{}", hex::encode(&Sha256::digest(upload_id.as_bytes())[..16]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::MIN_PART_SIZE;
    use crate::store::content_hash;
    use crate::{EmbeddedS3, StorageSettings};
    use gps_domain::ids::BrandId;

    const DAY: Duration = Duration::from_secs(86_400);

    /// Sets the time of every file under `dir` two days back, as if stored then.
    fn age_everything(dir: &std::path::Path) {
        let old = SystemTime::now() - 2 * DAY;
        for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                age_everything(&path);
            } else {
                let file = std::fs::File::options().write(true).open(&path).expect("open");
                file.set_times(std::fs::FileTimes::new().set_modified(old)).expect("set time");
            }
        }
    }

    fn acme() -> BrandId {
        BrandId::parse("acme").expect("brand")
    }

    #[tokio::test]
    async fn a_sweep_deletes_old_orphans_and_their_derivatives_and_keeps_what_is_referenced_or_touched() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, _server) = ObjectStore::embedded(dir.path()).await.expect("embedded store");
        let referenced =
            store.put(&acme(), Bytes::from_static(b"in an event"), "image/png").await.expect("put");
        let orphan =
            store.put(&acme(), Bytes::from_static(b"command refused"), "image/png").await.expect("put");
        let reused =
            store.put(&acme(), Bytes::from_static(b"uploaded again"), "image/png").await.expect("put");
        let orphan_rendition = ObjectKey::derivative(&orphan.key, "w10.webp").expect("derivative");
        store.put_at(&orphan_rendition, Bytes::from_static(b"small"), "image/webp").await.expect("put");
        let kept_rendition = ObjectKey::derivative(&referenced.key, "w10.webp").expect("derivative");
        store.put_at(&kept_rendition, Bytes::from_static(b"small"), "image/webp").await.expect("put");
        store
            .client
            .put_object()
            .bucket(&store.bucket)
            .key("backups/not-ours.txt")
            .body(Bytes::from_static(b"x").into())
            .send()
            .await
            .expect("foreign object");
        age_everything(dir.path());
        // Uploaded again after it aged: its event may be on its way.
        let again =
            store.put(&acme(), Bytes::from_static(b"uploaded again"), "image/png").await.expect("put");
        assert!(!again.newly_stored);
        let mut references = References::new();
        references.add_text("acme", &format!(r#"{{"hash":"{}"}}"#, referenced.hash.as_str()));

        let dry = store.sweep(&references, DAY, true).await.expect("dry run");
        let mut expected = vec![orphan.key.to_string(), orphan_rendition.to_string()];
        expected.sort();
        let mut found = dry.orphans.clone();
        found.sort();
        assert_eq!(found, expected, "{dry:?}");
        assert!(store.exists(&orphan.key).await.expect("head"), "a dry run deletes nothing");

        let swept = store.sweep(&references, DAY, false).await.expect("sweep");
        assert_eq!(swept.orphans.len(), 2, "{swept:?}");
        assert_eq!((swept.referenced, swept.recent, swept.foreign), (2, 1, 1), "{swept:?}");
        assert!(!store.exists(&orphan.key).await.expect("head"));
        assert!(!store.exists(&orphan_rendition).await.expect("head"));
        for kept in [&referenced.key, &kept_rendition, &reused.key] {
            assert!(store.exists(kept).await.expect("head"), "{kept} was kept");
        }
        assert_eq!(store.get(&reused.key).await.expect("get").body, Bytes::from_static(b"uploaded again"));
        let again = store.sweep(&references, DAY, false).await.expect("second sweep");
        assert!(again.orphans.is_empty(), "{again:?}");
    }

    #[tokio::test]
    async fn a_multipart_upload_whose_process_died_is_aborted_and_a_finished_one_leaves_no_marker() {
        let dir = tempfile::tempdir().expect("tempdir");
        let server = EmbeddedS3::start(dir.path()).await.expect("server");
        let settings = StorageSettings { multipart_part_size: MIN_PART_SIZE, ..server.settings().clone() };
        let store = ObjectStore::connect(&settings).await.expect("connect");
        let large: Bytes = (0..(MIN_PART_SIZE + 10)).map(|i| (i % 251) as u8).collect::<Vec<u8>>().into();
        store.put(&acme(), large.clone(), "application/octet-stream").await.expect("finished upload");

        // What put_multipart does up to its first part, then the process dies.
        let key = ObjectKey::content(&acme(), &content_hash(b"never finished")).to_string();
        let started = store
            .client
            .create_multipart_upload()
            .bucket(&store.bucket)
            .key(&key)
            .send()
            .await
            .expect("create upload");
        let upload_id = started.upload_id().expect("upload id").to_owned();
        store.mark_upload(&key, &upload_id).await.expect("marker");
        store
            .client
            .upload_part()
            .bucket(&store.bucket)
            .key(&key)
            .upload_id(&upload_id)
            .part_number(1)
            .body(large.slice(..MIN_PART_SIZE).into())
            .send()
            .await
            .expect("first part");
        let leftovers = |dir: &std::path::Path| {
            std::fs::read_dir(dir)
                .expect("read dir")
                .flatten()
                .filter(|entry| entry.file_name().to_string_lossy().contains("upload"))
                .count()
        };
        assert!(leftovers(dir.path()) > 0, "the dead upload's part is on disk");
        let (markers, _) = store.list_page(UPLOAD_MARKERS, None).await.expect("list markers");
        assert_eq!(markers.len(), 1, "only the unfinished upload keeps a marker");

        let young = store.sweep(&References::new(), DAY, false).await.expect("sweep");
        assert!(young.abandoned_uploads.is_empty(), "an upload within the grace may still be running");
        age_everything(dir.path());
        let mut references = References::new();
        references.add_text("acme", content_hash(&large).as_str());
        let swept = store.sweep(&references, DAY, false).await.expect("sweep");
        assert_eq!(swept.abandoned_uploads, vec![format!("{key} ({upload_id})")]);
        assert!(swept.orphans.is_empty(), "{swept:?}");
        assert_eq!(leftovers(dir.path()), 0, "the dead upload's parts are gone");
        let (markers, _) = store.list_page(UPLOAD_MARKERS, None).await.expect("list markers");
        assert!(markers.is_empty());
    }

    #[tokio::test]
    async fn a_grace_shorter_than_an_hour_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, _server) = ObjectStore::embedded(dir.path()).await.expect("embedded store");
        let refused = store.sweep(&References::new(), Duration::from_secs(60), false).await;
        assert!(matches!(refused, Err(StorageError::Misconfigured { .. })), "{refused:?}");
    }

    const HEX_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const HEX_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    #[test]
    fn references_are_every_sha256_in_the_text_and_nothing_shorter_or_longer() {
        let mut references = References::new();
        let payload = format!(
            r#"{{"image":{{"hash":"sha256:{HEX_A}"}},"note":"{HEX_B}","long":"{HEX_A}0","short":"{}"}}"#,
            &HEX_B[..63]
        );
        references.add_text("acme", &payload);
        assert_eq!(references.len(), 2);
        let key = |text: &str| ObjectKey::parse(text).expect("key");
        assert!(references.holds(&key(&format!("acme/{HEX_A}"))));
        assert!(references.holds(&key(&format!("acme/{HEX_B}"))));
        assert!(!references.holds(&key(&format!("other/{HEX_A}"))), "a reference is the brand's own");
    }

    #[test]
    fn an_orphan_is_old_unreferenced_and_in_the_layout_and_its_derivatives_go_with_it() {
        let now = SystemTime::now();
        let cutoff = now - Duration::from_secs(86_400);
        let old = cutoff - Duration::from_secs(1);
        let mut references = References::new();
        references.add_text("acme", HEX_A);
        let content = |hex: &str| format!("acme/{hex}");
        let derivative = |hex: &str| format!("acme/derivatives/{hex}/w400.webp");
        assert_eq!(verdict(&content(HEX_A), old, cutoff, &references), Verdict::Referenced);
        assert_eq!(verdict(&derivative(HEX_A), old, cutoff, &references), Verdict::Referenced);
        assert_eq!(verdict(&content(HEX_B), old, cutoff, &references), Verdict::Orphan);
        assert_eq!(verdict(&derivative(HEX_B), old, cutoff, &references), Verdict::Orphan);
        assert_eq!(verdict(&content(HEX_B), now, cutoff, &references), Verdict::Recent);
        assert_eq!(verdict("backups/db.dump", old, cutoff, &references), Verdict::Foreign);
    }
}
