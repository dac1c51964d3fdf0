//! PostgreSQL as the system of record, as operators and clients see it: the real binary
//! migrates an empty database (two instances started together migrate once), accounts and
//! sessions survive restarts, two instances on one database and one Redis act as one, accounts
//! move from Redis, TLS works for both stores, and the failure policy holds (a stopped database,
//! a blocked statement, a database that is down at start, 200 logins on a small pool). The auth
//! routes themselves run on PostgreSQL in `auth.rs`.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

mod support;

use std::time::Duration;

use keel_testkit::postgres::{PostgresServer, TestDatabase};
use keel_testkit::redis::RedisServer;
use keel_testkit::{ServerProcess, TestApp, eventually};
use reqwest::{Method, StatusCode};
use secrecy::SecretString;
use serde_json::{Value, json};
use server::config::Config;
use support::*;
use tokio::time::Instant;

/// The database bounds of the apps under fault: a request waits for a connection, then a
/// statement, so an answer must come within a few of these.
const DB_TIMEOUT_MS: u64 = 300;
/// "Answered within the configured bounds", with slack for a loaded test machine.
const ANSWER_WITHIN: Duration = Duration::from_secs(3);

fn on_database(db: &TestDatabase) -> impl FnOnce(&mut Config) {
    let url = db.url.clone();
    move |config: &mut Config| {
        config.database.url = Some(SecretString::from(url));
        config.database.connect_timeout_ms = DB_TIMEOUT_MS;
        config.database.acquire_timeout_ms = DB_TIMEOUT_MS;
        config.database.statement_timeout_ms = DB_TIMEOUT_MS;
        config.server.readiness_timeout_ms = DB_TIMEOUT_MS;
    }
}

/// The environment of a server process on `db` (and `redis`, if any) with the shared keys.
fn process_env(db: &TestDatabase, redis: Option<&RedisServer>) -> Vec<(String, String)> {
    let mut env = shared_keys_env();
    env.push(("KEEL_DATABASE__URL".into(), db.url.clone()));
    if let Some(redis) = redis {
        env.push(("KEEL_REDIS__URL".into(), redis.url()));
    }
    env
}

fn borrowed(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

async fn readiness(app: &TestApp) -> (StatusCode, Value) {
    let response = app.get("/health/ready").await;
    (response.status(), response.json().await.unwrap())
}

/// Polls readiness until it is 200.
async fn wait_ready(app: &TestApp) {
    eventually("readiness is 200", Duration::from_secs(15), || async {
        match readiness(app).await {
            (StatusCode::OK, _) => Ok(()),
            other => Err(other),
        }
    })
    .await;
}

fn credentials(who: &str) -> Value {
    json!({"email": email(who), "password": PASSWORD})
}

#[tokio::test]
async fn two_processes_started_together_on_an_empty_database_migrate_once_and_serve() {
    let server = PostgresServer::shared();
    let db = server.database();
    let env = process_env(&db, None);
    let env = borrowed(&env);
    let (a, b) = tokio::join!(ServerProcess::start(&env), ServerProcess::start(&env));
    let client = client();
    for process in [&a, &b] {
        let response = client
            .get(process.url("/health/ready"))
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["checks"]["postgres"]["status"], "ok", "{body}");
    }
    let applied = server
        .psql(
            &db.name,
            "SELECT count(*) FROM _sqlx_migrations WHERE success",
        )
        .unwrap();
    assert_eq!(
        applied,
        keel_storage::postgres::migration_versions()
            .len()
            .to_string()
    );
    // An account made through one is known to the other (one database).
    let (token, _) = signup_on_process(&client, &a, "ada").await;
    let me = client
        .get(b.url(ME))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), StatusCode::OK);
    // The start-up log says what serves what, and warns that this is for one instance.
    assert!(
        a.output().contains("PostgreSQL without Redis"),
        "{}",
        a.output()
    );
}

