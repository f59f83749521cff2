//! The server configuration shipped in `nats/config/`, run by real nats-server
//! processes: a single node and a 3-node cluster start from temporary copies
//! of the files (only ports and storage paths rewritten, passwords and the
//! TLS certificate of a throwaway CA made at run time from the environment),
//! the event log works through them, the cluster keeps taking writes when a
//! node is killed, clients are TLS or refused, and the per-role permissions
//! hold: a downstream reader of one brand reads that brand only, readers
//! cannot write.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use bytes::Bytes;
use futures::StreamExt;
use gps_domain::AggregateKind;
use gps_domain::ids::BrandId;
use gps_domain::wire::Actor;
use gps_nats::server::locate_binary;
use gps_nats::{
    AggregateAddress, AppendError, AppendRequest, Appended, CommandMeta, EventLog, ExpectedPosition,
    NewEvent, StreamSettings,
};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use crate::harness::free_port;

const CONFIG_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/nats/config");
/// Every user of `accounts.conf`.
const ROLES: [&str; 7] = ["admin", "gateway", "agent", "projector", "auditor", "downstream-acme", "sys"];
/// The downstream reader's private reply prefix (accounts.conf).
const ACME_INBOX: &str = "_INBOX_downstream-acme";
/// The consumer name reserved for the downstream reader (accounts.conf).
const ACME_CONSUMER: &str = "downstream-acme";
/// Upper bound of every wait for a server or cluster to reach a state.
const SETTLE: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------
// The tests.

#[tokio::test]
async fn the_single_node_config_starts_and_the_gateway_provisions_the_log_and_appends() {
    let passwords = Passwords::generate();
    let root = TempRoot::new();
    let node = single_node(&root, &passwords).await;

    let (gateway, mut violations) = connect_as(&[node.url()], &passwords, "gateway").await;
    let log = EventLog::new(gateway, StreamSettings::default());
    let report = log.provision().await.expect("the gateway provisions GPS_EVENTS");
    assert!(report.created, "{report:?}");

    let product = address(acme(), "p1");
    let first = append(&log, &product, ExpectedPosition::new_aggregate(), "c1", 1).await.expect("append");
    append(&log, &product, first.position(), "c2", 2).await.expect("append a batch");
    let loaded = log.load(&product).await.expect("load");
    assert_eq!(loaded.events.len(), 3);
    assert_eq!(consume_all(&log, "gateway-live").await, 3, "a writer runs durable consumers");
    // A writer creates the SKU claims bucket, claims, reads and backfills.
    let claims = gps_commands::sku_claims::SkuClaims::open(gps_commands::CommandHandler::new(log.clone()))
        .await
        .expect("the gateway opens the SKU claims");
    let sku = gps_domain::values::Sku::parse("DR-1").expect("sku");
    let p1 = gps_domain::ids::ProductId::parse("p1").expect("id");
    claims.claim(&acme(), &sku, &p1).await.expect("claimed");
    assert_eq!(claims.holder(&acme(), &sku).await.expect("read"), Some(p1));
    claims.backfill(&log).await.expect("backfilled");
    // The gateway's access cache, run as this user, receives the brand events
    // and sign-out notices that invalidate it.
    let cache = gps_gateway::access::AccessCache::watch(&log).await.expect("the cache subscribes");
    let brand = AggregateAddress::new(acme(), AggregateKind::Brand, "acme").expect("address");
    append(&log, &brand, ExpectedPosition::new_aggregate(), "b1", 1).await.expect("a brand event");
    cache.signed_out(&log, "a-session-hash").await;
    eventually("the cache hears both", || async {
        match cache.notices_received() {
            2.. => Ok(()),
            n => Err(format!("{n} notices")),
        }
    })
    .await;

    // The server runs what the file says: fsync on every write, the pinned limits.
    let mut stream = log.jetstream().get_stream("GPS_EVENTS").await.expect("stream");
    assert_eq!(stream.info().await.expect("info").config.num_replicas, 1);
    let (sys, _) = connect_as(&[node.url()], &passwords, "sys").await;
    let jsz = request_json(&sys, "$SYS.REQ.SERVER.PING.JSZ", "{}").await;
    assert_eq!(jsz["data"]["config"]["sync_always"], serde_json::json!(true), "{jsz}");
    assert_eq!(jsz["data"]["config"]["max_storage"], serde_json::json!(100u64 << 30), "{jsz}");
    assert_eq!(jsz["server"]["name"], serde_json::json!("gps-nats-1"), "{jsz}");
    assert_eq!(log.client().server_info().max_payload, 1 << 20);
    violations.assert_none().await;

    // The admin repairs the stream's settings, and cannot delete or purge it.
    let (admin, mut admin_violations) = connect_as(&[node.url()], &passwords, "admin").await;
    // (Drift is the event log's business, tested in event_log.rs; here only
    // whether the admin may make the calls.)
    gps_nats::stream::repair(&jetstream::new(admin.clone()), &StreamSettings::default())
        .await
        .expect("the admin updates the stream");
    admin_violations.assert_none().await;
    for destructive in ["$JS.API.STREAM.DELETE.GPS_EVENTS", "$JS.API.STREAM.PURGE.GPS_EVENTS"] {
        refused(&admin, &mut admin_violations, destructive, "{}").await;
    }
    assert_eq!(log.load(&product).await.expect("load").events.len(), 3);

    // A wrong password is refused.
    let mut wrong = passwords.clone();
    wrong.by_role.insert("gateway", "not-the-password".into());
    assert!(try_connect_as(&[node.url()], &wrong, "gateway").await.is_err());
}

