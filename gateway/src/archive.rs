//! Image archives of catalog imports: a ZIP is read only within limits, so a
//! hostile archive cannot escape its folder or exhaust memory.
//!
//! - entry names must be relative paths without `..`, drive letters or
//!   absolute roots (`../../etc/passwd`, `/x`, `C:\x` are refused, not
//!   "cleaned");
//! - at most `max_entries` entries;
//! - each entry is inflated with a running count and refused past
//!   `max_entry_bytes` — the declared size is not trusted (zip bombs lie);
//! - all entries together at most `max_total_bytes`.
//!
//! Directories are skipped; every file is known by its path in the archive.
//! [`CheckedArchive::check`] does all of this once, up front, so a bad archive
//! refuses the whole import before anything is stored.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Cursor, Read};

use bytes::Bytes;

/// Limits of one archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchiveLimits {
    /// The most entries (files and folders).
    pub max_entries: usize,
    /// The most bytes one file may inflate to.
    pub max_entry_bytes: u64,
    /// The most bytes all files together may inflate to.
    pub max_total_bytes: u64,
}

impl Default for ArchiveLimits {
    fn default() -> Self {
        ArchiveLimits {
            max_entries: 5_000,
            max_entry_bytes: 40 * 1024 * 1024,
            max_total_bytes: 2 * 1024 * 1024 * 1024,
        }
    }
}

/// Why an archive is refused, for the person who sent it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArchiveError {
    /// Not a readable ZIP.
    #[error("the archive is not a readable ZIP file ({0})")]
    NotAZip(String),
    /// Too many entries.
    #[error("the archive has {entries} entries; the limit is {limit}")]
    TooManyEntries {
        /// Entries found.
        entries: usize,
        /// The limit.
        limit: usize,
    },
    /// An entry name leaves the archive's folder.
    #[error(
        "the archive entry {name:?} points outside the archive (absolute path or `..`); nothing was imported"
    )]
    UnsafePath {
        /// The entry name.
        name: String,
    },
    /// One entry inflates beyond the limit.
    #[error("the archive entry {name:?} unpacks to more than {limit} bytes, the limit (a ZIP bomb?)")]
    EntryTooLarge {
        /// The entry name.
        name: String,
        /// The limit.
        limit: u64,
    },
    /// All entries together inflate beyond the limit.
    #[error("the archive unpacks to more than {limit} bytes in total, the limit")]
    TotalTooLarge {
        /// The limit.
        limit: u64,
    },
    /// An entry cannot be read.
    #[error("the archive entry {name:?} is damaged ({reason})")]
    Corrupt {
        /// The entry name.
        name: String,
        /// Why.
        reason: String,
    },
}

fn is_safe_path(name: &str) -> bool {
    let absolute_or_odd = name.is_empty()
        || name.starts_with('/')
        || name.contains('\\')
        || name.contains('\0')
        || (name.len() >= 2 && name.as_bytes()[1] == b':');
    !absolute_or_odd && name.split('/').all(|part| part != "..")
}

/// An archive whose names, entry count and inflated sizes were all checked.
/// It keeps only the compressed bytes; each file is inflated again when read,
/// so a large archive never sits in memory inflated.
#[derive(Debug, Clone)]
pub struct CheckedArchive {
    bytes: Bytes,
    names: BTreeSet<String>,
    limits: ArchiveLimits,
}

impl CheckedArchive {
    /// Checks the ZIP `bytes` against `limits`: every entry name first (one
    /// unsafe name refuses the whole archive before anything is inflated), then
    /// every file inflated with a running count, its data thrown away.
    pub fn check(bytes: Bytes, limits: ArchiveLimits) -> Result<Self, ArchiveError> {
        let mut archive = open(&bytes)?;
        if archive.len() > limits.max_entries {
            return Err(ArchiveError::TooManyEntries { entries: archive.len(), limit: limits.max_entries });
        }
        for index in 0..archive.len() {
            let name = match archive.name_for_index(index) {
                Some(Ok(name)) => name.to_string(),
                Some(Err(error)) => {
                    return Err(ArchiveError::Corrupt {
                        name: format!("#{index}"),
                        reason: error.to_string(),
                    });
                }
                None => {
                    return Err(ArchiveError::Corrupt {
                        name: format!("#{index}"),
                        reason: "missing".into(),
                    });
                }
            };
            if !is_safe_path(&name) {
                return Err(ArchiveError::UnsafePath { name });
            }
        }
        let mut names = BTreeSet::new();
        let mut total: u64 = 0;
        for index in 0..archive.len() {
            let entry = archive.by_index(index).map_err(|error| ArchiveError::Corrupt {
                name: format!("#{index}"),
                reason: error.to_string(),
            })?;
            if entry.is_dir() {
                continue;
            }
            let name = entry_name(&entry, index)?;
            let inflated = inflate(entry, &name, limits, std::io::sink())?;
            total += inflated;
            if total > limits.max_total_bytes {
                return Err(ArchiveError::TotalTooLarge { limit: limits.max_total_bytes });
            }
            names.insert(name);
        }
        Ok(CheckedArchive { bytes, names, limits })
    }

