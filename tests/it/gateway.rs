//! The HTTP API on port 0 against real NATS and Postgres: sessions, API keys,
//! roles and tenant isolation, command round trips, idempotency and errors.
//! `TestGateway` is shared with the other gateway test modules.

use gps_commands::CommandHandler;
use gps_domain::brand::Email;
use gps_domain::ids::MemberId;
use gps_domain::product::Product;
use gps_domain::values::Name;
use gps_gateway::AppState;
use serde_json::json;

use crate::gateway_configure::{shooting_defaults, shooting_rules, style_definition};
use crate::harness::{TestDb, TestNats, brand};
use crate::http::{Response, request};

/// A gateway serving on a free port, with its own NATS and database.
pub(crate) struct TestGateway {
    pub(crate) port: u16,
    pub(crate) state: AppState,
    /// The folder behind the embedded object store (what is stored is on disk
    /// under `<storage_dir>/gps/<key>`).
    pub(crate) storage_dir: std::path::PathBuf,
    _storage: (tempfile::TempDir, gps_storage::EmbeddedS3),
    /// The mail outbox folder the gateway writes to.
    outbox: tempfile::TempDir,
    pub(crate) nats: TestNats,
    _db: TestDb,
    _stop: tokio::sync::oneshot::Sender<()>,
    projector: Option<Projector>,
}

/// The projection runners of a test gateway: how to stop them, and their task.
type Projector =
    (tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<Result<(), gps_projections::RunError>>);

fn spawn_projector(pool: sqlx::PgPool, log: gps_nats::EventLog) -> Projector {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let runners = tokio::spawn(gps_projections::run_all(
        pool,
        log,
        gps_projections::RunnerOptions::default(),
        async move {
            let _ = stopped.await;
        },
    ));
    (stop, runners)
}

/// Someone signed in through the API.
pub(crate) struct Session {
    pub(crate) cookie: String,
    pub(crate) csrf: String,
}

impl Session {
    pub(crate) fn headers(&self) -> Vec<(&str, &str)> {
        vec![("Cookie", self.cookie.as_str()), ("x-csrf-token", self.csrf.as_str())]
    }
}

impl TestGateway {
    pub(crate) async fn start() -> Self {
        Self::start_configured(|_| {}).await
    }

    /// Starts with media settings adjusted by `configure` (upload limits, URL lifetime).
    pub(crate) async fn start_configured(
        configure: impl FnOnce(&mut gps_gateway::media::MediaSettings),
    ) -> Self {
        Self::start_with_state(configure, |state| state).await
    }

    /// Starts with media settings and the gateway state adjusted (e.g. one
    /// exact webhook target address allowed).
    pub(crate) async fn start_with_state(
        configure: impl FnOnce(&mut gps_gateway::media::MediaSettings),
        adjust: impl FnOnce(AppState) -> AppState,
    ) -> Self {
        let nats = TestNats::start().await;
        let log = nats.event_log().await;
        let db = TestDb::create().await;
        let pool = sqlx::PgPool::connect(db.url()).await.expect("pool");
        gps_projections::prepare_all(&pool).await.expect("read-model schemas");
        Self::start_with(nats, log, db, pool, configure, adjust).await
    }

    /// Starts on `log` (e.g. a client connected through a proxy of `nats`).
    pub(crate) async fn start_on(nats: TestNats, log: gps_nats::EventLog) -> Self {
        let db = TestDb::create().await;
        let pool = sqlx::PgPool::connect(db.url()).await.expect("pool");
        gps_projections::prepare_all(&pool).await.expect("read-model schemas");
        Self::start_with(nats, log, db, pool, |_| {}, |state| state).await
    }

    async fn start_with(
        nats: TestNats,
        log: gps_nats::EventLog,
        db: TestDb,
        pool: sqlx::PgPool,
        configure: impl FnOnce(&mut gps_gateway::media::MediaSettings),
        adjust: impl FnOnce(AppState) -> AppState,
    ) -> Self {
        let projector = spawn_projector(pool.clone(), log.clone());
        let storage_dir = tempfile::tempdir().expect("storage dir");
        let (store, storage_server) =
            gps_storage::ObjectStore::embedded(storage_dir.path()).await.expect("embedded object store");
        let mut media = gps_gateway::media::MediaSettings::new(gps_gateway::media::UrlSigningKey::generate());
        configure(&mut media);
        let media = gps_gateway::media::Media::new(store, media);
        // The credentials store is a database of its own, named as `gps`
        // names it for this read database (so the command line finds it).
        let credentials_url = gps_gateway::accounts::credentials_url_for(db.url());
        let credentials = gps_gateway::accounts::connect_credentials(&credentials_url, None)
            .await
            .expect("credentials database");
        let outbox = tempfile::tempdir().expect("outbox dir");
        let mut state = AppState::new(log.clone(), CommandHandler::new(log), pool, false, media)
            .await
            .expect("gateway state")
            .with_credentials(credentials);
        state.mailer = gps_gateway::mail::Mailer::outbox(outbox.path(), gps_gateway::mail::DEFAULT_FROM);
        let state = adjust(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = state.clone();
        tokio::spawn(async move {
            let _ = gps_gateway::run(listener, served, async move {
                let _ = stopped.await;
            })
            .await;
        });
        TestGateway {
            port,
            state,
            storage_dir: storage_dir.path().to_path_buf(),
            _storage: (storage_dir, storage_server),
            outbox,
            nats,
            _db: db,
            _stop: stop,
            projector: Some(projector),
        }
    }

    /// The mails in the outbox (each `.eml` file's text), oldest first.
    pub(crate) fn outbox_mails(&self) -> Vec<String> {
        let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(self.outbox.path())
            .map(|entries| entries.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        files.retain(|path| path.extension().is_some_and(|ext| ext == "eml"));
        files.sort();
        files.iter().map(|path| std::fs::read_to_string(path).expect("mail")).collect()
    }

    /// Where the embedded object store is served, with its credentials.
    pub(crate) fn storage_settings(&self) -> &gps_storage::StorageSettings {
        self._storage.1.settings()
    }

    /// Stops the projection runners and waits until they have stopped.
    pub(crate) async fn stop_projections(&mut self) {
        if let Some((stop, runners)) = self.projector.take() {
            let _ = stop.send(());
            runners.await.expect("runners joined").expect("runners stopped cleanly");
        }
    }

    /// Starts the projection runners again.
    pub(crate) fn start_projections(&mut self) {
        if self.projector.is_none() {
            self.projector = Some(spawn_projector(self.state.db.clone(), self.state.log.clone()));
        }
    }

    /// Another gateway process's worth of state (its own caches and
    /// subscriptions) on the same NATS and database, serving on its own port.
    pub(crate) async fn another_gateway(&self) -> (u16, tokio::sync::oneshot::Sender<()>) {
        let mut state = AppState::new(
            self.state.log.clone(),
            CommandHandler::new(self.state.log.clone()),
            self.state.db.clone(),
            false,
            self.state.media.clone(),
        )
        .await
        .expect("second gateway state")
        .with_credentials(self.state.credentials.clone());
        state.mailer = self.state.mailer.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = gps_gateway::run(listener, state, async move {
                let _ = stopped.await;
            })
            .await;
        });
        (port, stop)
    }