#[tokio::test]
async fn clients_of_the_shipped_config_speak_tls_to_a_server_their_ca_vouches_for_or_are_refused() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let passwords = Passwords::generate();
    let root = TempRoot::new();
    let node = single_node(&root, &passwords).await;

    // A role with the CA setting connects (tls:// or nats://: TLS either way) and works.
    let settings = passwords.connect_settings("gateway");
    let client = gps_nats::connect_as(&node.url(), "tls-role", &settings).await.expect("a TLS role connects");
    assert!(client.server_info().tls_required, "{:?}", client.server_info());
    let log = EventLog::new(client, StreamSettings::default());
    log.provision().await.expect("provisioned over TLS");
    let plain_scheme = format!("nats://127.0.0.1:{}", node.port);
    gps_nats::connect_as(&plain_scheme, "tls-role", &settings).await.expect("the CA setting makes it TLS");

    // Without the CA, or trusting another one, the server's certificate is not believed.
    let untrusting = gps_nats::ConnectSettings { ca_file: None, ..settings.clone() };
    let error = gps_nats::connect_as(&node.url(), "no-ca", &untrusting).await.expect_err("unknown issuer");
    assert!(!error.is_refused_login(), "refused for the certificate, not the login: {error}");
    let other = TestTls::generate();
    let misled = gps_nats::ConnectSettings { ca_file: Some(other.ca_file()), ..settings.clone() };
    assert!(gps_nats::connect_as(&node.url(), "other-ca", &misled).await.is_err(), "another CA's trust");

    // A client that does not start TLS gets nothing: the server announces
    // that TLS is required and drops a plain CONNECT without answering it.
    let mut plain = tokio::net::TcpStream::connect(("127.0.0.1", node.port)).await.expect("tcp");
    let mut info = vec![0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(5), plain.read(&mut info))
        .await
        .expect("INFO")
        .expect("read");
    let info = String::from_utf8_lossy(&info[..read]).to_string();
    assert!(info.starts_with("INFO ") && info.contains("\"tls_required\":true"), "{info}");
    let connect = format!(
        "CONNECT {{\"user\":\"gateway\",\"pass\":\"{}\",\"verbose\":false,\"pedantic\":false}}\r\nPING\r\n",
        passwords.by_role["gateway"]
    );
    plain.write_all(connect.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(!answer.contains("PONG") && !answer.contains("+OK"), "a plain client was served: {answer}");
}

#[tokio::test]
async fn gps_up_logs_in_with_the_user_and_password_from_its_environment() {
    use crate::gps_up::{gps, temp_dir, terminate, wait_healthy};
    let passwords = Passwords::generate();
    let root = TempRoot::new();
    let node = single_node(&root, &passwords).await;
    let data_dir = temp_dir();
    let db = crate::harness::TestDb::create().await;

    let http_port = free_port();
    let mut child = gps(&data_dir, http_port)
        .env("DATABASE_URL", db.url())
        .env("NATS_URL", node.url())
        .env("NATS_USER", "gateway")
        .env("NATS_PASSWORD", &passwords.by_role["gateway"])
        .env("GPS_NATS_CA_FILE", passwords.tls.ca_file())
        .spawn()
        .expect("spawn gps");
    assert_eq!(wait_healthy(&mut child, http_port).await["status"], "ok");
    assert!(terminate(&mut child).await.success());

    let output = gps(&data_dir, free_port())
        .env("DATABASE_URL", db.url())
        .env("NATS_URL", node.url())
        .env("NATS_USER", "gateway")
        .env("NATS_PASSWORD", "tnot-the-password")
        .env("GPS_NATS_CA_FILE", passwords.tls.ca_file())
        .spawn()
        .expect("spawn gps")
        .wait_with_output();
    let output = tokio::time::timeout(SETTLE, output).await.expect("gps exits").expect("output");
    assert!(!output.status.success(), "a wrong password must stop gps up");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot connect to NATS"), "{stderr}");
    assert!(!stderr.contains("tnot-the-password"), "the password must not be printed: {stderr}");
}