/// Registers, logs in and refreshes on a process; restarts it; the account, the session, the
/// access token, the cookie and the refresh token all still work.
async fn accounts_and_sessions_survive_a_restart(redis: Option<RedisServer>) {
    let db = PostgresServer::shared().database();
    let env = process_env(&db, redis.as_ref());
    let env = borrowed(&env);
    let client = client();
    let mut first = ServerProcess::start(&env).await;
    let registered = client
        .post(first.url(REGISTER))
        .json(&credentials("ada"))
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), StatusCode::CREATED);
    let response = client
        .post(first.url(LOGIN))
        .json(&credentials("ada"))
        .send()
        .await
        .unwrap();
    let login = read_login(response).await;

    first.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(first.wait_exit(Duration::from_secs(20)).await.is_some());
    let second = ServerProcess::start(&env).await;

    let me = client
        .get(second.url(ME))
        .bearer_auth(&login.access)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), StatusCode::OK, "the access token still works");
    let body: Value = me.json().await.unwrap();
    assert_eq!(body["user"]["id"], login.user_id.as_str());
    assert_eq!(body["session"]["id"], login.session_id.as_str());
    let by_cookie = client
        .get(second.url(ME))
        .header("cookie", &login.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(by_cookie.status(), StatusCode::OK, "the cookie still works");
    let refreshed = client
        .post(second.url(REFRESH))
        .json(&json!({"refreshToken": login.refresh}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        refreshed.status(),
        StatusCode::OK,
        "the refresh token rotates"
    );
    let again = client
        .post(second.url(LOGIN))
        .json(&credentials("ada"))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::OK, "the password still logs in");
}

#[tokio::test]
async fn on_postgres_alone_accounts_and_sessions_survive_a_restart() {
    accounts_and_sessions_survive_a_restart(None).await;
}

#[tokio::test]
async fn on_postgres_and_redis_accounts_and_sessions_survive_a_restart() {
    accounts_and_sessions_survive_a_restart(Some(RedisServer::start())).await;
}

/// Raising the argon2 parameters in the configuration upgrades each account's stored hash at
/// its next login, with no reset and nothing the user notices.
#[tokio::test]
async fn raised_argon2_parameters_upgrade_a_stored_hash_at_the_next_login() {
    let server = PostgresServer::shared();
    let db = server.database();
    let stored_hash = || {
        server
            .psql(&db.name, "SELECT password_hash FROM users")
            .unwrap()
    };
    let cheap = TestApp::spawn_with(|config| {
        on_database(&db)(config);
        config.auth.password_hashing.memory_kib = 8 * 1024;
        config.auth.password_hashing.iterations = 1;
    })
    .await;
    wait_ready(&cheap).await;
    register(&cheap, &email("ada")).await;
    drop(cheap);
    assert!(
        stored_hash().contains("$m=8192,t=1,p=1$"),
        "{}",
        stored_hash()
    );

    let raised = TestApp::spawn_with(on_database(&db)).await;
    wait_ready(&raised).await;
    let login = login(&raised, &email("ada")).await;
    assert_eq!(me_status(&raised, &login.access).await, StatusCode::OK);
    let upgraded = stored_hash();
    assert!(upgraded.contains("$m=19456,t=2,p=1$"), "{upgraded}");
    // The upgraded hash logs in as the old one did.
    login_again(&raised).await;
}

/// A disabled account (here by an operator's statement; the admin routes come later) is told
/// so only once its password verified: a wrong password gets the usual 401.
#[tokio::test]
async fn a_disabled_account_is_answered_account_disabled_only_after_its_password() {
    let server = PostgresServer::shared();
    let db = server.database();
    let app = TestApp::spawn_with(on_database(&db)).await;
    wait_ready(&app).await;
    register(&app, &email("ada")).await;
    server
        .psql(&db.name, "UPDATE users SET disabled_at = now()")
        .unwrap();

    let right = login_raw(&app, &email("ada"), PASSWORD).await;
    assert!(right.headers().get("ratelimit-policy").is_some());
    let problem = expect_problem(
        right,
        StatusCode::FORBIDDEN,
        "account_disabled",
        "right password",
    )
    .await;
    assert!(problem.get("user").is_none(), "{problem}");
    let wrong = login_raw(&app, &email("ada"), "not the password").await;
    assert_eq!(
        expect_401(wrong, "wrong password").await,
        "invalid_credentials"
    );

    server
        .psql(&db.name, "UPDATE users SET disabled_at = NULL")
        .unwrap();
    let login = login(&app, &email("ada")).await;
    assert_eq!(me_status(&app, &login.access).await, StatusCode::OK);
}