    /// A new person, signed in, who is also a platform admin (test people
    /// create their own brands, which is the platform admins' right by
    /// default).
    pub(crate) async fn user(&self, id: &str) -> Session {
        let session = self.person(id).await;
        let user_id = MemberId::parse(id).expect("id");
        gps_gateway::accounts::grant_platform_admin(&self.state.credentials, &user_id, "test")
            .await
            .expect("grant platform admin");
        session
    }

    /// A new person, signed in, with no platform-wide rights.
    pub(crate) async fn person(&self, id: &str) -> Session {
        let email = format!("{id}@example.com");
        gps_gateway::accounts::create_person(
            &self.state.commands,
            &self.state.db,
            &self.state.credentials,
            gps_gateway::accounts::NewPerson {
                user_id: &MemberId::parse(id).expect("id"),
                email: &Email::parse(&email).expect("email"),
                display_name: &Name::parse(format!("User {id}")).expect("name"),
                password: "a long enough password",
            },
            gps_domain::wire::Actor::System("test".into()),
            Some(gps_gateway::accounts::VISIBLE_WITHIN),
        )
        .await
        .expect("create user");
        let response = self
            .call(
                "POST",
                "/api/v1/session",
                &[],
                Some(json!({"email": email, "password": "a long enough password"})),
            )
            .await;
        assert_eq!(response.status, 200, "{}", response.body);
        let cookie =
            response.header("set-cookie").expect("cookie").split(';').next().expect("pair").to_owned();
        assert!(
            response
                .header("set-cookie")
                .is_some_and(|c| c.contains("HttpOnly") && c.contains("SameSite=Strict"))
        );
        let csrf = response.json()["csrf_token"].as_str().expect("csrf").to_owned();
        Session { cookie, csrf }
    }

    pub(crate) async fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<serde_json::Value>,
    ) -> Response {
        request(self.port, method, path, headers, body.as_ref()).await
    }

    pub(crate) async fn as_user(
        &self,
        session: &Session,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Response {
        self.call(method, path, &session.headers(), body).await
    }

    /// A brand owned by a new user; returns the owner's session.
    pub(crate) async fn brand_with_owner(&self, brand: &str, owner: &str) -> Session {
        let session = self.user(owner).await;
        let created = self
            .as_user(&session, "POST", "/api/v1/brands", Some(json!({"brand_id": brand, "name": "Brand"})))
            .await;
        assert_eq!(created.status, 201, "{}", created.body);
        session
    }
}

pub(crate) fn product(id: &str) -> serde_json::Value {
    json!({"product_id": id, "sku": format!("SKU-{id}"), "name": "Linen dress", "category": "dresses", "attributes": {"colour": "black"}})
}

#[tokio::test]
async fn a_signed_in_owner_creates_a_brand_and_a_product_and_gets_the_stream_sequence() {
    let gateway = TestGateway::start().await;
    let owner = gateway.brand_with_owner("acme", "ana").await;
    let created = gateway.as_user(&owner, "POST", "/api/v1/brands/acme/products", Some(product("p1"))).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let body = created.json();
    assert_eq!(body["id"], "p1");
    let sequence = body["stream_sequence"].as_u64().expect("sequence");
    assert_eq!(created.header("gps-stream-sequence"), Some(sequence.to_string().as_str()));
    assert!(created.header("x-request-id").is_some());

    let address = CommandHandler::address::<Product>(&brand(), "p1").expect("address");
    let loaded = gateway.state.commands.load::<Product>(&address).await.expect("load");
    assert_eq!(loaded.position.last_subject_sequence, sequence);
    assert_eq!(
        loaded.envelopes[0].actor,
        gps_domain::wire::Actor::Member(MemberId::parse("ana").expect("id"))
    );

    let renamed = gateway
        .as_user(&owner, "PATCH", "/api/v1/brands/acme/products/p1", Some(json!({"name": "Silk dress"})))
        .await;
    assert_eq!(renamed.status, 200, "{}", renamed.body);
    assert_eq!(renamed.json()["version"], 2);
    let archived = gateway.as_user(&owner, "POST", "/api/v1/brands/acme/products/p1/archive", None).await;
    assert_eq!(archived.status, 200, "{}", archived.body);
    let edit_archived =
        gateway.as_user(&owner, "PATCH", "/api/v1/brands/acme/products/p1", Some(json!({"name": "X"}))).await;
    assert_eq!(edit_archived.status, 409, "{}", edit_archived.body);
    assert!(edit_archived.json()["detail"].as_str().is_some_and(|d| d.contains("restore")));
    assert_eq!(edit_archived.header("content-type"), Some("application/problem+json"));
}