#[tokio::test]
async fn the_cluster_config_forms_three_nodes_and_keeps_its_log_when_the_stream_leader_is_killed() {
    let passwords = Passwords::generate();
    let root = TempRoot::new();
    let mut nodes = cluster(&root, &passwords).await;
    let urls: Vec<String> = nodes.iter().map(Node::url).collect();

    // The meta leader answers account info once the three nodes elected it.
    let (admin, _) = connect_as(&urls, &passwords, "admin").await;
    let admin_js = jetstream::ContextBuilder::new().timeout(Duration::from_secs(2)).build(admin);
    eventually("a JetStream meta leader", || async { admin_js.query_account().await.map(|_| ()) }).await;

    let (gateway, mut violations) = connect_as(&urls, &passwords, "gateway").await;
    let log = EventLog::new(gateway, StreamSettings { replicas: 3, ..Default::default() });
    eventually("the R3 stream provisions", || async { log.provision().await.map(|_| ()) }).await;
    let info = stream_info(&log).await.expect("stream info");
    assert_eq!(info.config.num_replicas, 3);

    let product = address(acme(), "p1");
    let mut position = ExpectedPosition::new_aggregate();
    for (n, command) in ["c1", "c2"].into_iter().enumerate() {
        position = append_retrying(&log, &product, position, command, n as u64 + 1).await.position();
    }

    // Kill the node that leads the stream, the worst single loss: a new
    // leader must be elected before the next write is acknowledged.
    let leader = eventually("a stream leader", || async {
        let info = stream_info(&log).await?;
        info.cluster.as_ref().and_then(|c| c.leader.clone()).ok_or_else(|| "no leader yet".to_owned())
    })
    .await;
    let killed = nodes.iter().position(|node| node.name == leader).expect("the leader is one of ours");
    nodes[killed].kill().await;

    // A role given the whole list (NATS_URL, comma-separated) starts while
    // one node is down, whichever node it would try first.
    let mut listed: Vec<String> = urls.clone();
    listed.rotate_left(killed);
    let late = gps_nats::connect_as(&listed.join(","), "late-role", &passwords.connect_settings("gateway"))
        .await
        .unwrap_or_else(|e| {
            panic!("connecting through the list {listed:?} with {} down: {e}", nodes[killed].name)
        });
    assert_ne!(late.server_info().port, nodes[killed].port, "connected to the node that is down");

    position = append_retrying(&log, &product, position, "c3", 3).await.position();
    assert_eq!(position.aggregate_version, 3);
    // Direct gets are answered by any replica, which may trail the leader for
    // a moment; a trailing read costs a conflict, never a lost event.
    eventually("a load of all events with one node down", || async { load_count(&log, &product, 3).await })
        .await;

    // The killed process comes back on its old store and catches up.
    nodes[killed].restart().await;
    eventually("the restarted node is a current replica again", || async {
        let info = stream_info(&log).await?;
        let cluster = info.cluster.ok_or("no cluster info")?;
        let peers = cluster.replicas.iter().filter(|peer| peer.current && !peer.offline).count();
        if cluster.leader.is_some() && peers == 2 { Ok(()) } else { Err(format!("{cluster:?}")) }
    })
    .await;
    append_retrying(&log, &product, position, "c4", 4).await;
    eventually("a load of all events after the restart", || async { load_count(&log, &product, 4).await })
        .await;
    violations.assert_none().await;
}