    /// Whether the archive has a file called `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.names.contains(name)
    }

    /// The file names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(String::as_str)
    }

    /// The bytes of file `name`, inflated (within the per-entry limit);
    /// `None` when there is no such file.
    pub fn read(&self, name: &str) -> Result<Option<Bytes>, ArchiveError> {
        if !self.names.contains(name) {
            return Ok(None);
        }
        let mut archive = open(&self.bytes)?;
        let entry = archive
            .by_name(name)
            .map_err(|error| ArchiveError::Corrupt { name: name.to_owned(), reason: error.to_string() })?;
        let mut data = Vec::new();
        inflate(entry, name, self.limits, &mut data)?;
        Ok(Some(Bytes::from(data)))
    }

    /// The archive as sent (compressed).
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }
}

fn open(bytes: &[u8]) -> Result<zip::ZipArchive<Cursor<&[u8]>>, ArchiveError> {
    zip::ZipArchive::new(Cursor::new(bytes)).map_err(|error| ArchiveError::NotAZip(error.to_string()))
}

fn entry_name<R: Read>(entry: &zip::read::ZipFile<'_, R>, index: usize) -> Result<String, ArchiveError> {
    entry
        .name()
        .map(|name| name.to_string())
        .map_err(|error| ArchiveError::Corrupt { name: format!("#{index}"), reason: error.to_string() })
}

/// Inflates one entry into `out`, counting: past the per-entry limit it stops
/// (the declared size is not trusted). Returns the inflated size.
fn inflate(
    entry: impl Read,
    name: &str,
    limits: ArchiveLimits,
    mut out: impl std::io::Write,
) -> Result<u64, ArchiveError> {
    let copied = std::io::copy(&mut entry.take(limits.max_entry_bytes + 1), &mut out)
        .map_err(|error| ArchiveError::Corrupt { name: name.to_owned(), reason: error.to_string() })?;
    if copied > limits.max_entry_bytes {
        return Err(ArchiveError::EntryTooLarge { name: name.to_owned(), limit: limits.max_entry_bytes });
    }
    Ok(copied)
}

/// Reads every file of the ZIP `bytes` within `limits`.
pub fn read_files(bytes: &[u8], limits: ArchiveLimits) -> Result<BTreeMap<String, Bytes>, ArchiveError> {
    let archive = CheckedArchive::check(Bytes::copy_from_slice(bytes), limits)?;
    let mut files = BTreeMap::new();
    for name in archive.names() {
        if let Some(data) = archive.read(name)? {
            files.insert(name.to_owned(), data);
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let options =
            zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        for (name, data) in entries {
            writer.start_file(*name, options).expect("start");
            writer.write_all(data).expect("write");
        }
        writer.finish().expect("finish").into_inner()
    }

    #[test]
    fn a_plain_archive_is_read_whole() {
        let files =
            read_files(&zip_of(&[("a.png", b"one"), ("sub/b.jpg", b"two")]), ArchiveLimits::default())
                .expect("read");
        assert_eq!(files.get("sub/b.jpg").map(|b| b.as_ref()), Some(&b"two"[..]));
        assert_eq!(files.len(), 2);
    }

    #[test]
    fn entries_leaving_the_archive_are_refused() {
        for name in ["../evil.png", "a/../../evil.png", "/etc/passwd", "C:\\x.png", "a\\..\\b.png"] {
            let refused = read_files(&zip_of(&[("ok.png", b"x"), (name, b"y")]), ArchiveLimits::default());
            assert!(matches!(&refused, Err(ArchiveError::UnsafePath { .. })), "{name}: {refused:?}");
        }
    }

    #[test]
    fn a_zip_bomb_is_stopped_at_the_entry_limit_without_trusting_its_declared_size() {
        let bomb = zip_of(&[("zeros.png", &vec![0u8; 8 * 1024 * 1024])]);
        assert!(bomb.len() < 100 * 1024, "the bomb is small: {} bytes", bomb.len());
        let limits = ArchiveLimits { max_entry_bytes: 1024 * 1024, ..ArchiveLimits::default() };
        assert!(matches!(read_files(&bomb, limits), Err(ArchiveError::EntryTooLarge { .. })));
        let limits = ArchiveLimits { max_total_bytes: 1024 * 1024, ..ArchiveLimits::default() };
        assert!(matches!(read_files(&bomb, limits), Err(ArchiveError::TotalTooLarge { .. })));
    }

    #[test]
    fn too_many_entries_and_non_zips_are_refused() {
        let many: Vec<(String, Vec<u8>)> = (0..11).map(|i| (format!("{i}.png"), vec![1u8])).collect();
        let entries: Vec<(&str, &[u8])> = many.iter().map(|(n, d)| (n.as_str(), d.as_slice())).collect();
        let limits = ArchiveLimits { max_entries: 10, ..ArchiveLimits::default() };
        assert!(matches!(
            read_files(&zip_of(&entries), limits),
            Err(ArchiveError::TooManyEntries { entries: 11, .. })
        ));
        assert!(matches!(read_files(b"%PDF-1.4", ArchiveLimits::default()), Err(ArchiveError::NotAZip(_))));
    }
}