#[tokio::test]
async fn requests_without_valid_credentials_or_without_the_csrf_token_are_refused() {
    let gateway = TestGateway::start().await;
    let owner = gateway.brand_with_owner("acme", "ana").await;
    let anonymous = gateway.call("POST", "/api/v1/brands/acme/products", &[], Some(product("p1"))).await;
    assert_eq!(anonymous.status, 401);
    let forged = gateway
        .call(
            "POST",
            "/api/v1/brands/acme/products",
            &[("Cookie", "gps_session=forged")],
            Some(product("p1")),
        )
        .await;
    assert_eq!(forged.status, 401);
    let no_csrf = gateway
        .call(
            "POST",
            "/api/v1/brands/acme/products",
            &[("Cookie", owner.cookie.as_str())],
            Some(product("p1")),
        )
        .await;
    assert_eq!(no_csrf.status, 403, "{}", no_csrf.body);
    let wrong_password = gateway
        .call(
            "POST",
            "/api/v1/session",
            &[],
            Some(json!({"email": "ana@example.com", "password": "not the password!"})),
        )
        .await;
    assert_eq!(wrong_password.status, 401);
    let unknown = gateway
        .call(
            "POST",
            "/api/v1/session",
            &[],
            Some(json!({"email": "nobody@example.com", "password": "not the password!"})),
        )
        .await;
    assert_eq!(
        unknown.json()["detail"],
        wrong_password.json()["detail"],
        "the answer does not reveal which emails exist"
    );

    let signed_out = gateway.as_user(&owner, "DELETE", "/api/v1/session", None).await;
    assert_eq!(signed_out.status, 204);
    assert_eq!(
        gateway.as_user(&owner, "POST", "/api/v1/brands/acme/products", Some(product("p1"))).await.status,
        401
    );
}

#[tokio::test]
async fn a_user_of_one_brand_cannot_see_or_change_another_brand_not_even_its_existence() {
    let gateway = TestGateway::start().await;
    let _ana = gateway.brand_with_owner("acme", "ana").await;
    let bob = gateway.brand_with_owner("other", "bob").await;
    let foreign = gateway.as_user(&bob, "POST", "/api/v1/brands/acme/products", Some(product("p1"))).await;
    let missing = gateway.as_user(&bob, "POST", "/api/v1/brands/nowhere/products", Some(product("p1"))).await;
    assert_eq!(foreign.status, 404);
    assert_eq!(missing.status, 404);
    assert_eq!(foreign.json()["title"], missing.json()["title"]);
    for (method, path, body) in [
        ("POST", "/api/v1/brands/acme/members", Some(json!({"email": "bob@example.com", "role": "owner"}))),
        ("PUT", "/api/v1/brands/acme/members/ana/role", Some(json!({"role": "viewer"}))),
        ("DELETE", "/api/v1/brands/acme/members/ana", None),
        ("POST", "/api/v1/brands/acme/api-clients", Some(json!({"name": "sneaky", "role": "owner"}))),
        ("PATCH", "/api/v1/brands/acme/products/p1", Some(json!({"name": "x"}))),
    ] {
        assert_eq!(gateway.as_user(&bob, method, path, body).await.status, 404, "{method} {path}");
    }
}

#[tokio::test]
async fn each_role_may_do_only_what_it_is_for() {
    let gateway = TestGateway::start().await;
    let owner = gateway.brand_with_owner("acme", "ana").await;
    let viewer = gateway.user("vic").await;
    let producer = gateway.user("pat").await;
    for (email, role) in [("vic@example.com", "viewer"), ("pat@example.com", "producer")] {
        let added = gateway
            .as_user(
                &owner,
                "POST",
                "/api/v1/brands/acme/members",
                Some(json!({"email": email, "role": role})),
            )
            .await;
        assert_eq!(added.status, 201, "{}", added.body);
    }
    assert_eq!(
        gateway.as_user(&viewer, "POST", "/api/v1/brands/acme/products", Some(product("p1"))).await.status,
        403
    );
    assert_eq!(
        gateway.as_user(&producer, "POST", "/api/v1/brands/acme/products", Some(product("p1"))).await.status,
        201
    );
    let promote = gateway
        .as_user(&producer, "PUT", "/api/v1/brands/acme/members/vic/role", Some(json!({"role": "owner"})))
        .await;
    assert_eq!(promote.status, 403);
    // The owner promotes the viewer, who can then produce.
    let promoted = gateway
        .as_user(&owner, "PUT", "/api/v1/brands/acme/members/vic/role", Some(json!({"role": "producer"})))
        .await;
    assert_eq!(promoted.status, 200, "{}", promoted.body);
    assert_eq!(
        gateway.as_user(&viewer, "POST", "/api/v1/brands/acme/products", Some(product("p2"))).await.status,
        201
    );
    // The last owner cannot leave.
    let leave = gateway.as_user(&owner, "DELETE", "/api/v1/brands/acme/members/ana", None).await;
    assert_eq!(leave.status, 422, "{}", leave.body);
    // An address without an account is added like one with an account (a
    // person is made for it and mailed a link), so an owner cannot tell
    // which addresses have accounts.
    let unknown = gateway
        .as_user(
            &owner,
            "POST",
            "/api/v1/brands/acme/members",
            Some(json!({"email": "zed@example.com", "role": "viewer"})),
        )
        .await;
    assert_eq!(unknown.status, 201, "{}", unknown.body);
    assert!(unknown.json()["id"].as_str().is_some_and(|id| !id.is_empty()), "{}", unknown.body);
}