#[tokio::test]
async fn a_downstream_reader_of_acme_reads_acme_events_and_nothing_of_other_brands() {
    let passwords = Passwords::generate();
    let root = TempRoot::new();
    let node = single_node(&root, &passwords).await;
    let url = [node.url()];
    let log = provisioned_log(&url, &passwords).await;
    let acme_product = address(acme(), "p1");
    let other_product = address(BrandId::parse("other").expect("valid brand"), "p1");
    let first =
        append(&log, &acme_product, ExpectedPosition::new_aggregate(), "a1", 1).await.expect("append");
    append(&log, &acme_product, first.position(), "a2", 2).await.expect("append");
    let other =
        append(&log, &other_product, ExpectedPosition::new_aggregate(), "o1", 1).await.expect("append");
    let other_sequence = other.last_sequence();

    let (client, mut violations) = connect_as(&url, &passwords, "downstream-acme").await;
    let js = jetstream::ContextBuilder::new().timeout(Duration::from_secs(1)).build(client.clone());

    // Allowed: its own durable consumer on acme's subjects, pulled and acked.
    let reader = js
        .create_consumer_on_stream(acme_consumer_config("gps.evt.acme.>"), "GPS_EVENTS")
        .await
        .expect("the acme consumer is created");
    let mut batch = reader.fetch().max_messages(10).messages().await.expect("fetch");
    let mut subjects = Vec::new();
    while let Some(message) = tokio::time::timeout(Duration::from_secs(5), batch.next()).await.expect("fetch")
    {
        let message = message.expect("message");
        subjects.push(message.subject.to_string());
        message.ack().await.expect("ack");
    }
    assert_eq!(subjects, vec![acme_product.subject(); 3], "only acme's events arrive");
    eventually("the acks are recorded", || async {
        let mut consumer: consumer::PullConsumer =
            js.get_consumer_from_stream(ACME_CONSUMER, "GPS_EVENTS").await.map_err(|e| e.to_string())?;
        let info = consumer.info().await.map_err(|e| e.to_string())?;
        if info.num_pending == 0 && info.num_ack_pending == 0 { Ok(()) } else { Err(format!("{info:?}")) }
    })
    .await;
    // Allowed: the last event of one of acme's subjects.
    let stream = js.get_stream_no_info("GPS_EVENTS").await.expect("stream handle");
    let last = stream.direct_get_last_for_subject(acme_product.subject()).await.expect("direct get of acme");
    assert_eq!(last.subject.as_str(), acme_product.subject());
    violations.assert_none().await;

    // Refused by permission: consumers over other brands or over every brand.
    for filter in ["gps.evt.other.>", "gps.evt.>", "gps.evt.*.>", ">"] {
        let created = js.create_consumer_on_stream(acme_consumer_config(filter), "GPS_EVENTS").await;
        assert!(created.is_err(), "a consumer on {filter} must be refused");
        violations.expect(&format!("$JS.API.CONSUMER.CREATE.GPS_EVENTS.{ACME_CONSUMER}.{filter}")).await;
    }
    // ... and a direct get of another brand's subject, or by sequence.
    assert!(stream.direct_get_last_for_subject(other_product.subject()).await.is_err());
    violations.expect(&format!("$JS.API.DIRECT.GET.GPS_EVENTS.{}", other_product.subject())).await;
    assert!(stream.direct_get(other_sequence).await.is_err());
    violations.expect("$JS.API.DIRECT.GET.GPS_EVENTS").await;

    // The other ways around, tried on the wire.
    let any_filter = serde_json::json!({ "stream_name": "GPS_EVENTS", "config": {
        "durable_name": ACME_CONSUMER, "ack_policy": "explicit", "filter_subject": "gps.evt.acme.>" } })
    .to_string();
    for subject in [
        // No filter in the subject (ephemeral, or named without filter).
        "$JS.API.CONSUMER.CREATE.GPS_EVENTS".to_owned(),
        format!("$JS.API.CONSUMER.CREATE.GPS_EVENTS.{ACME_CONSUMER}"),
        format!("$JS.API.CONSUMER.DURABLE.CREATE.GPS_EVENTS.{ACME_CONSUMER}"),
        // Another consumer name, even on acme's subjects.
        "$JS.API.CONSUMER.CREATE.GPS_EVENTS.someone-else.gps.evt.acme.>".to_owned(),
        // Pulling from, looking at, deleting, pausing or acknowledging for
        // another role's consumer (the last two would make a projection
        // skip events it never applied).
        "$JS.API.CONSUMER.MSG.NEXT.GPS_EVENTS.projector-all".to_owned(),
        "$JS.API.CONSUMER.INFO.GPS_EVENTS.projector-all".to_owned(),
        "$JS.API.CONSUMER.DELETE.GPS_EVENTS.projector-all".to_owned(),
        "$JS.API.CONSUMER.PAUSE.GPS_EVENTS.projector-all".to_owned(),
        "$JS.ACK.GPS_EVENTS.projector-all.1.3.1.1700000000000000000.0".to_owned(),
        // Listing consumers names other roles' consumers and their filters.
        "$JS.API.CONSUMER.LIST.GPS_EVENTS".to_owned(),
        "$JS.API.CONSUMER.NAMES.GPS_EVENTS".to_owned(),
        // Message get, and stream info (whose subjects_filter lists other brands' subjects).
        "$JS.API.STREAM.MSG.GET.GPS_EVENTS".to_owned(),
        "$JS.API.STREAM.INFO.GPS_EVENTS".to_owned(),
        // Snapshots: an internal cache holding every brand's state.
        "$JS.API.DIRECT.GET.GPS_SNAPSHOTS.gps.snap.acme.product.p1".to_owned(),
        "$JS.API.DIRECT.GET.GPS_SNAPSHOTS.gps.snap.other.product.p1".to_owned(),
        // Writing.
        other_product.subject(),
        acme_product.subject(),
        "gps.snap.acme.product.p1".to_owned(),
    ] {
        refused(&client, &mut violations, &subject, &any_filter).await;
    }
    // Live traffic of every brand, and everyone else's replies.
    for subject in ["gps.evt.>", "_INBOX.>"] {
        let _subscription = client.subscribe(subject).await.expect("subscribe is sent");
        client.flush().await.expect("flush");
        violations.expect(subject).await;
    }

    // Allowed subject, other filter in the body: the server checks that the
    // request matches its subject, so the permission bounds the consumer.
    js.delete_consumer_from_stream(ACME_CONSUMER, "GPS_EVENTS").await.expect("delete own consumer");
    let create = format!("$JS.API.CONSUMER.CREATE.GPS_EVENTS.{ACME_CONSUMER}.gps.evt.acme.>");
    for config in [
        serde_json::json!({ "durable_name": ACME_CONSUMER, "filter_subject": "gps.evt.>" }),
        serde_json::json!({ "durable_name": ACME_CONSUMER, "filter_subjects": ["gps.evt.>"] }),
        serde_json::json!({ "durable_name": ACME_CONSUMER, "filter_subjects": ["gps.evt.acme.>", "gps.evt.other.>"] }),
        serde_json::json!({ "durable_name": ACME_CONSUMER }),
    ] {
        let body = serde_json::json!({ "stream_name": "GPS_EVENTS", "config": config, "action": "create" });
        let reply = request_json(&client, &create, &body.to_string()).await;
        assert!(reply["error"].is_object(), "a create with body {config} must fail: {reply}");
    }
    assert!(
        js.get_consumer_from_stream::<consumer::pull::Config, _, _>(ACME_CONSUMER, "GPS_EVENTS")
            .await
            .is_err()
    );

    // Allowed subject (the last event of an acme subject) with a body asking
    // for another message instead: the server refuses the body outright.
    let direct = format!("$JS.API.DIRECT.GET.GPS_EVENTS.{}", acme_product.subject());
    for body in [
        serde_json::json!({ "seq": other_sequence }),
        serde_json::json!({ "next_by_subj": other_product.subject(), "seq": 1 }),
        serde_json::json!({ "last_by_subj": other_product.subject() }),
        serde_json::json!({ "multi_last": ["gps.evt.>"], "batch": 10 }),
    ] {
        let (subjects, status) = direct_get_replies(&client, &direct, &body.to_string()).await;
        assert!(subjects.is_empty() && status.is_some(), "body {body}: {subjects:?} {status:?}");
    }
    violations.assert_none().await;
}

