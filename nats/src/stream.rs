//! The `GPS_EVENTS` stream (the log) and the `GPS_SNAPSHOTS` stream (a cache of
//! aggregate states): their expected configuration, idempotent provisioning, and
//! a report of any drift between what is deployed and what GPS expects.

use std::time::Duration;

use async_nats::jetstream::{self, stream};

use crate::ProvisionError;
use crate::subjects::EVENT_SUBJECT_PREFIX;

/// The name of the event log stream in every deployment.
pub const STREAM_NAME: &str = "GPS_EVENTS";

/// The name of the snapshot stream: one message per aggregate subject (the
/// latest), deletable, because a snapshot is only a cache of replayed state.
pub const SNAPSHOT_STREAM_NAME: &str = "GPS_SNAPSHOTS";

/// The prefix of snapshot subjects: `gps.snap.<brand>.<aggregate>.<id>`.
pub const SNAPSHOT_SUBJECT_PREFIX: &str = "gps.snap";

/// The settings of the event log stream that deployments choose.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamSettings {
    /// Stream name; `GPS_EVENTS` in every deployment.
    pub name: String,
    /// How long JetStream remembers message ids for deduplication.
    pub duplicate_window: Duration,
    /// 1 on a single node, 3 in a cluster.
    pub replicas: usize,
}

impl Default for StreamSettings {
    fn default() -> Self {
        StreamSettings {
            name: "GPS_EVENTS".into(),
            duplicate_window: Duration::from_secs(10 * 60),
            replicas: 1,
        }
    }
}

impl StreamSettings {
    /// The full stream configuration GPS expects.
    pub fn config(&self) -> stream::Config {
        stream::Config {
            name: self.name.clone(),
            description: Some("GPS event log: the source of truth. Never delete or purge.".into()),
            subjects: vec![format!("{EVENT_SUBJECT_PREFIX}.>")],
            storage: stream::StorageType::File,
            retention: stream::RetentionPolicy::Limits,
            num_replicas: self.replicas,
            duplicate_window: self.duplicate_window,
            deny_delete: true,
            deny_purge: true,
            allow_direct: true,
            allow_atomic_publish: true,
            max_messages_per_subject: -1,
            max_messages: -1,
            max_bytes: -1,
            max_age: Duration::ZERO,
            ..Default::default()
        }
    }
}

impl StreamSettings {
    /// The snapshot stream's configuration.
    pub fn snapshot_config(&self) -> stream::Config {
        stream::Config {
            name: SNAPSHOT_STREAM_NAME.into(),
            description: Some(
                "GPS aggregate snapshots: a cache rebuilt from GPS_EVENTS; safe to purge.".into(),
            ),
            subjects: vec![format!("{SNAPSHOT_SUBJECT_PREFIX}.>")],
            storage: stream::StorageType::File,
            retention: stream::RetentionPolicy::Limits,
            num_replicas: self.replicas,
            max_messages_per_subject: 1,
            discard: stream::DiscardPolicy::Old,
            // The server's own default, written out so drift checks compare like with like.
            duplicate_window: Duration::from_secs(120),
            allow_direct: true,
            max_messages: -1,
            max_bytes: -1,
            max_age: Duration::ZERO,
            ..Default::default()
        }
    }
}

/// One setting that differs between the deployed stream and the expected one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drift {
    /// The stream.
    pub stream: String,
    /// The setting.
    pub field: &'static str,
    /// What GPS expects.
    pub expected: String,
    /// What is deployed.
    pub actual: String,
}

/// What provisioning found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvisionReport {
    /// The stream did not exist and was created.
    pub created: bool,
    /// Settings that differ from the expected configuration (empty when in line).
    pub drift: Vec<Drift>,
}