#[tokio::test]
async fn an_api_key_acts_for_its_brand_only_and_stops_working_when_revoked() {
    let gateway = TestGateway::start().await;
    let owner = gateway.brand_with_owner("acme", "ana").await;
    let _other = gateway.brand_with_owner("other", "bob").await;
    let registered = gateway
        .as_user(
            &owner,
            "POST",
            "/api/v1/brands/acme/api-clients",
            Some(json!({"api_client_id": "pim", "name": "PIM sync", "role": "producer"})),
        )
        .await;
    assert_eq!(registered.status, 201, "{}", registered.body);
    let key = registered.json()["api_key"].as_str().expect("key").to_owned();
    let bearer = format!("Bearer {key}");
    let auth = [("Authorization", bearer.as_str())];

    let created = gateway.call("POST", "/api/v1/brands/acme/products", &auth, Some(product("p1"))).await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(
        gateway.call("POST", "/api/v1/brands/other/products", &auth, Some(product("p1"))).await.status,
        404
    );
    assert_eq!(
        gateway
            .call("POST", "/api/v1/brands", &auth, Some(json!({"brand_id": "x", "name": "X"})))
            .await
            .status,
        403
    );
    // Change the last character of the secret to a different one.
    let replacement = if key.ends_with('0') { '1' } else { '0' };
    let tampered = format!("Bearer {}{replacement}", &key[..key.len() - 1]);
    assert_eq!(
        gateway
            .call(
                "POST",
                "/api/v1/brands/acme/products",
                &[("Authorization", tampered.as_str())],
                Some(product("p2"))
            )
            .await
            .status,
        401
    );

    // Neither the key nor its hash is in any event.
    let log = gateway.state.commands.log();
    let brand_events = log
        .load(&CommandHandler::address::<gps_domain::brand::Brand>(&brand(), "acme").expect("address"))
        .await
        .expect("load");
    let text = serde_json::to_string(&brand_events.events).expect("json");
    assert!(!text.contains(&key[key.len() - 20..]), "no secret in events");

    let revoked = gateway.as_user(&owner, "DELETE", "/api/v1/brands/acme/api-clients/pim", None).await;
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    assert_eq!(
        gateway.call("POST", "/api/v1/brands/acme/products", &auth, Some(product("p3"))).await.status,
        401
    );
}

#[tokio::test]
async fn a_repeated_idempotency_key_applies_the_command_once() {
    let gateway = TestGateway::start().await;
    let owner = gateway.brand_with_owner("acme", "ana").await;
    let mut headers = owner.headers();
    headers.push(("Idempotency-Key", "create-p1-once"));
    let first = gateway.call("POST", "/api/v1/brands/acme/products", &headers, Some(product("p1"))).await;
    let second = gateway.call("POST", "/api/v1/brands/acme/products", &headers, Some(product("p1"))).await;
    assert_eq!(first.status, 201, "{}", first.body);
    assert_eq!(second.status, 201, "the first answer again: {}", second.body);
    assert_eq!(second.json()["already_applied"], true);
    assert_eq!(first.json()["stream_sequence"], second.json()["stream_sequence"]);
    // Without the key, the same request is a new command, refused by the domain.
    let again = gateway.as_user(&owner, "POST", "/api/v1/brands/acme/products", Some(product("p1"))).await;
    assert_eq!(again.status, 409, "{}", again.body);
    let bad_key = [owner.headers(), vec![("Idempotency-Key", "has space")]].concat();
    assert_eq!(
        gateway.call("POST", "/api/v1/brands/acme/products", &bad_key, Some(product("p2"))).await.status,
        400
    );
}

/// The Idempotency-Key row of `key`, as the gateway keeps it: (status, body).
async fn kept_answer(gateway: &TestGateway, key: &str) -> Option<(Option<i16>, Option<serde_json::Value>)> {
    sqlx::query_as("SELECT status, body FROM auth.idempotency_keys WHERE idempotency_key = $1")
        .bind(key)
        .fetch_optional(&gateway.state.credentials)
        .await
        .expect("idempotency row")
}

/// Makes a kept answer look like a first attempt whose outcome never came
/// back (the gateway answered 5xx, or died after the log had the command).
async fn forget_the_answer(gateway: &TestGateway, key: &str) {
    sqlx::query("UPDATE auth.idempotency_keys SET status = NULL, body = NULL WHERE idempotency_key = $1")
        .bind(key)
        .execute(&gateway.state.credentials)
        .await
        .expect("forget");
}

#[tokio::test]
async fn a_retried_create_gets_its_first_answer_and_the_key_with_another_body_is_refused() {
    let gateway = TestGateway::start().await;
    let owner = gateway.brand_with_owner("acme", "ana").await;
    let products = "/api/v1/brands/acme/products";
    let keyed = |key: &'static str| [owner.headers(), vec![("Idempotency-Key", key)]].concat();
    // No product_id: the server makes one, as a client that lets it would.
    let body = json!({"sku": "TEE-1", "name": "Tee", "category": "tops"});
    let first = gateway.call("POST", products, &keyed("tee-once"), Some(body.clone())).await;
    assert_eq!(first.status, 201, "{}", first.body);
    let retried = gateway.call("POST", products, &keyed("tee-once"), Some(body.clone())).await;
    assert_eq!(retried.status, 201, "the first status again: {}", retried.body);
    assert_eq!(retried.header("idempotent-replayed"), Some("true"));
    let mut expected = first.json();
    expected["already_applied"] = json!(true);
    assert_eq!(retried.json(), expected, "the first body, marked already applied");
    assert_eq!(retried.header("gps-stream-sequence"), first.header("gps-stream-sequence"));
    let product_id = first.json()["id"].as_str().expect("id").to_owned();

    // The same key with another body: refused, naming the header, nothing applied.
    let renamed = json!({"sku": "TEE-1", "name": "Renamed", "category": "tops"});
    let refused = gateway.call("POST", products, &keyed("tee-once"), Some(renamed)).await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert_eq!(refused.json()["field"], "Idempotency-Key");
    assert!(refused.json()["detail"].as_str().expect("detail").contains("POST /api/v1/brands/acme/products"));
    let address = CommandHandler::address::<Product>(&brand(), &product_id).expect("address");
    let stored = gateway.state.commands.log().load(&address).await.expect("load");
    assert_eq!(stored.events.len(), 1, "only the first create is in the log");
    assert_eq!(stored.events[0].payload["name"], "Tee");

    // The first attempt's outcome never reached the client nor the store: the
    // retry runs again, addresses the product the first one made, and the log
    // finds the command there.
    forget_the_answer(&gateway, "tee-once").await;
    let after_loss = gateway.call("POST", products, &keyed("tee-once"), Some(body.clone())).await;
    assert_eq!(after_loss.status, 200, "{}", after_loss.body);
    assert_eq!(after_loss.json()["id"], product_id.as_str());
    assert_eq!(after_loss.json()["already_applied"], true);
    assert_eq!(gateway.state.commands.log().load(&address).await.expect("load").events.len(), 1);

    // A refused request applied nothing: its key is free for the corrected one.
    let bad = json!({"sku": "has space", "name": "Shirt", "category": "tops"});
    assert_eq!(gateway.call("POST", products, &keyed("shirt-1"), Some(bad)).await.status, 400);
    assert_eq!(kept_answer(&gateway, "shirt-1").await, None);
    let good = json!({"sku": "SHIRT-1", "name": "Shirt", "category": "tops"});
    assert_eq!(gateway.call("POST", products, &keyed("shirt-1"), Some(good)).await.status, 201);

    // Keys belong to their caller: another caller's same key is its own.
    let registered = gateway
        .as_user(
            &owner,
            "POST",
            "/api/v1/brands/acme/api-clients",
            Some(json!({"name": "PIM", "role": "producer"})),
        )
        .await;
    assert_eq!(registered.status, 201, "{}", registered.body);
    let bearer = format!("Bearer {}", registered.json()["api_key"].as_str().expect("key"));
    let other = json!({"sku": "TEE-2", "name": "Tee", "category": "tops"});
    let by_key = gateway
        .call(
            "POST",
            products,
            &[("Authorization", bearer.as_str()), ("Idempotency-Key", "tee-once")],
            Some(other),
        )
        .await;
    assert_eq!(by_key.status, 201, "{}", by_key.body);
    assert_ne!(by_key.json()["id"], product_id.as_str());
}