#[tokio::test]
async fn projectors_and_auditors_read_the_log_but_cannot_write_to_it() {
    let passwords = Passwords::generate();
    let root = TempRoot::new();
    let node = single_node(&root, &passwords).await;
    let url = [node.url()];
    let log = provisioned_log(&url, &passwords).await;
    let product = address(acme(), "p1");
    let appended = append(&log, &product, ExpectedPosition::new_aggregate(), "c1", 1).await.expect("append");

    for role in ["projector", "auditor"] {
        let (client, mut violations) = connect_as(&url, &passwords, role).await;
        let reader = EventLog::new(client.clone(), StreamSettings::default());
        let report = reader.provision().await.expect("a reader checks the streams");
        assert!(!report.created, "{role}: {report:?}");
        assert_eq!(reader.load(&product).await.expect("load").events.len(), 1, "{role} loads");
        let chains = reader.verify_chains(None).await.expect("verify");
        assert!(chains.first_break.is_none() && chains.events_checked == 1, "{role}: {chains:?}");
        if role == "projector" {
            assert_eq!(consume_all(&reader, "projector-all").await, 1, "a projector runs durable consumers");
        }
        violations.assert_none().await;

        // Through the event log, and on the wire.
        let write = append(&reader, &product, appended.position(), &format!("{role}-write"), 1).await;
        assert!(matches!(write, Err(AppendError::Unavailable { .. })), "{role}: {write:?}");
        violations.expect(&product.subject()).await;
        refused(&client, &mut violations, "gps.evt.other.product.p9", "{}").await;
        refused(&client, &mut violations, "gps.snap.acme.product.p1", "{}").await;
        for admin_only in [
            "$JS.API.STREAM.UPDATE.GPS_EVENTS",
            "$JS.API.STREAM.DELETE.GPS_EVENTS",
            "$JS.API.STREAM.PURGE.GPS_EVENTS",
            "$JS.API.STREAM.CREATE.OTHER",
        ] {
            refused(&client, &mut violations, admin_only, "{}").await;
        }
    }
    let stored = log.load(&product).await.expect("load");
    assert_eq!(stored.events.len(), 1, "nothing was written by a reader");
}

#[tokio::test]
async fn the_configs_hold_no_secrets_and_a_server_without_its_passwords_does_not_start() {
    let mut files = Vec::new();
    collect_files(Path::new(CONFIG_DIR), &mut files);
    let mut passwords_seen = 0;
    for file in files.iter().filter(|f| f.extension().is_some_and(|e| e == "conf")) {
        let text = std::fs::read_to_string(file).expect("read config");
        for line in text.lines().map(str::trim).filter(|l| !l.starts_with('#')) {
            if let Some(at) = line.find("password:") {
                passwords_seen += 1;
                let value = line[at + "password:".len()..].trim_start();
                assert!(
                    value.starts_with("$GPS_NATS_"),
                    "{}: a literal password in {line:?}",
                    file.display()
                );
            }
        }
    }
    assert_eq!(passwords_seen, ROLES.len() + 1, "every role's and the route's password is a variable");

    let passwords = Passwords::generate();
    let root = TempRoot::new();
    let copy = root.config_copy("single");
    let mut env = passwords.env();
    env.retain(|(name, _)| name != "GPS_NATS_PROJECTOR_PASSWORD");
    let output = tokio::time::timeout(
        SETTLE,
        Command::new(binary())
            .arg("-c")
            .arg(copy.join("single-node.conf"))
            .arg("-t")
            .env_remove("GPS_NATS_PROJECTOR_PASSWORD")
            .envs(env)
            .output(),
    )
    .await
    .expect("the config check ends")
    .expect("run nats-server -t");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "the server must refuse a missing password");
    assert!(stderr.contains("GPS_NATS_PROJECTOR_PASSWORD"), "the error names the variable: {stderr}");
}

// ---------------------------------------------------------------------------
// Event log helpers.

fn acme() -> BrandId {
    BrandId::parse("acme").expect("valid brand")
}

fn address(brand: BrandId, id: &str) -> AggregateAddress {
    AggregateAddress::new(brand, AggregateKind::Product, id).expect("valid address")
}

async fn append(
    log: &EventLog,
    address: &AggregateAddress,
    expected: ExpectedPosition,
    command_id: &str,
    events: u64,
) -> Result<Appended, AppendError> {
    let events = (1..=events)
        .map(|n| NewEvent {
            event_type: "product.details_updated".into(),
            schema_version: 1,
            payload: serde_json::json!({ "attributes": { "n": n.to_string() } }),
        })
        .collect();
    log.append(AppendRequest {
        address: address.clone(),
        expected,
        command: CommandMeta::new(command_id, Actor::System("test".into())),
        events,
    })
    .await
}

