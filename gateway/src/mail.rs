//! Outgoing mail: the messages GPS sends people (today: "you were added to a
//! brand", with a one-time link to choose a password when the person has
//! none yet). [`Mailer`] is the one place that hands a message over; the
//! only transport today is an outbox folder ([`Outbox`]: one RFC 5322
//! `.eml` file per message, written to a staging file and renamed, mode
//! 600), which an operator's relay or a person on a development machine
//! reads. SMTP becomes another variant of [`Mailer`] (issue 18).
//!
//! A message may hold a secret (the link), so a mail is never logged and
//! never part of an event: the outbox file is the only place it is written.
//! Depends on no database or NATS.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc2822;

/// One message to one person, in plain text.
#[derive(Clone)]
pub struct Message {
    /// The recipient's address (already parsed as an email).
    pub to: String,
    /// The recipient's name, for the `To` header.
    pub to_name: String,
    /// The subject line.
    pub subject: String,
    /// The plain-text body (lines end with `\n`; written as CRLF).
    pub body: String,
}

impl std::fmt::Debug for Message {
    // The body may carry a one-time link: never print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message").field("subject", &self.subject).finish_non_exhaustive()
    }
}

/// Why a message was not handed over.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// No transport is configured (a gateway built without one, e.g. a
    /// benchmark): nothing was sent.
    #[error("no mailer is configured (set mail_outbox_dir / GPS_MAIL_OUTBOX_DIR)")]
    NotConfigured,
    /// The outbox folder could not be written.
    #[error("writing to the mail outbox {dir}: {source}")]
    Outbox {
        /// The outbox folder.
        dir: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
}

/// Where mail goes.
#[derive(Debug, Clone, Default)]
pub enum Mailer {
    /// Nowhere: sending fails with [`MailError::NotConfigured`]. `gps up`
    /// always configures a transport; this is for gateways built in code.
    #[default]
    NotConfigured,
    /// Files in a folder.
    Outbox(Outbox),
}

impl Mailer {
    /// An outbox in `dir` (created on first use), sending as `from`.
    pub fn outbox(dir: impl Into<PathBuf>, from: impl Into<String>) -> Self {
        Mailer::Outbox(Outbox { dir: dir.into(), from: from.into() })
    }

    /// Hands `message` over; returns where it went (for the outbox, the file).
    pub async fn send(&self, message: &Message) -> Result<String, MailError> {
        match self {
            Mailer::NotConfigured => Err(MailError::NotConfigured),
            Mailer::Outbox(outbox) => {
                let outbox = outbox.clone();
                let message = message.clone();
                let dir = outbox.dir.clone();
                tokio::task::spawn_blocking(move || outbox.write(&message, OffsetDateTime::now_utc()))
                    .await
                    .map_err(|e| MailError::Outbox { dir, source: std::io::Error::other(e) })?
                    .map(|path| path.display().to_string())
            }
        }
    }
}

/// The sender address used when none is configured.
pub const DEFAULT_FROM: &str = "GPS <gps@localhost>";

/// An outbox folder: one `.eml` file per message, named so that they sort
/// by time (`<UTC time>-<uuid>.eml`). A file appears whole or not at all:
/// it is written under `.staging/` and renamed into place.
#[derive(Debug, Clone)]
pub struct Outbox {
    dir: PathBuf,
    from: String,
}