#[tokio::test]
async fn a_replayed_api_client_registration_mints_no_second_key() {
    let gateway = TestGateway::start().await;
    let owner = gateway.brand_with_owner("acme", "ana").await;
    let clients = "/api/v1/brands/acme/api-clients";
    let headers = [owner.headers(), vec![("Idempotency-Key", "register-pim")]].concat();
    let body = json!({"name": "PIM", "role": "producer"});
    let keys_of_brand = || async {
        let (count,): (i64,) = sqlx::query_as("SELECT count(*) FROM auth.api_keys WHERE brand = 'acme'")
            .fetch_one(&gateway.state.credentials)
            .await
            .expect("count");
        count
    };
    let gateway = &gateway;
    let works = |key: String| async move {
        let bearer = format!("Bearer {key}");
        gateway
            .call("GET", "/api/v1/brands/acme/products", &[("Authorization", bearer.as_str())], None)
            .await
            .status
    };

    let first = gateway.call("POST", clients, &headers, Some(body.clone())).await;
    assert_eq!(first.status, 201, "{}", first.body);
    let key = first.json()["api_key"].as_str().expect("key").to_owned();
    let client = first.json()["id"].as_str().expect("id").to_owned();

    let replayed = gateway.call("POST", clients, &headers, Some(body.clone())).await;
    assert_eq!(replayed.status, 201, "{}", replayed.body);
    assert_eq!(replayed.json()["id"], client.as_str());
    assert_eq!(replayed.json()["already_applied"], true);
    assert!(replayed.json().get("api_key").is_none(), "a key is shown once: {}", replayed.body);
    let kept = kept_answer(gateway, "register-pim").await.expect("kept").1.expect("body");
    assert!(kept.get("api_key").is_none(), "the key is never stored: {kept}");
    assert_eq!(keys_of_brand().await, 1);

    // The answer was lost and the gateway reruns the registration: the log
    // has it, the key is stored, so no second key is made.
    forget_the_answer(gateway, "register-pim").await;
    let rerun = gateway.call("POST", clients, &headers, Some(body.clone())).await;
    assert_eq!(rerun.status, 200, "{}", rerun.body);
    assert_eq!(rerun.json()["id"], client.as_str());
    assert!(rerun.json().get("api_key").is_none(), "{}", rerun.body);
    assert_eq!(keys_of_brand().await, 1);
    assert_eq!(works(key.clone()).await, 200, "the first key still works");

    // The first attempt died after the log recorded the client but before its
    // key was stored: the retry makes the key under the recorded fingerprint.
    forget_the_answer(gateway, "register-pim").await;
    sqlx::query("DELETE FROM auth.api_keys WHERE brand = 'acme'")
        .execute(&gateway.state.credentials)
        .await
        .expect("delete");
    let recovered = gateway.call("POST", clients, &headers, Some(body)).await;
    assert_eq!(recovered.status, 200, "{}", recovered.body);
    let new_key = recovered.json()["api_key"].as_str().expect("a key, since none was stored").to_owned();
    assert_eq!(new_key.rsplit_once('_').map(|(p, _)| p), key.rsplit_once('_').map(|(p, _)| p));
    assert_eq!(works(new_key).await, 200);
    assert_eq!(keys_of_brand().await, 1);
}

#[tokio::test]
async fn health_tells_anyone_whether_gps_is_up_but_no_counts() {
    let gateway = TestGateway::start().await;
    let _owner = gateway.brand_with_owner("acme", "ana").await;
    let health = gateway.call("GET", "/healthz", &[], None).await;
    assert_eq!(health.status, 200, "{}", health.body);
    let body = health.json();
    assert_eq!(body["status"], "ok");
    let mut fields: Vec<&String> = body.as_object().expect("object").keys().collect();
    fields.sort();
    assert_eq!(fields, ["nats", "status", "stream", "version"], "{body}");
}