/// Appends one event, retrying the same command while the cluster is without
/// a leader; a retry whose first attempt landed reports it as already appended.
async fn append_retrying(
    log: &EventLog,
    address: &AggregateAddress,
    expected: ExpectedPosition,
    command_id: &str,
    version: u64,
) -> Appended {
    let appended = eventually(&format!("append {command_id}"), || async {
        match append(log, address, expected.clone(), command_id, 1).await {
            Err(AppendError::Unavailable { message, .. }) => Err(message),
            other => Ok(other),
        }
    })
    .await
    .unwrap_or_else(|e| panic!("append {command_id}: {e}"));
    assert_eq!(appended.position().aggregate_version, version);
    appended
}

async fn load_count(log: &EventLog, address: &AggregateAddress, expected: usize) -> Result<(), String> {
    let loaded = log.load(address).await.map_err(|e| e.to_string())?;
    let versions: Vec<u64> = loaded.events.iter().map(|e| e.aggregate_version).collect();
    let wanted: Vec<u64> = (1..=expected as u64).collect();
    if versions == wanted { Ok(()) } else { Err(format!("loaded versions {versions:?}")) }
}

async fn stream_info(log: &EventLog) -> Result<jetstream::stream::Info, String> {
    let stream = log.jetstream().get_stream("GPS_EVENTS").await.map_err(|e| e.to_string())?;
    Ok(stream.cached_info().clone())
}

async fn provisioned_log(urls: &[String], passwords: &Passwords) -> EventLog {
    let (gateway, _) = connect_as(urls, passwords, "gateway").await;
    let log = EventLog::new(gateway, StreamSettings::default());
    log.provision().await.expect("provision");
    log
}

/// Reads every event through a durable consumer (created as the projections
/// do, through [`EventLog::durable_consumer`]) and acks each.
async fn consume_all(log: &EventLog, name: &str) -> usize {
    let consumer = log.durable_consumer(name, Vec::new(), 0).await.expect("durable consumer");
    let mut batch = consumer.fetch().max_messages(100).messages().await.expect("fetch");
    let mut count = 0;
    while let Some(message) = tokio::time::timeout(Duration::from_secs(5), batch.next()).await.expect("fetch")
    {
        message.expect("message").double_ack().await.expect("the ack is confirmed");
        count += 1;
    }
    count
}

fn acme_consumer_config(filter: &str) -> consumer::pull::Config {
    consumer::pull::Config {
        durable_name: Some(ACME_CONSUMER.into()),
        filter_subject: filter.into(),
        ack_policy: consumer::AckPolicy::Explicit,
        ..Default::default()
    }
}

// ---------------------------------------------------------------------------
// Clients and permission violations.

/// One random password per role, the route password, and the servers' TLS
/// certificate.
#[derive(Clone)]
struct Passwords {
    by_role: BTreeMap<&'static str, String>,
    route: String,
    tls: std::sync::Arc<TestTls>,
}

impl Passwords {
    fn generate() -> Self {
        // Starts with a letter so the server reads it as a string (accounts.conf).
        let random = || format!("t{}", uuid::Uuid::new_v4().simple());
        Passwords {
            by_role: ROLES.iter().map(|role| (*role, random())).collect(),
            route: random(),
            tls: std::sync::Arc::new(TestTls::generate()),
        }
    }

    /// How a GPS role connects as `role`: its login and the servers' CA.
    fn connect_settings(&self, role: &str) -> gps_nats::ConnectSettings {
        gps_nats::ConnectSettings {
            credentials: Some(gps_nats::Credentials {
                user: role.into(),
                password: gps_nats::Password::new(self.by_role[role].clone()),
            }),
            ca_file: Some(self.tls.ca_file()),
        }
    }

    fn variable(role: &str) -> String {
        format!("GPS_NATS_{}_PASSWORD", role.to_uppercase().replace('-', "_"))
    }

    fn env(&self) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> =
            self.by_role.iter().map(|(role, password)| (Self::variable(role), password.clone())).collect();
        env.push(("GPS_NATS_ROUTE_PASSWORD".into(), self.route.clone()));
        env.extend(self.tls.env());
        env
    }
}

/// A throwaway CA and, signed by it, a server certificate for 127.0.0.1 and
/// localhost, made at run time (no key is checked in); removed on drop.
struct TestTls {
    dir: tempfile::TempDir,
}

impl TestTls {
    fn generate() -> Self {
        Self::generate_for(&["127.0.0.1", "localhost"])
    }

    fn generate_for(names: &[&str]) -> Self {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.distinguished_name.push(DnType::CommonName, "GPS test NATS CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        let ca = CertifiedIssuer::self_signed(ca, ca_key).expect("CA certificate");
        let key = KeyPair::generate().expect("server key");
        let names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
        let mut server = CertificateParams::new(names).expect("server params");
        server.distinguished_name.push(DnType::CommonName, "gps-nats-test");
        let certificate = server.signed_by(&key, &ca).expect("server certificate");
        let dir = tempfile::tempdir().expect("TLS dir");
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).expect("write CA");
        std::fs::write(dir.path().join("server.pem"), certificate.pem()).expect("write certificate");
        std::fs::write(dir.path().join("server-key.pem"), key.serialize_pem()).expect("write key");
        TestTls { dir }
    }

    fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The server's side: what the shipped `tls {}` blocks read.
    fn env(&self) -> Vec<(String, String)> {
        let path = |name: &str| self.dir.path().join(name).display().to_string();
        vec![
            ("GPS_NATS_TLS_CERT_FILE".into(), path("server.pem")),
            ("GPS_NATS_TLS_KEY_FILE".into(), path("server-key.pem")),
        ]
    }
}

/// Server errors the client was sent, where permission violations arrive.
struct Violations(mpsc::UnboundedReceiver<String>);

impl Violations {
    /// Waits for the violation naming `subject`; any other violation fails.
    async fn expect(&mut self, subject: &str) {
        let quoted = format!("\"{subject}\"");
        loop {
            let error = tokio::time::timeout(Duration::from_secs(5), self.0.recv())
                .await
                .unwrap_or_else(|_| panic!("no permissions violation for {subject}"))
                .expect("event channel open");
            if error.contains("Permissions Violation") {
                assert!(error.contains(&quoted), "expected a violation for {subject}, got {error}");
                return;
            }
        }
    }

    /// Fails on any violation received so far (after a round trip, so
    /// fire-and-forget publishes such as acks have been judged).
    async fn assert_none(&mut self) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        while let Ok(error) = self.0.try_recv() {
            assert!(!error.contains("Permissions Violation"), "unexpected: {error}");
        }
    }
}

async fn try_connect_as(
    urls: &[String],
    passwords: &Passwords,
    user: &str,
) -> Result<(async_nats::Client, Violations), String> {
    let (sender, receiver) = mpsc::unbounded_channel();
    let mut options =
        async_nats::ConnectOptions::with_user_and_password(user.into(), passwords.by_role[user].clone())
            .name(user)
            .connection_timeout(Duration::from_secs(5))
            .request_timeout(Some(Duration::from_secs(3)))
            .event_callback(move |event| {
                let sender = sender.clone();
                async move {
                    if let async_nats::Event::ServerError(error) = event {
                        let _ = sender.send(error.to_string());
                    }
                }
            });
    if user == "downstream-acme" {
        options = options.custom_inbox_prefix(ACME_INBOX);
    }
    options = options.add_root_certificates(passwords.tls.ca_file()).require_tls(true);
    let client = tokio::time::timeout(SETTLE, options.connect(urls.to_vec()))
        .await
        .map_err(|_| format!("connecting as {user} timed out"))?
        .map_err(|e| format!("connecting as {user}: {e}"))?;
    Ok((client, Violations(receiver)))
}

async fn connect_as(urls: &[String], passwords: &Passwords, user: &str) -> (async_nats::Client, Violations) {
    try_connect_as(urls, passwords, user).await.unwrap_or_else(|e| panic!("{e}"))
}

/// Publishes a request the user may not send: the server reports a violation
/// and nothing answers.
async fn refused(client: &async_nats::Client, violations: &mut Violations, subject: &str, body: &str) {
    let inbox = client.new_inbox();
    let mut replies = client.subscribe(inbox.clone()).await.expect("subscribe to own inbox");
    client
        .publish_with_reply(subject.to_owned(), inbox, Bytes::from(body.to_owned()))
        .await
        .expect("publish is sent");
    client.flush().await.expect("flush");
    violations.expect(subject).await;
    let answer = tokio::time::timeout(Duration::from_millis(200), replies.next()).await;
    assert!(answer.is_err(), "{subject} was answered: {answer:?}");
}

async fn request_json(client: &async_nats::Client, subject: &str, body: &str) -> serde_json::Value {
    let reply = tokio::time::timeout(
        Duration::from_secs(5),
        client.request(subject.to_owned(), Bytes::from(body.to_owned())),
    )
    .await
    .unwrap_or_else(|_| panic!("{subject} timed out"))
    .unwrap_or_else(|e| panic!("{subject}: {e}"));
    serde_json::from_slice(&reply.payload).unwrap_or_else(|e| panic!("{subject}: {e}"))
}

/// Sends a direct get; returns the subjects of the messages it answered with
/// and the error status that ended the answer, if any.
async fn direct_get_replies(
    client: &async_nats::Client,
    subject: &str,
    body: &str,
) -> (Vec<String>, Option<u16>) {
    let inbox = client.new_inbox();
    let mut replies = client.subscribe(inbox.clone()).await.expect("subscribe to own inbox");
    client
        .publish_with_reply(subject.to_owned(), inbox, Bytes::from(body.to_owned()))
        .await
        .expect("publish is sent");
    let mut subjects = Vec::new();
    while let Ok(Some(reply)) = tokio::time::timeout(Duration::from_secs(2), replies.next()).await {
        if let Some(status) = reply.status {
            return (subjects, Some(status.as_u16()));
        }
        let headers = reply.headers.unwrap_or_default();
        subjects.push(headers.get("Nats-Subject").map(|v| v.to_string()).unwrap_or_default());
    }
    (subjects, None)
}