fn compare(expected: &stream::Config, actual: &stream::Config) -> Vec<Drift> {
    let mut drift = Vec::new();
    let stream = actual.name.clone();
    let mut check = |field: &'static str, expected: String, actual: String| {
        if expected != actual {
            drift.push(Drift { stream: stream.clone(), field, expected, actual });
        }
    };
    check(
        "max_messages_per_subject",
        expected.max_messages_per_subject.to_string(),
        actual.max_messages_per_subject.to_string(),
    );
    check("subjects", format!("{:?}", expected.subjects), format!("{:?}", actual.subjects));
    check("storage", format!("{:?}", expected.storage), format!("{:?}", actual.storage));
    check("retention", format!("{:?}", expected.retention), format!("{:?}", actual.retention));
    check("num_replicas", expected.num_replicas.to_string(), actual.num_replicas.to_string());
    check(
        "duplicate_window",
        format!("{:?}", expected.duplicate_window),
        format!("{:?}", actual.duplicate_window),
    );
    check("deny_delete", expected.deny_delete.to_string(), actual.deny_delete.to_string());
    check("deny_purge", expected.deny_purge.to_string(), actual.deny_purge.to_string());
    check("allow_direct", expected.allow_direct.to_string(), actual.allow_direct.to_string());
    check("allow_atomic", expected.allow_atomic_publish.to_string(), actual.allow_atomic_publish.to_string());
    check("max_age", format!("{:?}", expected.max_age), format!("{:?}", actual.max_age));
    check("max_messages", expected.max_messages.to_string(), actual.max_messages.to_string());
    check("max_bytes", expected.max_bytes.to_string(), actual.max_bytes.to_string());
    drift
}

/// Creates the event and snapshot streams if they are missing; otherwise
/// compares them with the expected configuration and reports drift. Changing a
/// deployed stream is an operator's decision, so nothing existing is modified.
pub async fn provision(
    context: &jetstream::Context,
    settings: &StreamSettings,
) -> Result<ProvisionReport, ProvisionError> {
    let events = provision_stream(context, settings.config()).await?;
    let snapshots = provision_stream(context, settings.snapshot_config()).await?;
    Ok(ProvisionReport {
        created: events.created,
        drift: events.drift.into_iter().chain(snapshots.drift).collect(),
    })
}

async fn provision_stream(
    context: &jetstream::Context,
    expected: stream::Config,
) -> Result<ProvisionReport, ProvisionError> {
    let name = expected.name.clone();
    let api = |message: String| ProvisionError::Api { stream: name.clone(), message };
    match context.get_stream(&name).await {
        Ok(mut existing) => {
            let info = existing.info().await.map_err(|e| api(e.to_string()))?;
            Ok(ProvisionReport { created: false, drift: compare(&expected, &info.config) })
        }
        Err(error) => {
            let not_found = matches!(
                error.kind(),
                jetstream::context::GetStreamErrorKind::JetStream(ref e)
                    if e.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
            );
            if !not_found {
                return Err(api(error.to_string()));
            }
            match context.create_stream(expected.clone()).await {
                Ok(_) => Ok(ProvisionReport { created: true, drift: Vec::new() }),
                // Another process created it between our look-up and our create.
                Err(create_error) => match context.get_stream(&name).await {
                    Ok(mut existing) => {
                        let info = existing.info().await.map_err(|e| api(e.to_string()))?;
                        Ok(ProvisionReport { created: false, drift: compare(&expected, &info.config) })
                    }
                    Err(_) => Err(api(create_error.to_string())),
                },
            }
        }
    }
}

/// Updates the settings of an existing stream that JetStream allows to change
/// (duplicate window, replicas, deny flags, direct and atomic publish), for an
/// operator who has read the drift report.
pub async fn repair(
    context: &jetstream::Context,
    settings: &StreamSettings,
) -> Result<ProvisionReport, ProvisionError> {
    context
        .update_stream(settings.config())
        .await
        .map_err(|e| ProvisionError::Api { stream: settings.name.clone(), message: e.to_string() })?;
    provision(context, settings).await
}
