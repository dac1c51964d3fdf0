//! Administration (`/api/v1/admin`) as API.md v1.1 describes it, on every backend: only the
//! `admin` role gets in (403 `forbidden` for anyone else), accounts are listed newest first in
//! cursor pages and searched, disable and enable and the revocation of sessions take effect at
//! once, every action lands in the audit log with its actor, and `server admin grant` gives
//! the role in the database.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

mod support;

use keel_testkit::postgres::PostgresServer;
use keel_testkit::{ServerProcess, TestApp};
use reqwest::{Method, StatusCode};
use secrecy::SecretString;
use serde_json::Value;
use support::*;

const USERS: &str = "/api/v1/admin/users";
const AUDIT: &str = "/api/v1/admin/audit";

/// An app on `backend` whose administrator is `root@example.com` (by configuration).
async fn keel(backend: Backend) -> Keel {
    Keel::spawn(backend, |config| {
        config.admin.emails = vec![email("ROOT")];
    })
    .await
}

async fn get_json(app: &TestApp, path: &str, token: &str) -> (StatusCode, Value) {
    let response = send(bearer(app, Method::GET, path, token)).await;
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn ids(page: &Value) -> Vec<String> {
    page["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|user| user["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn only_administrators_reach_the_admin_routes(backend: Backend) {
    let app = keel(backend).await;
    let root = signup(&app, &email("root")).await;
    let ada = signup(&app, &email("ada")).await;
    let some_id = &ada.user_id;
    for (method, path) in [
        (Method::GET, USERS.to_owned()),
        (Method::GET, format!("{USERS}/{some_id}")),
        (Method::POST, format!("{USERS}/{some_id}/disable")),
        (Method::POST, format!("{USERS}/{some_id}/enable")),
        (Method::DELETE, format!("{USERS}/{some_id}/sessions")),
        (Method::GET, AUDIT.to_owned()),
    ] {
        let response = send(bearer(&app, method.clone(), &path, &ada.access)).await;
        let (status, _, problem) = support::problem(response).await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("forbidden")),
            "{method} {path}"
        );
        let anonymous = send(app.client.request(method.clone(), app.url(&path))).await;
        assert_eq!(
            anonymous.status(),
            StatusCode::UNAUTHORIZED,
            "{method} {path}"
        );
    }
    // The policy answers before the input is read: bad input from a non-admin is still 403.
    for path in [
        format!("{USERS}?cursor=bad&limit=0"),
        format!("{AUDIT}?type=nonsense"),
    ] {
        let response = send(bearer(&app, Method::GET, &path, &ada.access)).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{path}");
    }
    // Nothing changed for the account the refused calls named.
    assert_eq!(me_status(&app, &ada.access).await, StatusCode::OK);
    let (status, page) = get_json(&app, USERS, &root.access).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(
        ids(&page),
        [ada.user_id.clone(), root.user_id.clone()],
        "newest first"
    );
    assert_eq!(page["nextCursor"], Value::Null);
    // The configured address holds the role; the account shows it.
    assert_eq!(page["users"][1]["roles"], serde_json::json!(["admin"]));
    assert_eq!(page["users"][0]["disabled"], false);
}

async fn accounts_come_in_cursor_pages_and_by_search(backend: Backend) {
    let app = keel(backend).await;
    let root = signup(&app, &email("root")).await;
    let mut expected = vec![root.user_id.clone()];
    for who in ["ada.lovelace", "bob", "carol", "dave.lovelace"] {
        expected.push(
            register(&app, &email(who)).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    expected.reverse();
    let mut seen = Vec::new();
    let mut path = format!("{USERS}?limit=2");
    loop {
        let (status, page) = get_json(&app, &path, &root.access).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert!(ids(&page).len() <= 2);
        seen.extend(ids(&page));
        match page["nextCursor"].as_str() {
            Some(cursor) => path = format!("{USERS}?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, expected);
    let (_, found) = get_json(&app, &format!("{USERS}?query=LoveLace"), &root.access).await;
    assert_eq!(ids(&found), [expected[0].clone(), expected[3].clone()]);
    for bad in ["cursor=not-a-cursor", "limit=0", "limit=many"] {
        let response = send(bearer(
            &app,
            Method::GET,
            &format!("{USERS}?{bad}"),
            &root.access,
        ))
        .await;
        let (status, _, problem) = support::problem(response).await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_request")),
            "{bad}"
        );
    }
    // More than 200 is served as 200.
    let (status, _) = get_json(&app, &format!("{USERS}?limit=100000"), &root.access).await;
    assert_eq!(status, StatusCode::OK);
}

async fn an_administrator_disables_enables_and_revokes_with_an_audit_trail(backend: Backend) {
    let app = keel(backend).await;
    let root = signup(&app, &email("root")).await;
    let ada = signup(&app, &email("ada")).await;
    let user = format!("{USERS}/{}", ada.user_id);

    let (status, detail) = get_json(&app, &user, &root.access).await;
    assert_eq!(status, StatusCode::OK, "{detail}");
    assert_eq!(detail["user"]["email"], email("ada"));
    assert_eq!(detail["sessions"].as_array().unwrap().len(), 1, "{detail}");

    let disabled = send(bearer(
        &app,
        Method::POST,
        &format!("{user}/disable"),
        &root.access,
    ))
    .await;
    assert_eq!(disabled.status(), StatusCode::NO_CONTENT);
    assert_eq!(me_status(&app, &ada.access).await, StatusCode::UNAUTHORIZED);
    let refused = login_raw(&app, &email("ada"), PASSWORD).await;
    let (status, _, problem) = support::problem(refused).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("account_disabled"))
    );
    let (_, detail) = get_json(&app, &user, &root.access).await;
    assert_eq!(detail["user"]["disabled"], true);
    assert_eq!(detail["sessions"], serde_json::json!([]));

    let enabled = send(bearer(
        &app,
        Method::POST,
        &format!("{user}/enable"),
        &root.access,
    ))
    .await;
    assert_eq!(enabled.status(), StatusCode::NO_CONTENT);
    let again = support::login(&app, &email("ada")).await;
    let revoked = send(bearer(
        &app,
        Method::DELETE,
        &format!("{user}/sessions"),
        &root.access,
    ))
    .await;
    assert_eq!(revoked.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        me_status(&app, &again.access).await,
        StatusCode::UNAUTHORIZED
    );

    // An administrator cannot lock itself out; unknown accounts are 404.
    let own = send(bearer(
        &app,
        Method::POST,
        &format!("{USERS}/{}/disable", root.user_id),
        &root.access,
    ))
    .await;
    assert_eq!(own.status(), StatusCode::FORBIDDEN);
    assert_eq!(me_status(&app, &root.access).await, StatusCode::OK);
    let nobody = format!("{USERS}/{}", keel_domain::UserId::generate());
    for (method, path) in [
        (Method::GET, nobody.clone()),
        (Method::POST, format!("{nobody}/disable")),
        (Method::DELETE, format!("{nobody}/sessions")),
    ] {
        let response = send(bearer(&app, method.clone(), &path, &root.access)).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{method} {path}");
    }

    // The audit trail of ada's account: newest first, each admin action with its actor.
    let (status, audit) = get_json(
        &app,
        &format!("{AUDIT}?userId={}", ada.user_id),
        &root.access,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{audit}");
    let events = audit["events"].as_array().unwrap();
    let types: Vec<_> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "session.revoked",
            "user.login",
            "user.enabled",
            "user.login_failed",
            "user.disabled",
            "user.login",
            "user.registered"
        ],
        "{audit}"
    );
    for event in &events[..5] {
        if event["type"] != "user.login" && event["type"] != "user.login_failed" {
            assert_eq!(event["actorId"], root.user_id.as_str(), "{event}");
        }
    }
    // By type and time; a page of one walks the same events.
    let (_, disables) = get_json(
        &app,
        &format!("{AUDIT}?userId={}&type=user.disabled", ada.user_id),
        &root.access,
    )
    .await;
    assert_eq!(
        disables["events"].as_array().unwrap().len(),
        1,
        "{disables}"
    );
    let at = events[4]["at"].as_str().unwrap();
    let (_, since) = get_json(
        &app,
        &format!(
            "{AUDIT}?userId={}&since={}",
            ada.user_id,
            at.replace('+', "%2B")
        ),
        &root.access,
    )
    .await;
    assert_eq!(since["events"].as_array().unwrap().len(), 5, "{since}");
    let mut walked = Vec::new();
    let mut path = format!("{AUDIT}?userId={}&limit=1", ada.user_id);
    loop {
        let (_, page) = get_json(&app, &path, &root.access).await;
        walked.extend(
            page["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["id"].clone()),
        );
        match page["nextCursor"].as_str() {
            Some(cursor) => {
                path = format!("{AUDIT}?userId={}&limit=1&cursor={cursor}", ada.user_id)
            }
            None => break,
        }
    }
    let all: Vec<_> = events.iter().map(|e| e["id"].clone()).collect();
    assert_eq!(walked, all);
    for bad in [
        "type=user.exploded",
        "since=yesterday",
        "userId=42",
        "cursor=AAAA",
    ] {
        let response = send(bearer(
            &app,
            Method::GET,
            &format!("{AUDIT}?{bad}"),
            &root.access,
        ))
        .await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
}

on_every_backend!(
    only_administrators_reach_the_admin_routes,
    accounts_come_in_cursor_pages_and_by_search,
    an_administrator_disables_enables_and_revokes_with_an_audit_trail,
);

/// `server admin grant <email>` gives an account the role in the database: the next request
/// of that account reaches the admin routes, and the grant is in the audit log.
#[tokio::test]
async fn server_admin_grant_gives_the_role_in_the_database() {
    let db = PostgresServer::shared().database();
    let url = db.url.clone();
    let app = TestApp::spawn_with(move |config| {
        config.database.url = Some(SecretString::from(url));
    })
    .await;
    let ada = signup(&app, &email("ada")).await;
    let (status, _) = get_json(&app, USERS, &ada.access).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let mut nobody = ServerProcess::spawn_with_args(
        &["admin", "grant", &email("nobody")],
        &[("KEEL_DATABASE__URL", db.url.as_str())],
    );
    let status = nobody
        .wait_exit(std::time::Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(status.code(), Some(1), "{}", nobody.output());

    for _ in 0..2 {
        let mut grant = ServerProcess::spawn_with_args(
            &["admin", "grant", &email("ADA")],
            &[("KEEL_DATABASE__URL", db.url.as_str())],
        );
        let status = grant
            .wait_exit(std::time::Duration::from_secs(20))
            .await
            .unwrap();
        assert_eq!(status.code(), Some(0), "{}", grant.output());
    }
    // The app keeps a copy of each account for up to 5 s (PostgreSQL alone, one instance), so
    // a change made by another process shows within that.
    let page = keel_testkit::eventually(
        "the granted role counts",
        std::time::Duration::from_secs(10),
        || async {
            match get_json(&app, USERS, &ada.access).await {
                (StatusCode::OK, page) => Ok(page),
                other => Err(other),
            }
        },
    )
    .await;
    assert_eq!(
        page["users"][0]["roles"],
        serde_json::json!(["admin"]),
        "granted once"
    );
    let (_, audit) = get_json(
        &app,
        &format!("{AUDIT}?type=user.role_granted"),
        &ada.access,
    )
    .await;
    assert_eq!(audit["events"].as_array().unwrap().len(), 2, "{audit}");

    // Without database.url the command is refused as bad configuration.
    let mut refused = ServerProcess::spawn_with_args(&["admin", "grant", &email("ada")], &[]);
    let status = refused
        .wait_exit(std::time::Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(status.code(), Some(2), "{}", refused.output());
    // Its output is read until the pipe closes, which may come after the exit.
    let named = refused
        .wait_for_line(std::time::Duration::from_secs(5), |line| {
            line.contains("database.url")
        })
        .await;
    assert!(named.is_some(), "{}", refused.output());
}

/// With Redis in front of PostgreSQL, the servers read accounts through a snapshot there; the
/// grant goes through it too, so the role counts on the very next request.
#[tokio::test]
async fn server_admin_grant_counts_at_once_with_redis() {
    let keel = Keel::spawn(Backend::PostgresRedis, |_| {}).await;
    let ada = signup(&keel, &email("ada")).await;
    // Read once, so the account's snapshot is in Redis.
    assert_eq!(me_status(&keel, &ada.access).await, StatusCode::OK);
    let (db, redis) = (
        keel.database.as_ref().unwrap(),
        keel.redis.as_ref().unwrap(),
    );
    let redis_url = redis.url();
    let mut grant = ServerProcess::spawn_with_args(
        &["admin", "grant", &email("ada")],
        &[
            ("KEEL_DATABASE__URL", db.url.as_str()),
            ("KEEL_REDIS__URL", redis_url.as_str()),
        ],
    );
    let status = grant
        .wait_exit(std::time::Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0), "{}", grant.output());
    let (status, page) = get_json(&keel, USERS, &ada.access).await;
    assert_eq!(status, StatusCode::OK, "{page}");
}