#[tokio::test]
async fn a_client_that_trickles_its_headers_or_idles_is_disconnected_and_others_are_served() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let gateway = TestGateway::start().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let timeout = std::time::Duration::from_secs(1);
    tokio::spawn(gps_gateway::run_with(listener, gateway.state.clone(), timeout, async move {
        let _ = stopped.await;
    }));
    let closed_within = |mut stream: tokio::net::TcpStream| async move {
        let mut buffer = [0u8; 1024];
        let mut received = Vec::new();
        let outcome = tokio::time::timeout(std::time::Duration::from_secs(15), async {
            loop {
                match stream.read(&mut buffer).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => received.extend_from_slice(&buffer[..n]),
                }
            }
        })
        .await;
        (outcome.is_ok(), String::from_utf8_lossy(&received).into_owned())
    };
    // Half a request head, then nothing.
    let mut trickler = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    trickler.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n").await.expect("write");
    let (closed, _) = closed_within(trickler).await;
    assert!(closed, "a connection with an unfinished head stays open");
    // A connection that never sends anything.
    let silent = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    assert!(closed_within(silent).await.0, "a silent connection stays open");
    // A kept-alive connection, idle after its first request.
    let mut idle = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await.expect("write");
    let (closed, answered) = closed_within(idle).await;
    assert!(answered.starts_with("HTTP/1.1 200"), "{answered}");
    assert!(closed, "an idle kept-alive connection stays open");
    // Meanwhile, a complete request is served as ever.
    let health = crate::http::request(port, "GET", "/healthz", &[], None).await;
    assert_eq!(health.status, 200, "{}", health.body);
}

#[tokio::test]
async fn malformed_requests_get_a_400_that_names_the_field() {
    let gateway = TestGateway::start().await;
    let owner = gateway.brand_with_owner("acme", "ana").await;
    let mut bad_sku = product("p1");
    bad_sku["sku"] = json!("has space");
    let response = gateway.as_user(&owner, "POST", "/api/v1/brands/acme/products", Some(bad_sku)).await;
    assert_eq!(response.status, 400);
    assert_eq!(response.json()["field"], "sku");
    let bad_id = gateway.as_user(&owner, "POST", "/api/v1/brands/acme/products", Some(product("p.1"))).await;
    assert_eq!(bad_id.json()["field"], "product_id");
    let missing =
        gateway.as_user(&owner, "POST", "/api/v1/brands/acme/products", Some(json!({"sku": "A"}))).await;
    assert_eq!(missing.status, 400);
    assert!(missing.json()["detail"].as_str().is_some_and(|d| d.contains("name")), "{}", missing.body);
    let unknown = gateway
        .as_user(
            &owner,
            "POST",
            "/api/v1/brands/acme/products",
            Some(json!({"sku": "A", "name": "n", "category": "c", "colour": "red"})),
        )
        .await;
    assert_eq!(unknown.status, 400);
    assert!(unknown.json()["detail"].as_str().is_some_and(|d| d.contains("colour")), "{}", unknown.body);
    let bad_role = gateway
        .as_user(
            &owner,
            "POST",
            "/api/v1/brands/acme/members",
            Some(json!({"email": "x@example.com", "role": "boss"})),
        )
        .await;
    assert_eq!(bad_role.json()["field"], "role");
}

/// A sample valid body per operation, so every request reaches authorization.
fn sample_body(operation: &str) -> Option<serde_json::Value> {
    Some(match operation {
        "add_member" => json!({"email": "zoe@example.com", "role": "viewer"}),
        "change_role" => json!({"role": "viewer"}),
        "register_api_client" => json!({"name": "Matrix client", "role": "viewer"}),
        "create_product" => json!({"sku": "MATRIX-1", "name": "Matrix", "category": "dresses"}),
        "update_product" => json!({"name": "Renamed"}),
        "archive_product" => json!({"reason": "matrix"}),
        "create_subject" => json!({"name": "Matrix", "description": "A matrix subject"}),
        "update_subject" => json!({"description": "Changed"}),
        "retire_subject" => json!({"reason": "matrix"}),
        "create_style" => json!({"name": "Matrix", "definition": style_definition("calm")}),
        "revise_style" => json!({"definition": style_definition("bold")}),
        "archive_style"
        | "reopen_shooting"
        | "cancel_shooting_launch"
        | "archive_shooting"
        | "remove_look"
        | "reset_review" => {
            json!({"reason": "matrix"})
        }
        "create_shooting" => json!({"name": "Matrix", "defaults": shooting_defaults("4:5")}),
        "launch_shooting" => json!({}),
        "rename_shooting" | "rename_look" => json!({"name": "Renamed"}),
        "update_shooting_defaults" => json!({"defaults": shooting_defaults("1:1")}),
        "set_shooting_rules" => json!({"rules": shooting_rules(2)}),
        "create_look" => json!({"name": "Matrix", "products": ["p-fixture"]}),
        "change_look_products" => json!({"products": ["p-fixture"]}),
        "change_look_subject" => json!({"subject": null}),
        "change_look_style" => json!({"style": null}),
        "set_look_guidelines" => json!({"guidelines": {"dos": ["show the back"], "donts": []}}),
        "set_look_shot_types" => json!({"shot_types": null}),
        "reject_prediction" => json!({"reason": "matrix"}),
        "cancel_generation" | "cancel_import" => json!({"reason": "matrix"}),
        "define_channel_preset" => json!({"spec": channel_preset_spec()}),
        "request_export" => {
            json!({"predictions": ["ghost"], "channel": "web-pdp", "destination": {"kind": "zip_download"}})
        }
        "request_revision" => json!({"comment": "matrix", "regions": [region()]}),
        "request_video" => json!({}),
        "comment_on_prediction" => json!({"text": "matrix"}),
        // Uploads take multipart bodies; a JSON one reaches authorization all
        // the same (and is then refused as not multipart).
        "upload_product_image" | "upload_subject_image" | "upload_style_reference" | "start_import" => {
            json!({})
        }
        _ => return None,
    })
}

/// A valid region of a revision request.
fn region() -> serde_json::Value {
    json!({"x": 0.1, "y": 0.1, "width": 0.2, "height": 0.2, "note": "here"})
}