/// Retries `attempt` until it succeeds, for at most [`SETTLE`].
async fn eventually<T, E, F, Fut>(what: &str, mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        let outcome = tokio::time::timeout_at(deadline, attempt()).await;
        match outcome {
            Ok(Ok(value)) => return value,
            Ok(Err(error)) if tokio::time::Instant::now() >= deadline => {
                panic!("{what}: not within {SETTLE:?}: {error}")
            }
            Err(_) => panic!("{what}: not within {SETTLE:?}"),
            Ok(Err(_)) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

// ---------------------------------------------------------------------------
// Servers.

fn binary() -> PathBuf {
    locate_binary().unwrap_or_else(|e| panic!("{e}"))
}

/// A temporary directory for one test's configs and stores, removed on drop
/// (after the nodes, which are declared later and so dropped first).
struct TempRoot(PathBuf);

impl TempRoot {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("gps-nats-config-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempRoot(dir)
    }

    /// Copies `nats/config/` to `<root>/<name>/config`.
    fn config_copy(&self, name: &str) -> PathBuf {
        let target = self.0.join(name).join("config");
        copy_dir(Path::new(CONFIG_DIR), &target);
        target
    }
}

impl Drop for TempRoot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create config copy");
    for entry in std::fs::read_dir(from).expect("read config dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            copy_dir(&path, &to.join(entry.file_name()));
        } else {
            std::fs::copy(&path, to.join(entry.file_name())).expect("copy config file");
        }
    }
}

fn collect_files(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read config dir").flatten() {
        let path = entry.path();
        if path.is_dir() { collect_files(&path, files) } else { files.push(path) }
    }
}

/// Replaces each `from` in a copied file, which must occur exactly once, so a
/// changed config fails here instead of running with production ports.
fn rewrite(file: &Path, replacements: &[(&str, String)]) {
    let mut text = std::fs::read_to_string(file).expect("read copied config");
    for (from, to) in replacements {
        assert_eq!(text.matches(from).count(), 1, "{from:?} once in {}", file.display());
        text = text.replace(from, to);
    }
    std::fs::write(file, text).expect("write copied config");
}

/// One nats-server process started from a config file; killed when dropped.
struct Node {
    name: String,
    config: PathBuf,
    log: PathBuf,
    env: Vec<(String, String)>,
    port: u16,
    child: Option<Child>,
}

impl Node {
    async fn start(name: &str, config: PathBuf, env: Vec<(String, String)>, port: u16) -> Self {
        let log = config.parent().expect("config dir").join(format!("{name}.log"));
        let mut node = Node { name: name.into(), config, log, env, port, child: None };
        node.spawn().await;
        node
    }

    fn url(&self) -> String {
        format!("tls://127.0.0.1:{}", self.port)
    }

    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("log file");
        let child = Command::new(binary())
            .arg("-c")
            .arg(&self.config)
            .envs(self.env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("spawn nats-server");
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + SETTLE;
        loop {
            let child = self.child.as_mut().expect("child");
            if let Some(status) = child.try_wait().expect("wait") {
                panic!("{} exited with {status}:\n{}", self.name, self.log_tail());
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_ok() {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} not listening:\n{}",
                self.name,
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL, as a crash or a power cut of the process would.
    async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    async fn restart(&mut self) {
        self.kill().await;
        self.spawn().await;
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
            for _ in 0..100 {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// `single-node.conf` on free ports with its store under `root`.
async fn single_node(root: &TempRoot, passwords: &Passwords) -> Node {
    let copy = root.config_copy("single");
    let port = free_port();
    let store = copy.parent().expect("node dir").join("store");
    let config = copy.join("single-node.conf");
    rewrite(
        &config,
        &[
            ("listen: 0.0.0.0:4222", format!("listen: 127.0.0.1:{port}")),
            ("http: 127.0.0.1:8222", format!("http: 127.0.0.1:{}", free_port())),
            ("\"/var/lib/gps/nats\"", format!("{:?}", store.display().to_string())),
        ],
    );
    Node::start("gps-nats-1", config, passwords.env(), port).await
}

/// The three cluster nodes on localhost, each from its own copy of the
/// configs (the shared cluster.conf names ports and the store).
async fn cluster(root: &TempRoot, passwords: &Passwords) -> Vec<Node> {
    let client_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let route_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let routes: Vec<String> = route_ports
        .iter()
        .map(|port| format!("nats-route://route:{}@127.0.0.1:{port}", passwords.route))
        .collect();
    let mut env = passwords.env();
    env.push(("GPS_NATS_ROUTES".into(), format!("[{}]", routes.join(", "))));
    let mut nodes = Vec::new();
    for n in 0..3 {
        let name = format!("gps-nats-{}", n + 1);
        let copy = root.config_copy(&name);
        let store = copy.parent().expect("node dir").join("store");
        rewrite(
            &copy.join("cluster").join("cluster.conf"),
            &[
                ("listen: 0.0.0.0:4222", format!("listen: 127.0.0.1:{}", client_ports[n])),
                ("http: 127.0.0.1:8222", format!("http: 127.0.0.1:{}", free_port())),
                ("listen: 0.0.0.0:6222", format!("listen: 127.0.0.1:{}", route_ports[n])),
                ("\"/var/lib/gps/nats\"", format!("{:?}", store.display().to_string())),
            ],
        );
        let config = copy.join("cluster").join(format!("node-{}.conf", n + 1));
        nodes.push(Node::start(&name, config, env.clone(), client_ports[n]).await);
    }
    nodes
}