impl Outbox {
    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn write(&self, message: &Message, now: OffsetDateTime) -> Result<PathBuf, MailError> {
        let failed = |source| MailError::Outbox { dir: self.dir.clone(), source };
        let staging = self.dir.join(".staging");
        create_private_dir(&self.dir).map_err(failed)?;
        create_private_dir(&staging).map_err(failed)?;
        let id = uuid::Uuid::now_v7().simple().to_string();
        let stamp = format!(
            "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
            now.year(),
            u8::from(now.month()),
            now.day(),
            now.hour(),
            now.minute(),
            now.second()
        );
        let name = format!("{stamp}-{id}.eml");
        let staged = staging.join(&name);
        let text = render(message, &self.from, &id, now);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let written = (|| {
            let mut file = options.open(&staged)?;
            file.write_all(text.as_bytes())?;
            file.sync_all()
        })();
        if let Err(error) = written {
            let _ = std::fs::remove_file(&staged);
            return Err(failed(error));
        }
        let target = self.dir.join(&name);
        std::fs::rename(&staged, &target).map_err(failed)?;
        // The rename is durable once the folder is.
        if let Ok(dir) = std::fs::File::open(&self.dir) {
            let _ = dir.sync_all();
        }
        Ok(target)
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// The message as RFC 5322 text (CRLF line ends, UTF-8 body, headers
/// encoded as RFC 2047 words where they are not plain ASCII).
fn render(message: &Message, from: &str, id: &str, now: OffsetDateTime) -> String {
    let date = now.format(&Rfc2822).unwrap_or_default();
    let host = from.rsplit_once('@').map_or("localhost", |(_, host)| host.trim_end_matches('>').trim());
    let to = format!("{} <{}>", phrase(&message.to_name), one_line(&message.to));
    let mut text = String::new();
    for (name, value) in [
        ("From", one_line(from)),
        ("To", to),
        ("Subject", word(&message.subject)),
        ("Date", date),
        ("Message-ID", format!("<{id}@{}>", one_line(host))),
        ("MIME-Version", "1.0".to_owned()),
        ("Content-Type", "text/plain; charset=utf-8".to_owned()),
        ("Content-Transfer-Encoding", "8bit".to_owned()),
        ("Auto-Submitted", "auto-generated".to_owned()),
    ] {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str("\r\n");
    for line in message.body.lines() {
        text.push_str(line);
        text.push_str("\r\n");
    }
    text
}

/// Header text on one line: control characters (a CR or LF would start a
/// header of the sender's choosing) become spaces.
fn one_line(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// Unstructured header text: as is when printable ASCII, else one RFC 2047
/// encoded word.
fn word(text: &str) -> String {
    let text = one_line(text);
    if text.chars().all(|c| c.is_ascii() && !c.is_ascii_control()) {
        text
    } else {
        format!("=?UTF-8?B?{}?=", base64::engine::general_purpose::STANDARD.encode(text.as_bytes()))
    }
}

/// A display name in an address header: an encoded word, or a quoted string.
fn phrase(text: &str) -> String {
    let text = one_line(text);
    if text.is_ascii() {
        format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        word(&text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message() -> Message {
        Message {
            to: "zoé@example.com".into(),
            to_name: "Zoé \"Z\"".into(),
            subject: "You were added to Maison Étoile\r\nBcc: evil@example.com".into(),
            body: "Hello\nline two\n".into(),
        }
    }

    #[test]
    fn a_message_is_rfc_5322_text_whose_headers_no_field_can_break() {
        let now = OffsetDateTime::from_unix_timestamp(1_700_000_000).expect("time");
        let text = render(&message(), DEFAULT_FROM, "abc", now);
        let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
        assert!(head.lines().all(|line| line.contains(": ")), "{head}");
        assert!(!head.contains("\nBcc"), "a newline in the subject started a header: {head}");
        assert!(head.contains("Subject: =?UTF-8?B?"));
        assert!(head.contains("Date: Tue, 14 Nov 2023 22:13:20 +0000"));
        assert!(head.contains("Message-ID: <abc@localhost>"));
        assert_eq!(body, "Hello\r\nline two\r\n");
    }

    #[test]
    fn the_outbox_writes_one_private_file_per_message_and_leaves_no_staging_file() {
        let dir = tempfile::tempdir().expect("dir");
        let outbox = Outbox { dir: dir.path().join("outbox"), from: DEFAULT_FROM.into() };
        let now = OffsetDateTime::now_utc();
        let first = outbox.write(&message(), now).expect("written");
        let second = outbox.write(&message(), now).expect("written");
        assert_ne!(first, second);
        let files: Vec<_> = std::fs::read_dir(outbox.dir())
            .expect("outbox")
            .filter_map(|entry| entry.ok())
            .filter(|entry| entry.path().extension().is_some_and(|e| e == "eml"))
            .collect();
        assert_eq!(files.len(), 2);
        assert_eq!(std::fs::read_dir(outbox.dir().join(".staging")).expect("staging").count(), 0);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&first).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