#[tokio::test]
async fn the_tenant_isolation_matrix_holds_for_every_role_and_every_brand_operation() {
    use gps_gateway::auth::{Action, allows};
    let gateway = TestGateway::start().await;
    let owner = gateway.brand_with_owner("acme", "ana").await;
    let outsider = gateway.brand_with_owner("other", "oscar").await;
    gateway.user("zoe").await;
    let fixture =
        gateway.as_user(&owner, "POST", "/api/v1/brands/acme/products", Some(product("p-fixture"))).await;
    assert_eq!(fixture.status, 201);

    // Callers: a user per role, an API key per role that keys may have, and
    // an outsider user and key of another brand.
    let roles = ["producer", "reviewer", "viewer", "auditor"];
    // (who, their role in acme if any, their credentials)
    type Caller = (String, Option<gps_domain::brand::Role>, Vec<(String, String)>);
    let mut callers: Vec<Caller> = Vec::new();
    callers.push(("owner user".into(), Some(gps_domain::brand::Role::Owner), owner_headers(&owner)));
    for role in roles {
        let id = format!("u-{role}");
        let session = gateway.user(&id).await;
        let added = gateway
            .as_user(
                &owner,
                "POST",
                "/api/v1/brands/acme/members",
                Some(json!({"email": format!("{id}@example.com"), "role": role})),
            )
            .await;
        assert_eq!(added.status, 201, "{}", added.body);
        callers.push((format!("{role} user"), Some(parse_role(role)), owner_headers(&session)));
        // Each key gets every scope its role allows, so the role alone
        // decides (keys without a scope are tested in event_streams.rs).
        let scopes: Vec<&str> = gps_domain::brand::ApiScope::ALL
            .into_iter()
            .filter(|scope| allows(parse_role(role), gps_gateway::auth::action_of(*scope)))
            .map(|scope| scope.as_str())
            .collect();
        let key = gateway
            .as_user(
                &owner,
                "POST",
                "/api/v1/brands/acme/api-clients",
                Some(json!({"api_client_id": format!("k-{role}"), "name": "Key", "role": role, "scopes": scopes})),
            )
            .await;
        assert_eq!(key.status, 201, "{}", key.body);
        let bearer = format!("Bearer {}", key.json()["api_key"].as_str().expect("key"));
        callers.push((format!("{role} key"), Some(parse_role(role)), vec![("Authorization".into(), bearer)]));
    }
    callers.push(("outsider user".into(), None, owner_headers(&outsider)));
    let outsider_key = gateway
        .as_user(
            &outsider,
            "POST",
            "/api/v1/brands/other/api-clients",
            Some(json!({"name": "Outsider", "role": "producer"})),
        )
        .await;
    let bearer = format!("Bearer {}", outsider_key.json()["api_key"].as_str().expect("key"));
    callers.push(("outsider key".into(), None, vec![("Authorization".into(), bearer)]));

    let document = gateway.call("GET", "/api/v1/openapi.json", &[], None).await.json();
    let mut checked = 0;
    for (template, item) in document["paths"].as_object().expect("paths") {
        if !template.contains("{brand}") {
            continue;
        }
        for (method, operation) in item.as_object().expect("operations") {
            let operation_id = operation["operationId"].as_str().expect("operation id");
            let action = match operation["x-gps-action"].as_str().expect("x-gps-action") {
                "read" => Action::Read,
                "produce" => Action::Produce,
                "review" => Action::Review,
                "administer" => Action::Administer,
                "audit" => Action::Audit,
                "stream" => Action::Stream,
                other => panic!("unknown action {other}"),
            };
            let has_body = operation.get("requestBody").is_some();
            let body = sample_body(operation_id);
            assert!(!has_body || body.is_some(), "add a sample body for {operation_id}");
            // Targets that do not belong to the caller's own data: a ghost
            // member, client, subject, style, shooting, look and prediction,
            // and the fixture product.
            let concrete = |brand: &str| {
                template
                    .replace("{brand}", brand)
                    .replace("{member}", "ghost")
                    .replace("{client}", "ghost")
                    .replace("{product}", "p-fixture")
                    .replace("{subject}", "ghost")
                    .replace("{style}", "ghost")
                    .replace("{shooting}", "ghost")
                    .replace("{look}", "ghost")
                    .replace("{prediction}", "ghost")
                    .replace("{generation}", "ghost")
                    .replace("{channel}", "web-pdp")
                    .replace("{aggregate_type}", "product")
                    .replace("{id}", "ghost")
                    .replace("{import}", "ghost")
            };
            for (name, role, headers) in &callers {
                let headers: Vec<(&str, &str)> =
                    headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                let method = method.to_uppercase();
                // Someone else's brand, or a brand that does not exist: 404.
                for brand in if role.is_some() { vec!["other", "nowhere"] } else { vec!["acme", "nowhere"] } {
                    let response = gateway.call(&method, &concrete(brand), &headers, body.clone()).await;
                    assert_eq!(
                        response.status,
                        404,
                        "{name}: {method} {} -> {}",
                        concrete(brand),
                        response.body
                    );
                    checked += 1;
                }
                // Their own brand: 403 exactly when the role lacks the action.
                if let Some(role) = role {
                    let response = gateway.call(&method, &concrete("acme"), &headers, body.clone()).await;
                    if allows(*role, action) {
                        assert!(
                            ![401, 403].contains(&response.status) && response.status < 500,
                            "{name} may {operation_id}: got {} {}",
                            response.status,
                            response.body
                        );
                    } else {
                        assert_eq!(response.status, 403, "{name} may not {operation_id}: {}", response.body);
                    }
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 100, "the matrix covered {checked} cases");
}

/// A valid channel preset: a web product page, 4:5 on a warm white.
pub(crate) fn channel_preset_spec() -> serde_json::Value {
    json!({
        "long_edge_px": 2048, "aspect_ratio": "4:5", "fit": "crop_to_subject",
        "background": {"kind": "colour", "colour": "#F5F0E8"}, "format": "jpeg", "quality": 85,
        "colour_space": "srgb", "max_bytes": 5000000, "naming_pattern": "{sku}_{view}_{n}"
    })
}

fn owner_headers(session: &Session) -> Vec<(String, String)> {
    vec![("Cookie".into(), session.cookie.clone()), ("x-csrf-token".into(), session.csrf.clone())]
}

fn parse_role(role: &str) -> gps_domain::brand::Role {
    serde_json::from_value(json!(role)).expect("role")
}

#[tokio::test]
async fn a_read_after_a_write_sees_the_write_and_a_read_beyond_the_log_is_refused() {
    let gateway = TestGateway::start().await;
    let owner = gateway.brand_with_owner("acme", "ana").await;
    let created = gateway.as_user(&owner, "POST", "/api/v1/brands/acme/products", Some(product("p1"))).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let sequence = created.header("gps-stream-sequence").expect("sequence").to_owned();
    let mut headers = owner.headers();
    headers.push(("gps-min-sequence", sequence.as_str()));

    let detail = gateway.call("GET", "/api/v1/brands/acme/products/p1", &headers, None).await;
    assert_eq!(detail.status, 200, "{}", detail.body);
    assert_eq!(detail.json()["sku"], "SKU-p1");
    assert_eq!(detail.json()["last_sequence"].as_u64().map(|s| s.to_string()), Some(sequence.clone()));
    let list = gateway.call("GET", "/api/v1/brands/acme/products?limit=10", &headers, None).await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert_eq!(list.json()["items"][0]["product_id"], "p1");

    // A rename, read back at its own sequence.
    let renamed = gateway
        .as_user(&owner, "PATCH", "/api/v1/brands/acme/products/p1", Some(json!({"name": "Silk dress"})))
        .await;
    let path = format!("/api/v1/brands/acme/products/p1?min_sequence={}", renamed.json()["stream_sequence"]);
    assert_eq!(gateway.as_user(&owner, "GET", &path, None).await.json()["name"], "Silk dress");

    let too_far = gateway
        .as_user(&owner, "GET", "/api/v1/brands/acme/products/p1?min_sequence=999999&wait_ms=200", None)
        .await;
    // A sequence the log has not reached is the caller's mistake, refused at
    // once; a lagging read model (503) is covered by gps_up.
    assert_eq!(too_far.status, 409, "{}", too_far.body);
    assert_eq!(too_far.json()["field"], "min_sequence");
    let bad = gateway
        .call(
            "GET",
            "/api/v1/brands/acme/products",
            &[("Cookie", owner.cookie.as_str()), ("gps-min-sequence", "soon")],
            None,
        )
        .await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()["field"], "gps-min-sequence");
    let missing = gateway.as_user(&owner, "GET", "/api/v1/brands/acme/products/nope", None).await;
    assert_eq!(missing.status, 404);
    let bad_cursor = gateway.as_user(&owner, "GET", "/api/v1/brands/acme/products?cursor=zz", None).await;
    assert_eq!(bad_cursor.json()["field"], "cursor");
}

#[tokio::test]
async fn readiness_reports_every_problem_the_roles_of_the_process_register() {
    let gateway = TestGateway::start().await;
    let ready = gateway.call("GET", "/readyz", &[], None).await;
    assert_eq!(ready.status, 200, "{}", ready.body);
    assert_eq!(ready.json()["status"], "ready");

    // A role of this process (here a stand-in check) reports a problem.
    let problem =
        std::sync::Arc::new(std::sync::Mutex::new(Some("catalog was built from another log".to_owned())));
    let reported = problem.clone();
    gateway.state.readiness.register(
        "projections",
        std::sync::Arc::new(move || {
            let problems: Vec<String> = reported.lock().expect("lock").iter().cloned().collect();
            Box::pin(async move { problems })
        }),
    );
    let not_ready = gateway.call("GET", "/readyz", &[], None).await;
    assert_eq!(not_ready.status, 503, "{}", not_ready.body);
    let body = not_ready.json();
    assert_eq!(body["status"], "not_ready");
    assert_eq!(body["problems"][0]["role"], "projections");
    assert_eq!(body["problems"][0]["problem"], "catalog was built from another log");
    assert!(body["roles"].as_array().expect("roles").iter().any(|r| r == "projections"));

    // Fixed: ready again.
    problem.lock().expect("lock").take();
    assert_eq!(gateway.call("GET", "/readyz", &[], None).await.status, 200);
}

#[tokio::test]
async fn a_sku_belongs_to_one_product_and_a_refused_creation_gives_its_sku_back() {
    let gateway = TestGateway::start().await;
    let owner = gateway.brand_with_owner("acme", "ana").await;
    let products = "/api/v1/brands/acme/products";
    let body = |id: &str, sku: &str| json!({"product_id": id, "sku": sku, "name": "Linen dress", "category": "dresses"});

    let first = gateway.as_user(&owner, "POST", products, Some(body("p1", "DR-1"))).await;
    assert_eq!(first.status, 201, "{}", first.body);
    // Another product id with the same SKU, straight after: no read model is asked.
    let second = gateway.as_user(&owner, "POST", products, Some(body("p2", "DR-1"))).await;
    assert_eq!(second.status, 409, "{}", second.body);
    let problem = second.json();
    assert!(
        problem["detail"].as_str().is_some_and(|detail| detail.contains("DR-1") && detail.contains("p1")),
        "{problem}"
    );
    // The same SKU in another brand is another product.
    gateway
        .as_user(&owner, "POST", "/api/v1/brands", Some(json!({"brand_id": "other", "name": "Other"})))
        .await;
    let elsewhere =
        gateway.as_user(&owner, "POST", "/api/v1/brands/other/products", Some(body("p2", "DR-1"))).await;
    assert_eq!(elsewhere.status, 201, "{}", elsewhere.body);

    // p1 again with a new SKU is refused (p1 exists), and must not keep that SKU.
    let again = gateway.as_user(&owner, "POST", products, Some(body("p1", "DR-2"))).await;
    assert_eq!(again.status, 409, "{}", again.body);
    let third = gateway.as_user(&owner, "POST", products, Some(body("p3", "DR-2"))).await;
    assert_eq!(third.status, 201, "the refused creation gave DR-2 back: {}", third.body);

    // Concurrent creations of one SKU: exactly one wins.
    let attempts = (0..6).map(|n| {
        let gateway = &gateway;
        let owner = &owner;
        async move {
            gateway.as_user(owner, "POST", products, Some(body(&format!("race-{n}"), "RACE-1"))).await.status
        }
    });
    let statuses = futures::future::join_all(attempts).await;
    assert_eq!(statuses.iter().filter(|status| **status == 201).count(), 1, "{statuses:?}");
    assert!(statuses.iter().all(|status| *status == 201 || *status == 409), "{statuses:?}");
}