async fn login_again(app: &TestApp) {
    let again = login(app, &email("ada")).await;
    assert_eq!(me_status(app, &again.access).await, StatusCode::OK);
}

#[tokio::test]
async fn two_instances_on_one_database_and_one_redis_act_as_one() {
    let db = PostgresServer::shared().database();
    let redis = RedisServer::start();
    let env = process_env(&db, Some(&redis));
    let env = borrowed(&env);
    let (a, b) = tokio::join!(ServerProcess::start(&env), ServerProcess::start(&env));
    let client = client();

    // Registered on A: B refuses the same address in another spelling, and logs it in.
    let response = client
        .post(a.url(REGISTER))
        .json(&credentials("jos\u{e9}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let duplicate = client
        .post(b.url(REGISTER))
        .json(&json!({"email": "JOSE\u{301}@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    expect_problem(
        duplicate,
        StatusCode::CONFLICT,
        "email_taken",
        "register on B",
    )
    .await;
    let response = client
        .post(b.url(LOGIN))
        .json(&json!({"email": "Jose\u{301}@Example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    let on_b = read_login(response).await;

    // A serves B's session; a refresh on A rotates it; logout on B ends it on A at once.
    let me_on_a = client
        .get(a.url(ME))
        .bearer_auth(&on_b.access)
        .send()
        .await
        .unwrap();
    assert_eq!(me_on_a.status(), StatusCode::OK);
    let refreshed = client
        .post(a.url(REFRESH))
        .json(&json!({"refreshToken": on_b.refresh}))
        .send()
        .await
        .unwrap();
    assert_eq!(refreshed.status(), StatusCode::OK);
    let successor: Value = refreshed.json().await.unwrap();
    let successor = successor["refreshToken"].as_str().unwrap().to_owned();
    // The same token on B inside the grace (a racing tab, a retry): B answers A's successor.
    let replayed = client
        .post(b.url(REFRESH))
        .json(&json!({"refreshToken": on_b.refresh}))
        .send()
        .await
        .unwrap();
    assert_eq!(replayed.status(), StatusCode::OK);
    let replayed: Value = replayed.json().await.unwrap();
    assert_eq!(replayed["refreshToken"], successor.as_str(), "{replayed}");
    // The successor rotates on B; the first token, two rotations old now, is reuse on A.
    let rotated = client
        .post(b.url(REFRESH))
        .json(&json!({"refreshToken": successor}))
        .send()
        .await
        .unwrap();
    assert_eq!(rotated.status(), StatusCode::OK);
    let reused = client
        .post(a.url(REFRESH))
        .json(&json!({"refreshToken": on_b.refresh}))
        .send()
        .await
        .unwrap();
    assert_eq!(expect_401(reused, "reuse on A").await, "token_reused");
    let me_after = client
        .get(a.url(ME))
        .bearer_auth(&on_b.access)
        .send()
        .await
        .unwrap();
    assert_eq!(
        expect_401(me_after, "the reused session on A").await,
        "unauthorized"
    );
}

#[tokio::test]
async fn a_stopped_database_fails_closed_in_time_and_the_server_recovers_by_itself() {
    let server = PostgresServer::start();
    let db = server.database();
    let app = TestApp::spawn_with(on_database(&db)).await;
    wait_ready(&app).await;
    let login = signup(&app, &email("ada")).await;

    server.stop();
    let (status, body) = readiness(&app).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(
        body["checks"]["postgres"]["status"], "unavailable",
        "{body}"
    );
    let reason = body["checks"]["postgres"]["reason"].as_str();
    assert!(matches!(reason, Some("unreachable" | "timeout")), "{body}");
    assert_eq!(app.get("/health/live").await.status(), StatusCode::OK);
    for (what, request) in [
        (
            "register",
            app.client
                .post(app.url(REGISTER))
                .json(&credentials("grace")),
        ),
        (
            "login",
            app.client.post(app.url(LOGIN)).json(&credentials("ada")),
        ),
        ("GET /me", bearer(&app, Method::GET, ME, &login.access)),
        (
            "refresh",
            app.client
                .post(app.url(REFRESH))
                .json(&json!({"refreshToken": login.refresh})),
        ),
        (
            "cookie /me",
            with_cookie(&app, Method::GET, ME, &login.cookie),
        ),
    ] {
        expect_unavailable(request, ANSWER_WITHIN, what).await;
    }

    // PostgreSQL keeps its data across the restart: the session is still there.
    server.start_again();
    wait_ready(&app).await;
    assert_eq!(me_status(&app, &login.access).await, StatusCode::OK);
    let response = refresh(&app, &login.refresh).await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "the refresh token survived"
    );
}

#[tokio::test]
async fn a_statement_blocked_by_a_lock_is_503_within_the_bound_and_then_recovers() {
    let server = PostgresServer::shared();
    let db = server.database();
    let app = TestApp::spawn_with(on_database(&db)).await;
    register(&app, &email("ada")).await;

    let lock = server.lock_table(&db.name, "users");
    expect_unavailable(
        app.client.post(app.url(LOGIN)).json(&credentials("ada")),
        ANSWER_WITHIN,
        "login while users is locked",
    )
    .await;
    expect_unavailable(
        app.client
            .post(app.url(REGISTER))
            .json(&credentials("grace")),
        ANSWER_WITHIN,
        "register while users is locked",
    )
    .await;
    lock.release();
    login(&app, &email("ada")).await;
    // The refused registration left nothing behind.
    register(&app, &email("grace")).await;
}

#[tokio::test]
async fn a_database_down_at_start_leaves_the_server_unready_until_it_migrates_it() {
    let server = PostgresServer::start();
    let db = server.database();
    server.stop();
    let app = TestApp::spawn_with(on_database(&db)).await;
    let (status, body) = readiness(&app).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        body["checks"]["postgres"]["reason"].as_str() == Some("not_migrated"),
        "{body}"
    );
    assert_eq!(app.get("/health/live").await.status(), StatusCode::OK);
    expect_unavailable(
        app.client.post(app.url(REGISTER)).json(&credentials("ada")),
        ANSWER_WITHIN,
        "register before the database answers",
    )
    .await;

    server.start_again();
    wait_ready(&app).await;
    signup(&app, &email("ada")).await;
}

#[tokio::test]
async fn two_hundred_concurrent_logins_on_a_small_pool_neither_deadlock_nor_leak() {
    const LOGINS: usize = 200;
    let server = PostgresServer::shared();
    let db = server.database();
    let url = db.url.clone();
    let app = TestApp::spawn_with(move |config| {
        config.database.url = Some(SecretString::from(url));
        config.database.pool_size = 3;
        config.rate_limit.enabled = false;
        config.server.workers = Some(2);
    })
    .await;
    register(&app, &email("ada")).await;
    let connections_of_the_app = || {
        server
            .psql(
                "postgres",
                &format!(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = '{}'",
                    db.name
                ),
            )
            .unwrap()
            .parse::<u32>()
            .unwrap()
    };
    let started = Instant::now();
    let logins = (0..LOGINS).map(|_| {
        app.client
            .post(app.url(LOGIN))
            .json(&credentials("ada"))
            .send()
    });
    let answers = futures_util::future::join_all(logins).await;
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for answer in answers {
        *statuses
            .entry(answer.unwrap().status().as_u16())
            .or_default() += 1;
    }
    let elapsed = started.elapsed();
    // Every login is answered: 200, or 503 when hashing or the pool is saturated; never a
    // hang, never a 500.
    assert!(
        statuses
            .keys()
            .all(|status| *status == 200 || *status == 503),
        "{statuses:?}"
    );
    assert!(statuses.get(&200).copied().unwrap_or(0) > 0, "{statuses:?}");
    assert!(elapsed < Duration::from_secs(60), "took {elapsed:?}");
    // The pool never held more than its size, and gave every connection back: the next login
    // gets one at once.
    let open = connections_of_the_app();
    assert!(open <= 3, "{open} connections for a pool of 3");
    login(&app, &email("ada")).await;
}

#[tokio::test]
async fn tls_is_used_for_postgres_with_sslmode_and_for_rediss_urls() {
    let server = PostgresServer::start_tls();
    let db = server.database();
    let redis = RedisServer::start_tls();
    let redis_url = redis.url();
    assert!(redis_url.starts_with("rediss://"), "{redis_url}");
    let database_url = format!("{}?sslmode=require", db.url);
    let app = TestApp::spawn_with(move |config| {
        config.database.url = Some(SecretString::from(database_url));
        config.redis.url = Some(SecretString::from(redis_url));
    })
    .await;
    wait_ready(&app).await;
    let login = signup(&app, &email("ada")).await;
    assert_eq!(me_status(&app, &login.access).await, StatusCode::OK);

    // Without TLS the same database refuses the connection: TLS was really in use.
    let plain_url = format!("{}?sslmode=disable", db.url);
    let plain = TestApp::spawn_with(move |config| {
        config.database.url = Some(SecretString::from(plain_url));
        config.database.connect_timeout_ms = DB_TIMEOUT_MS;
        config.server.readiness_timeout_ms = DB_TIMEOUT_MS;
    })
    .await;
    let (status, body) = readiness(&plain).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
}

#[tokio::test]
async fn server_migrate_and_the_import_from_redis_are_commands_that_can_be_run_again() {
    let db = PostgresServer::shared().database();
    let redis = RedisServer::start();
    // Accounts made while Keel ran on Redis alone.
    let redis_url = redis.url();
    let on_redis = TestApp::spawn_with(move |config| {
        config.redis.url = Some(SecretString::from(redis_url));
    })
    .await;
    register(&on_redis, &email("ada")).await;
    let grace = register(&on_redis, &email("grace")).await;
    drop(on_redis);

    let run = |args: &'static [&'static str], with_redis: bool| {
        let mut command = std::process::Command::new(keel_testkit::process::server_binary());
        command
            .args(args)
            .env("KEEL_DATABASE__URL", &db.url)
            .env("KEEL_LOG__FORMAT", "json");
        if with_redis {
            command.env("KEEL_REDIS__URL", redis.url());
        }
        command.output().unwrap()
    };
    for _ in 0..2 {
        let migrated = run(&["migrate"], false);
        assert_eq!(migrated.status.code(), Some(0), "{migrated:?}");
    }
    let imported = run(&["users", "import-from-redis"], true);
    assert_eq!(imported.status.code(), Some(0), "{imported:?}");
    let logs = String::from_utf8_lossy(&imported.stdout);
    assert!(logs.contains(r#""imported":2"#), "{logs}");
    let again = run(&["users", "import-from-redis"], true);
    assert_eq!(again.status.code(), Some(0), "{again:?}");
    let logs = String::from_utf8_lossy(&again.stdout);
    assert!(
        logs.contains(r#""imported":0"#) && logs.contains(r#""already_present":2"#),
        "{logs}"
    );

    // On PostgreSQL now: the same accounts, ids and passwords.
    let app = TestApp::spawn_with(on_database(&db)).await;
    let signed_in = login(&app, &email("grace")).await;
    assert_eq!(signed_in.user_id, grace["id"].as_str().unwrap());
}
