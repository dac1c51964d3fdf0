//! The auth routes of API.md as a client sees them, over a real socket, run on every backend:
//! the in-memory app (`memory::*`), Redis alone (`redis::*`, a private redis-server), PostgreSQL
//! alone (`postgres::*`, a database of the test's own) and both (`postgres_redis::*`). Every
//! test owns its app and its stores.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use keel_auth::{JwtAlgorithm, KeyConfig};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::*;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

on_every_backend!(
    register_creates_an_account_once_per_email,
    one_address_in_any_unicode_spelling_is_one_account_and_invisible_characters_are_refused,
    login_returns_tokens_the_session_and_a_cookie,
    bad_credentials_look_the_same_whether_the_email_exists_or_not,
    me_answers_the_user_and_the_current_session,
    patch_users_me_changes_the_display_name_and_nothing_else,
    every_authenticated_route_refuses_missing_or_bad_credentials,
    sessions_lists_live_sessions_and_marks_the_current_one,
    refresh_rotates_the_refresh_token_and_spends_the_old_one,
    reusing_a_spent_refresh_token_kills_the_whole_session,
    racing_refreshes_inside_the_grace_share_one_successor_and_a_replay_after_it_is_reuse,
    refresh_refuses_what_is_not_a_live_refresh_token,
    logout_kills_the_session_at_once,
    logout_all_kills_every_session_of_the_user,
    deleting_a_session_kills_it_and_only_the_owner_may,
    cookie_auth_reads_freely_but_writes_need_csrf,
    an_invalid_bearer_never_falls_back_to_a_valid_cookie,
    forged_and_broken_access_tokens_are_401,
    the_jwks_publishes_public_eddsa_keys_only,
    an_hs256_app_publishes_no_key,
    login_is_rate_limited_per_client_ip,
    every_answer_of_a_limited_route_carries_the_ratelimit_fields,
    login_is_rate_limited_per_email_across_client_ips,
    guesses_lock_unknown_devices_out_of_an_account_but_not_the_owners_device,
    register_and_refresh_are_rate_limited_per_ip,
);

// ---------------------------------------------------------------------------------------------
// Shapes

fn timestamp(value: &Value, what: &str) -> OffsetDateTime {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("{what} is a string: {value}"));
    assert!(text.ends_with('Z'), "{what} is UTC: {text}");
    OffsetDateTime::parse(text, &Rfc3339).unwrap_or_else(|e| panic!("{what} {text}: {e}"))
}

fn assert_uuid(value: &Value, what: &str) {
    let text = value.as_str().unwrap_or_else(|| panic!("{what}: {value}"));
    uuid::Uuid::parse_str(text).unwrap_or_else(|e| panic!("{what} {text}: {e}"));
}

/// `User`: `{"id", "email", "displayName", "emailVerified", "roles", "createdAt", "updatedAt"}`
/// and nothing secret; a new account is unverified, without roles.
fn assert_user(user: &Value, email: &str) {
    assert_uuid(&user["id"], "user.id");
    assert_eq!(user["email"], email, "{user}");
    assert!(user.get("displayName").is_some(), "{user}");
    assert_eq!(user["emailVerified"], false, "{user}");
    assert_eq!(user["roles"], json!([]), "{user}");
    let created = timestamp(&user["createdAt"], "user.createdAt");
    assert!(
        timestamp(&user["updatedAt"], "user.updatedAt") >= created,
        "{user}"
    );
    let text = user.to_string();
    assert!(
        !text.contains("argon2") && !text.contains(PASSWORD),
        "{user}"
    );
}

/// `Session`: `{"id", "createdAt", "lastSeenAt", "expiresAt", "userAgent"?, "ip"?, "current"}`.
fn assert_session(session: &Value, current: bool) {
    assert_uuid(&session["id"], "session.id");
    let created = timestamp(&session["createdAt"], "session.createdAt");
    let seen = timestamp(&session["lastSeenAt"], "session.lastSeenAt");
    let expires = timestamp(&session["expiresAt"], "session.expiresAt");
    assert!(created <= seen && seen < expires, "{session}");
    assert_eq!(session["current"], current, "{session}");
    if let Some(agent) = session.get("userAgent").filter(|v| !v.is_null()) {
        assert_eq!(agent, USER_AGENT, "{session}");
    }
    if let Some(ip) = session.get("ip").filter(|v| !v.is_null()) {
        assert_eq!(ip, "127.0.0.1", "{session}");
    }
}

/// `Tokens` with `cache-control: no-store`.
fn assert_tokens(login: &Login, email: &str, ttl: u64) {
    let body = &login.body;
    assert_eq!(login.headers["cache-control"], "no-store");
    assert_eq!(body["tokenType"], "Bearer");
    assert_expires_in(body, ttl);
    assert_eq!(login.access.split('.').count(), 3, "a JWT");
    assert!(login.refresh.len() >= 32, "an opaque refresh token");
    assert!(
        !login.refresh.contains('.'),
        "the refresh token is not a JWT"
    );
    assert_user(&body["user"], email);
    assert_session(&body["session"], true);
}

/// `expiresIn` is the time left on the access token: its TTL, give or take the second that
/// `iat` (whole seconds) was truncated by.
fn assert_expires_in(body: &Value, ttl: u64) {
    let expires_in = body["expiresIn"]
        .as_u64()
        .unwrap_or_else(|| panic!("{body}"));
    assert!(
        (ttl - 1..=ttl).contains(&expires_in),
        "expiresIn {expires_in}: {body}"
    );
    let exp = jwt_part(body["accessToken"].as_str().unwrap(), 1)["exp"]
        .as_i64()
        .unwrap();
    let left = exp - now();
    assert!(
        (left - i64::try_from(expires_in).unwrap()).abs() <= 2,
        "exp in {left} s: {body}"
    );
}

async fn json_of(response: reqwest::Response, expected: StatusCode, what: &str) -> Value {
    let status = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(status, expected, "{what}: {text}");
    serde_json::from_str(&text).unwrap()
}

fn now() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

// ---------------------------------------------------------------------------------------------
// Register and login

async fn one_address_in_any_unicode_spelling_is_one_account_and_invisible_characters_are_refused(
    backend: Backend,
) {
    let keel = Keel::spawn(backend, |_| {}).await;
    // Typed decomposed (`e` + a combining acute accent): kept, and shown, composed.
    let response = keel
        .post_json(
            REGISTER,
            &json!({"email": "Jose\u{301}@Example.com", "password": PASSWORD, "displayName": "Jose\u{301}"}),
        )
        .await;
    let body = json_of(response, StatusCode::CREATED, "register").await;
    assert_user(&body["user"], "Jos\u{e9}@Example.com");
    assert_eq!(body["user"]["displayName"], "Jos\u{e9}");
    for again in [
        "jos\u{e9}@example.com",
        "JOS\u{c9}@EXAMPLE.COM",
        "JOSE\u{301}@example.com",
    ] {
        let response = keel
            .post_json(REGISTER, &json!({"email": again, "password": PASSWORD}))
            .await;
        expect_problem(response, StatusCode::CONFLICT, "email_taken", again).await;
    }
    for spelling in ["jos\u{e9}@example.com", "JOSE\u{301}@EXAMPLE.COM"] {
        let response = login_raw(&keel, spelling, PASSWORD).await;
        assert_eq!(response.status(), StatusCode::OK, "login as {spelling:?}");
    }

    for (body, field) in [
        (
            json!({"email": "rita\u{200B}@example.com", "password": PASSWORD}),
            "email",
        ),
        (
            json!({"email": "rita@exa\u{2060}mple.com", "password": PASSWORD}),
            "email",
        ),
        (
            json!({"email": "rita@example.com", "password": PASSWORD, "displayName": "\u{200B}\u{200D}"}),
            "displayName",
        ),
        (
            json!({"email": "rita@example.com", "password": PASSWORD, "displayName": "Ri\u{200B}ta"}),
            "displayName",
        ),
    ] {
        let problem = expect_problem(
            keel.post_json(REGISTER, &body).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            field,
        )
        .await;
        assert_eq!(problem["errors"][0]["field"], field, "{problem}");
        assert_eq!(
            problem["errors"][0]["code"], "invisible_characters",
            "{problem}"
        );
    }
    // The visible address is free; an emoji name with its joiner is a name.
    let response = keel
        .post_json(
            REGISTER,
            &json!({"email": "rita@example.com", "password": PASSWORD, "displayName": "\u{1F469}\u{200D}\u{1F4BB} Rita"}),
        )
        .await;
    json_of(response, StatusCode::CREATED, "the visible address").await;
}

async fn register_creates_an_account_once_per_email(backend: Backend) {
    // More attempts than the default registrations per IP (10 an hour).
    let keel = Keel::spawn(backend, |config| {
        config.rate_limit.quotas.register_ip.limit = 100;
    })
    .await;
    let response = keel
        .post_json(
            REGISTER,
            &json!({"email": "Ada@Example.com", "password": PASSWORD, "displayName": "Ada"}),
        )
        .await;
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body = json_of(response, StatusCode::CREATED, "register").await;
    assert_user(&body["user"], "Ada@Example.com");
    assert_eq!(body["user"]["displayName"], "Ada");

    // The same address in other letter cases is the same account.
    for again in ["ada@example.com", "ADA@EXAMPLE.COM", " ada@example.com "] {
        let response = keel
            .post_json(
                REGISTER,
                &json!({"email": again, "password": "another password"}),
            )
            .await;
        expect_problem(response, StatusCode::CONFLICT, "email_taken", again).await;
    }
    for (body, field) in [
        (
            json!({"email": "no-at-sign", "password": PASSWORD}),
            "email",
        ),
        (
            json!({"email": "b@example.com", "password": "7 chars"}),
            "password",
        ),
        (
            json!({"email": "b@example.com", "password": "x".repeat(129)}),
            "password",
        ),
        (
            json!({"email": "b@example.com", "password": "Password1"}),
            "password",
        ),
    ] {
        let problem = expect_problem(
            keel.post_json(REGISTER, &body).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            field,
        )
        .await;
        assert_eq!(problem["errors"][0]["field"], field, "{problem}");
    }
    // One of the 10,000 most common passwords, in any case, is refused with its own code.
    let problem = expect_problem(
        keel.post_json(
            REGISTER,
            &json!({"email": "c@example.com", "password": "Password1"}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        "a common password",
    )
    .await;
    assert_eq!(problem["errors"][0]["code"], "too_common", "{problem}");
    // 8 and 128 characters are fine, counted as characters, not bytes.
    for (email, password) in [
        ("eight@example.com", "zq8!kd2#".to_owned()),
        ("long@example.com", "é".repeat(128)),
    ] {
        let response = keel
            .post_json(REGISTER, &json!({"email": email, "password": password}))
            .await;
        assert_eq!(response.status(), StatusCode::CREATED, "{email}");
    }
}

async fn login_returns_tokens_the_session_and_a_cookie(backend: Backend) {
    let keel = Keel::spawn(backend, |_| {}).await;
    let user = register(&keel, "Ada@Example.com").await;
    // Emails match whatever their case.
    let login = login(&keel, "ada@EXAMPLE.com").await;
    assert_tokens(&login, "Ada@Example.com", 900);
    assert_eq!(login.body["user"], user, "the same user as registered");
    assert_eq!(login.body["session"]["userAgent"], USER_AGENT);

    // The access token: a JWT with a kid, naming the user and the session.
    let header = jwt_part(&login.access, 0);
    assert_eq!(header["alg"], "EdDSA", "{header}");
    assert!(
        header["kid"].as_str().is_some_and(|k| !k.is_empty()),
        "{header}"
    );
    let claims = jwt_part(&login.access, 1);
    assert_eq!(claims["sub"], login.user_id, "{claims}");
    assert_eq!(claims["sid"], login.session_id, "{claims}");
    for claim in ["iss", "aud", "jti"] {
        assert!(claims[claim].is_string(), "{claim}: {claims}");
    }
    let (iat, exp) = (
        claims["iat"].as_i64().unwrap(),
        claims["exp"].as_i64().unwrap(),
    );
    assert_eq!(exp - iat, 900, "{claims}");
    assert!((iat - now()).abs() <= 5, "{claims}");

    // The session cookie, development flavour (plain http): HttpOnly, Lax, Path=/, not Secure.
    let line = set_cookie(&login.headers, COOKIE_NAME).unwrap();
    let attributes: Vec<String> = line
        .split(';')
        .skip(1)
        .map(|a| a.trim().to_ascii_lowercase())
        .collect();
    for expected in ["httponly", "samesite=lax", "path=/"] {
        assert!(
            attributes.iter().any(|a| a == expected),
            "{expected}: {line}"
        );
    }
    assert!(!attributes.iter().any(|a| a == "secure"), "{line}");
    assert!(
        !attributes.iter().any(|a| a.starts_with("domain")),
        "{line}"
    );
    assert!(
        !line.contains(&login.session_id),
        "the cookie is opaque: {line}"
    );

    // Two logins are two sessions with different tokens.
    let second = support::login(&keel, "ada@example.com").await;
    assert_ne!(second.session_id, login.session_id);
    assert_ne!(second.refresh, login.refresh);
    assert_ne!(second.cookie, login.cookie);
}

async fn bad_credentials_look_the_same_whether_the_email_exists_or_not(backend: Backend) {
    let keel = Keel::spawn(backend, |_| {}).await;
    register(&keel, &email("ada")).await;

    let wrong_password = login_raw(&keel, &email("ada"), "not the password").await;
    assert!(wrong_password.headers().get("set-cookie").is_none());
    let (status, headers, wrong_body) = problem(wrong_password).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong_body["code"], "invalid_credentials", "{wrong_body}");

    for unknown in [email("nobody"), email("ADA2"), "not-an-email".to_owned()] {
        let response = login_raw(&keel, &unknown, "not the password").await;
        assert!(response.headers().get("set-cookie").is_none());
        let (status_u, headers_u, body_u) = problem(response).await;
        assert_eq!(status_u, status, "{unknown}");
        assert_eq!(
            headers_u.get("www-authenticate"),
            headers.get("www-authenticate"),
            "{unknown}"
        );
        assert_eq!(
            without_request_id(body_u),
            without_request_id(wrong_body.clone()),
            "{unknown}: the body must not tell whether the account exists"
        );
    }
    // A missing field is bad input, not bad credentials.
    let response = keel.post_json(LOGIN, &json!({"email": email("ada")})).await;
    expect_problem(
        response,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "no password",
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// Authenticated routes

async fn me_answers_the_user_and_the_current_session(backend: Backend) {
    let keel = Keel::spawn(backend, |_| {}).await;
    let login = signup(&keel, &email("ada")).await;
    let response = me(&keel, &login.access).await;
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body = json_of(response, StatusCode::OK, "me").await;
    assert_user(&body["user"], &email("ada"));
    assert_eq!(body["user"]["id"], login.user_id);
    assert_eq!(body["session"]["id"], login.session_id);
    assert_session(&body["session"], true);

    // No credentials at all: 401 `unauthorized`.
    let code = expect_401(keel.get(ME).await, "no credentials").await;
    assert_eq!(code, "unauthorized");
}

async fn every_authenticated_route_refuses_missing_or_bad_credentials(backend: Backend) {
    let keel = Keel::spawn(backend, |_| {}).await;
    let login = signup(&keel, &email("ada")).await;
    let routes = [
        (Method::POST, LOGOUT.to_owned()),
        (Method::POST, LOGOUT_ALL.to_owned()),
        (Method::GET, ME.to_owned()),
        (Method::GET, SESSIONS.to_owned()),
        (Method::DELETE, format!("{SESSIONS}/{}", login.session_id)),
    ];
    let garbage = [
        "garbage".to_owned(),
        "a.b.c".to_owned(),
        login.refresh.clone(),
        format!("{}x", login.access),
    ];
    for (method, path) in &routes {
        let bare = send(keel.client.request(method.clone(), keel.url(path))).await;
        expect_401(bare, &format!("{method} {path} without credentials")).await;
        for token in &garbage {
            let response = send(bearer(&keel, method.clone(), path, token)).await;
            expect_401(response, &format!("{method} {path} with {token}")).await;
        }
        // A Bearer header without a token.
        let empty = send(
            keel.client
                .request(method.clone(), keel.url(path))
                .header("authorization", "Bearer "),
        )
        .await;
        expect_401(empty, &format!("{method} {path} with an empty Bearer")).await;
    }
    // None of that hurt the real session.
    assert_eq!(me_status(&keel, &login.access).await, StatusCode::OK);
}

async fn sessions_lists_live_sessions_and_marks_the_current_one(backend: Backend) {
    let keel = Keel::spawn(backend, |_| {}).await;
    let a = signup(&keel, &email("ada")).await;
    let b = login(&keel, &email("ada")).await;
    let other = signup(&keel, &email("bob")).await;

    for (me_login, other_login) in [(&a, &b), (&b, &a)] {
        let response = send(bearer(&keel, Method::GET, SESSIONS, &me_login.access)).await;
        let body = json_of(response, StatusCode::OK, "sessions").await;
        let sessions = body["sessions"].as_array().unwrap();
        let ids: HashSet<&str> = sessions.iter().map(|s| s["id"].as_str().unwrap()).collect();
        assert_eq!(
            ids,
            HashSet::from([a.session_id.as_str(), b.session_id.as_str()]),
            "only the user's own sessions: {body}"
        );
        for session in sessions {
            let current = session["id"] == me_login.session_id.as_str();
            assert_session(session, current);
            if !current {
                assert_eq!(session["id"], other_login.session_id.as_str());
            }
        }
    }
    let response = send(bearer(&keel, Method::GET, SESSIONS, &other.access)).await;
    let body = json_of(response, StatusCode::OK, "sessions").await;
    assert_eq!(body["sessions"].as_array().unwrap().len(), 1, "{body}");
}

// ---------------------------------------------------------------------------------------------
// Refresh

async fn refresh_rotates_the_refresh_token_and_spends_the_old_one(backend: Backend) {
    let keel = Keel::spawn(backend, |_| {}).await;
    let first = signup(&keel, &email("ada")).await;

    let response = refresh(&keel, &first.refresh).await;
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body = json_of(response, StatusCode::OK, "refresh").await;
    assert_eq!(body["tokenType"], "Bearer");
    assert_expires_in(&body, 900);
    assert_user(&body["user"], &email("ada"));
    assert_session(&body["session"], true);
    assert_eq!(body["session"]["id"], first.session_id, "the same session");
    let access2 = body["accessToken"].as_str().unwrap().to_owned();
    let refresh2 = body["refreshToken"].as_str().unwrap().to_owned();
    assert_ne!(refresh2, first.refresh, "a new refresh token");
    assert_ne!(access2, first.access, "a new access token");
    assert_eq!(jwt_part(&access2, 1)["sid"], first.session_id);
    assert_eq!(me_status(&keel, &access2).await, StatusCode::OK);
    assert_eq!(
        me_status(&keel, &first.access).await,
        StatusCode::OK,
        "refreshing does not end the session's other access tokens"
    );

    // The new one rotates again; the chain goes on.
    let body = json_of(refresh(&keel, &refresh2).await, StatusCode::OK, "refresh 2").await;
    let refresh3 = body["refreshToken"].as_str().unwrap();
    assert!(refresh3 != refresh2 && refresh3 != first.refresh);
}

async fn racing_refreshes_inside_the_grace_share_one_successor_and_a_replay_after_it_is_reuse(
    backend: Backend,
) {
    // Short, so that the test can also wait for the window to close; long enough for twenty
    // requests on a loaded machine.
    const GRACE: Duration = Duration::from_secs(5);
    let keel = Keel::spawn(backend, |config| config.session.refresh_grace = GRACE).await;
    let first = signup(&keel, &email("ada")).await;

    // Twenty tabs wake up at once with the same refresh token.
    let started = Instant::now();
    let answers =
        futures_util::future::join_all((0..20).map(|_| refresh(&keel, &first.refresh))).await;
    // The rotation happened before the first answer was written, so before this instant.
    let answered = Instant::now();
    let mut successors = HashSet::new();
    let mut accesses = Vec::new();
    for response in answers {
        let body = json_of(response, StatusCode::OK, "a racing refresh").await;
        assert_eq!(body["session"]["id"], first.session_id, "{body}");
        successors.insert(body["refreshToken"].as_str().unwrap().to_owned());
        accesses.push(body["accessToken"].as_str().unwrap().to_owned());
    }
    assert_eq!(successors.len(), 1, "one successor for all: {successors:?}");
    let successor = successors.into_iter().next().unwrap();
    assert_ne!(successor, first.refresh);
    for access in &accesses {
        assert_eq!(me_status(&keel, access).await, StatusCode::OK);
    }
    assert!(
        started.elapsed() < GRACE,
        "the machine is too slow for this test: the race took {:?}",
        started.elapsed()
    );

    // The window itself is what this waits for: once it has closed, the spent token is reuse.
    tokio::time::sleep_until((answered + GRACE).into()).await;
    let code = expect_401(refresh(&keel, &first.refresh).await, "after the grace").await;
    assert_eq!(code, "token_reused");
    assert_eq!(
        me_status(&keel, &accesses[0]).await,
        StatusCode::UNAUTHORIZED
    );
    expect_401(
        refresh(&keel, &successor).await,
        "the successor of a revoked session",
    )
    .await;
}

async fn reusing_a_spent_refresh_token_kills_the_whole_session(backend: Backend) {
    let keel = Keel::spawn(backend, |_| {}).await;
    let first = signup(&keel, &email("ada")).await;
    let bystander = login(&keel, &email("ada")).await;
    let body = json_of(
        refresh(&keel, &first.refresh).await,
        StatusCode::OK,
        "refresh",
    )
    .await;
    let access2 = body["accessToken"].as_str().unwrap().to_owned();
    let refresh2 = body["refreshToken"].as_str().unwrap().to_owned();
    let body = json_of(refresh(&keel, &refresh2).await, StatusCode::OK, "refresh 2").await;
    let refresh3 = body["refreshToken"].as_str().unwrap().to_owned();

    // A token spent before the last rotation comes back (a thief): the session dies. (The one
    // spent by the last rotation would be inside the refresh grace; see the race below.)
    let code = expect_401(refresh(&keel, &first.refresh).await, "reuse").await;
    assert_eq!(code, "token_reused");

    assert_eq!(
        me_status(&keel, &first.access).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(me_status(&keel, &access2).await, StatusCode::UNAUTHORIZED);
    expect_401(refresh(&keel, &refresh3).await, "the newest refresh token").await;
    let cookie = send(with_cookie(&keel, Method::GET, ME, &first.cookie)).await;
    expect_401(cookie, "the session cookie").await;
    // Other sessions of the same user live on.
    assert_eq!(me_status(&keel, &bystander.access).await, StatusCode::OK);
    assert_eq!(
        refresh(&keel, &bystander.refresh).await.status(),
        StatusCode::OK
    );
}

async fn refresh_refuses_what_is_not_a_live_refresh_token(backend: Backend) {
    let keel = Keel::spawn(backend, |_| {}).await;
    let login = signup(&keel, &email("ada")).await;
    let long = "r".repeat(10_000);
    for token in [
        "garbage",
        "",
        login.access.as_str(),
        &login.refresh[..login.refresh.len() - 1],
        long.as_str(),
    ] {
        let code = expect_401(refresh(&keel, token).await, token).await;
        assert_eq!(code, "invalid_token", "{token}");
    }
    let missing = keel.post_json(REFRESH, &json!({})).await;
    expect_problem(
        missing,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "no field",
    )
    .await;
    // None of it spent the real token.
    assert_eq!(
        refresh(&keel, &login.refresh).await.status(),
        StatusCode::OK
    );
}

// ---------------------------------------------------------------------------------------------
// Logout and revocation

async fn logout_kills_the_session_at_once(backend: Backend) {
    let keel = Keel::spawn(backend, |_| {}).await;
    let login = signup(&keel, &email("ada")).await;
    let other = support::login(&keel, &email("ada")).await;
    assert_eq!(me_status(&keel, &login.access).await, StatusCode::OK);

    let response = send(bearer(&keel, Method::POST, LOGOUT, &login.access)).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(response.text().await.unwrap().is_empty());

    // At once, not at the token's exp.
    let code = expect_401(me(&keel, &login.access).await, "access token after logout").await;
    assert_ne!(code, "invalid_credentials");
    expect_401(
        refresh(&keel, &login.refresh).await,
        "refresh token after logout",
    )
    .await;
    let cookie = send(with_cookie(&keel, Method::GET, ME, &login.cookie)).await;
    expect_401(cookie, "cookie after logout").await;
    let again = send(bearer(&keel, Method::POST, LOGOUT, &login.access)).await;
    expect_401(again, "second logout").await;
    // Only that session.
    assert_eq!(me_status(&keel, &other.access).await, StatusCode::OK);
}

async fn logout_all_kills_every_session_of_the_user(backend: Backend) {
    let keel = Keel::spawn(backend, |_| {}).await;
    let a = signup(&keel, &email("ada")).await;
    let b = login(&keel, &email("ada")).await;
    let bob = signup(&keel, &email("bob")).await;

    let response = send(bearer(&keel, Method::POST, LOGOUT_ALL, &b.access)).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    for (name, login) in [("a", &a), ("b", &b)] {
        expect_401(me(&keel, &login.access).await, name).await;
        expect_401(refresh(&keel, &login.refresh).await, name).await;
        let cookie = send(with_cookie(&keel, Method::GET, ME, &login.cookie)).await;
        expect_401(cookie, name).await;
    }
    assert_eq!(
        me_status(&keel, &bob.access).await,
        StatusCode::OK,
        "other users live on"
    );
    // And the user can sign in again.
    let again = login(&keel, &email("ada")).await;
    assert_eq!(me_status(&keel, &again.access).await, StatusCode::OK);
}

async fn deleting_a_session_kills_it_and_only_the_owner_may(backend: Backend) {
    let keel = Keel::spawn(backend, |_| {}).await;
    let a = signup(&keel, &email("ada")).await;
    let b = login(&keel, &email("ada")).await;
    let bob = signup(&keel, &email("bob")).await;

    // Another user's session: 404, and it lives on.
    let path = format!("{SESSIONS}/{}", bob.session_id);
    let response = send(bearer(&keel, Method::DELETE, &path, &a.access)).await;
    expect_problem(
        response,
        StatusCode::NOT_FOUND,
        "not_found",
        "bob's session",
    )
    .await;
    assert_eq!(me_status(&keel, &bob.access).await, StatusCode::OK);
    // A session that never existed: the same 404.
    let path = format!("{SESSIONS}/{}", uuid::Uuid::new_v4());
    let response = send(bearer(&keel, Method::DELETE, &path, &a.access)).await;
    expect_problem(
        response,
        StatusCode::NOT_FOUND,
        "not_found",
        "unknown session",
    )
    .await;
    // Not an id at all: bad input, never a 500.
    let path = format!("{SESSIONS}/not-a-uuid");
    let status = send(bearer(&keel, Method::DELETE, &path, &a.access))
        .await
        .status();
    assert!(
        status == StatusCode::BAD_REQUEST || status == StatusCode::NOT_FOUND,
        "{status}"
    );

    // One's own other session: 204, and it is dead.
    let path = format!("{SESSIONS}/{}", b.session_id);
    let response = send(bearer(&keel, Method::DELETE, &path, &a.access)).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    expect_401(me(&keel, &b.access).await, "deleted session's access token").await;
    expect_401(
        refresh(&keel, &b.refresh).await,
        "deleted session's refresh token",
    )
    .await;
    assert_eq!(me_status(&keel, &a.access).await, StatusCode::OK);
    let listed = json_of(
        send(bearer(&keel, Method::GET, SESSIONS, &a.access)).await,
        StatusCode::OK,
        "sessions",
    )
    .await;
    let ids: Vec<&str> = listed["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [a.session_id.as_str()]);
    // Deleting it again: 404.
    let response = send(bearer(&keel, Method::DELETE, &path, &a.access)).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    // Deleting the current session works like a logout.
    let path = format!("{SESSIONS}/{}", a.session_id);
    let response = send(bearer(&keel, Method::DELETE, &path, &a.access)).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    expect_401(me(&keel, &a.access).await, "own deleted session").await;
}

// ---------------------------------------------------------------------------------------------
// Cookie authentication and CSRF

const APP_ORIGIN: &str = "https://app.example";

const USERS_ME: &str = "/api/v1/users/me";

async fn patch_users_me_changes_the_display_name_and_nothing_else(backend: Backend) {
    let keel = Keel::spawn(backend, |config| {
        config.cors.allowed_origins = vec![APP_ORIGIN.to_owned()];
    })
    .await;
    let ada = signup(&keel, &email("ada")).await;
    let before = ada.body["user"].clone();

    let response = bearer(&keel, Method::PATCH, USERS_ME, &ada.access)
        .json(&json!({"displayName": "  Ada Lovelace  "}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body = json_of(response, StatusCode::OK, "PATCH /users/me").await;
    let user = &body["user"];
    assert_user(user, &email("ada"));
    assert_eq!(user["displayName"], "Ada Lovelace", "trimmed: {user}");
    assert_eq!(user["id"], before["id"]);
    assert_eq!(user["createdAt"], before["createdAt"]);
    assert!(
        timestamp(&user["updatedAt"], "updatedAt") > timestamp(&before["updatedAt"], "before"),
        "{user} after {before}"
    );
    // Every instance and every later read sees it, the session lives on.
    let me = json_of(
        send(bearer(&keel, Method::GET, ME, &ada.access)).await,
        StatusCode::OK,
        "GET /me",
    )
    .await;
    assert_eq!(me["user"], *user);

    // A name the policy refuses: 422 naming the field, and nothing changes.
    for bad in [String::new(), "x".repeat(101), "Ada\u{200b}".to_owned()] {
        let response = bearer(&keel, Method::PATCH, USERS_ME, &ada.access)
            .json(&json!({"displayName": bad}))
            .send()
            .await
            .unwrap();
        let problem = expect_problem(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "a bad display name",
        )
        .await;
        assert_eq!(problem["errors"][0]["field"], "displayName", "{problem}");
    }
    // A body without the field, and no credentials at all.
    let response = bearer(&keel, Method::PATCH, USERS_ME, &ada.access)
        .json(&json!({"display_name": "snake"}))
        .send()
        .await
        .unwrap();
    expect_problem(
        response,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "no field",
    )
    .await;
    let response = keel
        .client
        .patch(keel.url(USERS_ME))
        .json(&json!({"displayName": "Eve"}))
        .send()
        .await
        .unwrap();
    expect_401(response, "no credentials").await;
    // By cookie it needs the CSRF proof, like every unsafe request.
    let refused = with_cookie(&keel, Method::PATCH, USERS_ME, &ada.cookie)
        .json(&json!({"displayName": "Eve"}))
        .send()
        .await
        .unwrap();
    expect_problem(
        refused,
        StatusCode::FORBIDDEN,
        "csrf_failed",
        "PATCH by cookie",
    )
    .await;
    let allowed = with_cookie(&keel, Method::PATCH, USERS_ME, &ada.cookie)
        .header("origin", APP_ORIGIN)
        .header("x-csrf-token", ada.csrf.as_deref().unwrap())
        .json(&json!({"displayName": "Ada by cookie"}))
        .send()
        .await
        .unwrap();
    let body = json_of(allowed, StatusCode::OK, "PATCH by cookie with CSRF").await;
    assert_eq!(body["user"]["displayName"], "Ada by cookie");
    // Other methods are 405.
    let response = send(bearer(&keel, Method::PUT, USERS_ME, &ada.access)).await;
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers()["allow"], "PATCH, DELETE");
}

async fn cookie_auth_reads_freely_but_writes_need_csrf(backend: Backend) {
    let keel = Keel::spawn(backend, |config| {
        config.cors.allowed_origins = vec![APP_ORIGIN.to_owned()];
    })
    .await;
    let a = signup(&keel, &email("ada")).await;
    let b = login(&keel, &email("ada")).await;
    let cookie = a.cookie.as_str();

    // Safe requests need nothing but the cookie.
    let body = json_of(
        send(with_cookie(&keel, Method::GET, ME, cookie)).await,
        StatusCode::OK,
        "GET /me by cookie",
    )
    .await;
    assert_eq!(body["session"]["id"], a.session_id);
    assert_eq!(body["session"]["current"], true);
    let listed = send(with_cookie(&keel, Method::GET, SESSIONS, cookie)).await;
    assert_eq!(listed.status(), StatusCode::OK);

    // Unsafe requests without proof of origin: 403 `csrf_failed`, and nothing happens.
    let logout = || with_cookie(&keel, Method::POST, LOGOUT, cookie);
    let delete_b = || {
        with_cookie(
            &keel,
            Method::DELETE,
            &format!("{SESSIONS}/{}", b.session_id),
            cookie,
        )
    };
    let refused = [
        ("no Origin, no token", logout()),
        (
            "a foreign Origin",
            logout().header("origin", "https://evil.example"),
        ),
        ("Origin: null", logout().header("origin", "null")),
        (
            "a look-alike Origin",
            logout().header("origin", "https://app.example.evil.example"),
        ),
        (
            "the allowed host over http",
            logout().header("origin", "http://app.example"),
        ),
        (
            "a wrong token",
            logout().header("x-csrf-token", "not-the-token"),
        ),
        (
            "a cross-site fetch",
            logout().header("sec-fetch-site", "cross-site"),
        ),
        ("no Origin on DELETE", delete_b()),
        (
            "logout-all without proof",
            with_cookie(&keel, Method::POST, LOGOUT_ALL, cookie),
        ),
    ];
    for (what, request) in refused {
        expect_problem(
            send(request).await,
            StatusCode::FORBIDDEN,
            "csrf_failed",
            what,
        )
        .await;
    }
    assert_eq!(
        send(with_cookie(&keel, Method::GET, ME, cookie))
            .await
            .status(),
        StatusCode::OK,
        "the refused requests changed nothing"
    );
    assert_eq!(me_status(&keel, &b.access).await, StatusCode::OK);

    // The double-submit token passes.
    let csrf = a
        .csrf
        .clone()
        .expect("login hands the client its CSRF token (x-csrf-token header or csrfToken)");
    let response = send(delete_b().header("x-csrf-token", &csrf)).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT, "double submit");
    assert_eq!(me_status(&keel, &b.access).await, StatusCode::UNAUTHORIZED);

    // An allowed Origin passes; logout ends the session and clears the cookie.
    let response = send(logout().header("origin", APP_ORIGIN)).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT, "allowed origin");
    let cleared = set_cookie(response.headers(), COOKIE_NAME).expect("logout clears the cookie");
    let lower = cleared.to_ascii_lowercase();
    assert!(
        lower.starts_with(&format!("{COOKIE_NAME}=;"))
            && (lower.contains("max-age=0") || lower.contains("expires=thu, 01 jan 1970")),
        "{cleared}"
    );
    expect_401(
        send(with_cookie(&keel, Method::GET, ME, cookie)).await,
        "cookie after logout",
    )
    .await;
    expect_401(
        me(&keel, &a.access).await,
        "access token after cookie logout",
    )
    .await;
}

async fn an_invalid_bearer_never_falls_back_to_a_valid_cookie(backend: Backend) {
    let keel = Keel::spawn(backend, |_| {}).await;
    let a = signup(&keel, &email("ada")).await;
    let dead = login(&keel, &email("ada")).await;
    let response = send(bearer(&keel, Method::POST, LOGOUT, &dead.access)).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    for token in ["garbage", dead.access.as_str(), a.refresh.as_str()] {
        let response =
            send(bearer(&keel, Method::GET, ME, token).header("cookie", a.cookie.as_str())).await;
        expect_401(response, token).await;
    }
    // The cookie alone is fine.
    let response = send(with_cookie(&keel, Method::GET, ME, &a.cookie)).await;
    assert_eq!(response.status(), StatusCode::OK);
}

// ---------------------------------------------------------------------------------------------
// JWT

const HS_SECRET: &str = "e2e-only-hs256-secret-0123456789-abcdefghijklmnop";
const HS_KID: &str = "e2e-hs";
const ISSUER: &str = "keel-e2e";
const AUDIENCE: &str = "keel-e2e-api";

async fn hs256_app(backend: Backend) -> Keel {
    // jsonwebtoken needs its crypto provider before the test signs anything itself.
    let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
    Keel::spawn(backend, |config| {
        let jwt = &mut config.auth.jwt;
        jwt.algorithm = JwtAlgorithm::HS256;
        jwt.keys = vec![KeyConfig::secret(HS_KID, HS_SECRET)];
        jwt.issuer = ISSUER.to_owned();
        jwt.audience = AUDIENCE.to_owned();
        jwt.leeway_seconds = 0;
    })
    .await
}

fn sign(
    alg: Algorithm,
    typ: Option<&str>,
    kid: Option<&str>,
    claims: &Value,
    secret: &str,
) -> String {
    let mut header = Header::new(alg);
    header.typ = typ.map(str::to_owned);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(
        &header,
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

async fn forged_and_broken_access_tokens_are_401(backend: Backend) {
    let keel = hs256_app(backend).await;
    let login = signup(&keel, &email("ada")).await;
    assert_eq!(jwt_part(&login.access, 0)["alg"], "HS256");
    assert_eq!(jwt_part(&login.access, 0)["kid"], HS_KID);
    let real = jwt_part(&login.access, 1);
    assert_eq!(real["iss"], ISSUER);
    assert_eq!(real["aud"], AUDIENCE);

    // What a fresh, honest token of this session looks like: the test knows the secret, so a
    // token it signs the way Keel does must pass. Every case below changes one thing.
    let t = now();
    let claims = json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": real["sub"], "sid": real["sid"],
        "jti": "e2e-control", "iat": t, "exp": t + 600,
    });
    let good = sign(
        Algorithm::HS256,
        Some("at+jwt"),
        Some(HS_KID),
        &claims,
        HS_SECRET,
    );
    assert_eq!(
        me_status(&keel, &good).await,
        StatusCode::OK,
        "the control token passes"
    );

    let with = |key: &str, value: Value| {
        let mut claims = claims.clone();
        claims[key] = value;
        claims["jti"] = json!(format!("e2e-{key}"));
        claims
    };
    let without = |key: &str| {
        let mut claims = claims.clone();
        claims.as_object_mut().unwrap().remove(key);
        claims
    };
    let hs = |claims: &Value| {
        sign(
            Algorithm::HS256,
            Some("at+jwt"),
            Some(HS_KID),
            claims,
            HS_SECRET,
        )
    };

    let alg_none = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "typ": "at+jwt", "kid": HS_KID})
            .to_string()
            .as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let mut tampered = good.clone();
    tampered.pop();
    tampered.push(if good.ends_with('A') { 'B' } else { 'A' });
    let swapped_payload = {
        let parts: Vec<&str> = good.split('.').collect();
        let other = with("sub", json!(uuid::Uuid::new_v4().to_string()));
        format!(
            "{}.{}.{}",
            parts[0],
            b64(other.to_string().as_bytes()),
            parts[2]
        )
    };

    let cases: Vec<(&str, String)> = vec![
        ("alg: none", alg_none),
        (
            "alg: none without kid",
            format!(
                "{}.{}.",
                b64(br#"{"alg":"none","typ":"at+jwt"}"#),
                b64(claims.to_string().as_bytes())
            ),
        ),
        (
            "a wrong signature (another secret)",
            sign(
                Algorithm::HS256,
                Some("at+jwt"),
                Some(HS_KID),
                &claims,
                "another-secret-that-is-also-long-enough-0123",
            ),
        ),
        ("a damaged signature", tampered),
        ("a payload swapped under a valid signature", swapped_payload),
        (
            "another algorithm with the same secret (HS384)",
            sign(
                Algorithm::HS384,
                Some("at+jwt"),
                Some(HS_KID),
                &claims,
                HS_SECRET,
            ),
        ),
        (
            "an unknown kid",
            sign(
                Algorithm::HS256,
                Some("at+jwt"),
                Some("no-such-kid"),
                &claims,
                HS_SECRET,
            ),
        ),
        (
            "no kid",
            sign(Algorithm::HS256, Some("at+jwt"), None, &claims, HS_SECRET),
        ),
        (
            "a wrong typ",
            sign(
                Algorithm::HS256,
                Some("JWT"),
                Some(HS_KID),
                &claims,
                HS_SECRET,
            ),
        ),
        ("a wrong iss", hs(&with("iss", json!("someone-else")))),
        ("a wrong aud", hs(&with("aud", json!("another-api")))),
        (
            "an aud list without ours",
            hs(&with("aud", json!(["another-api"]))),
        ),
        ("no sid", hs(&without("sid"))),
        ("no sub", hs(&without("sub"))),
        ("no exp", hs(&without("exp"))),
        ("no iss", hs(&without("iss"))),
        ("no aud", hs(&without("aud"))),
        (
            "expired a few seconds ago",
            hs(&{
                let mut c = with("exp", json!(t - 5));
                c["iat"] = json!(t - 605);
                c
            }),
        ),
        (
            "a sid of no session",
            hs(&with("sid", json!(uuid::Uuid::new_v4().to_string()))),
        ),
        (
            "a sub that does not own the sid",
            hs(&with("sub", json!(uuid::Uuid::new_v4().to_string()))),
        ),
        ("the refresh token", login.refresh.clone()),
    ];
    for (what, token) in cases {
        expect_401(me(&keel, &token).await, what).await;
    }
    // The real token was never affected.
    assert_eq!(me_status(&keel, &login.access).await, StatusCode::OK);
    assert_eq!(me_status(&keel, &good).await, StatusCode::OK);
}

async fn the_jwks_publishes_public_eddsa_keys_only(backend: Backend) {
    let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
    let keel = Keel::spawn(backend, |_| {}).await;
    let login = signup(&keel, &email("ada")).await;
    let jwks = json_of(keel.get(JWKS).await, StatusCode::OK, "jwks").await;
    let keys = jwks["keys"].as_array().unwrap();
    assert!(!keys.is_empty(), "{jwks}");
    for key in keys {
        assert_eq!(key["kty"], "OKP", "{key}");
        assert_eq!(key["crv"], "Ed25519", "{key}");
        assert_eq!(key["alg"], "EdDSA", "{key}");
        assert!(key["x"].as_str().is_some_and(|x| !x.is_empty()), "{key}");
        assert!(key["kid"].is_string(), "{key}");
        for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
            assert!(
                key.get(private).is_none(),
                "private member {private}: {key}"
            );
        }
    }
    // Another service can verify Keel's tokens with what is published.
    let kid = jwt_part(&login.access, 0)["kid"].clone();
    let key = keys
        .iter()
        .find(|k| k["kid"] == kid)
        .expect("the signing key is published");
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(key.clone()).unwrap();
    let decoding = jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap();
    let mut validation = jsonwebtoken::Validation::new(Algorithm::EdDSA);
    validation.set_issuer(&["keel"]);
    validation.set_audience(&["keel"]);
    let verified = jsonwebtoken::decode::<Value>(&login.access, &decoding, &validation).unwrap();
    assert_eq!(verified.claims["sid"], login.session_id);
}

async fn an_hs256_app_publishes_no_key(backend: Backend) {
    let keel = hs256_app(backend).await;
    let response = keel.get(JWKS).await;
    let text = response.text().await.unwrap();
    let jwks: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        jwks,
        json!({"keys": []}),
        "a shared secret is never published"
    );
    assert!(!text.contains(HS_SECRET));
}

// ---------------------------------------------------------------------------------------------
// Rate limits

/// The 429 of a quota: problem `rate_limited`, `retry-after` >= 1, and the draft-10 headers
/// naming `quota`.
async fn assert_limited(response: reqwest::Response, quota: &str, limit: u32, window: u64) {
    let headers = response.headers().clone();
    expect_problem(
        response,
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        quota,
    )
    .await;
    let retry_after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(
        (1..=window).contains(&retry_after),
        "retry-after {retry_after}"
    );
    let policy = headers["ratelimit-policy"].to_str().unwrap();
    assert!(
        policy.contains(&format!("\"{quota}\";q={limit};w={window}")),
        "{policy}"
    );
    let state = headers["ratelimit"].to_str().unwrap();
    let member = state
        .split(',')
        .map(str::trim)
        .find(|m| m.starts_with(&format!("\"{quota}\"")))
        .unwrap_or_else(|| panic!("{state}"));
    assert!(member.contains(";r=0;"), "{state}");
    let t: u64 = member.rsplit("t=").next().unwrap().parse().unwrap();
    assert!(t >= 1, "{state}");
}

async fn login_is_rate_limited_per_client_ip(backend: Backend) {
    let keel = Keel::spawn(backend, |config| {
        config.rate_limit.quotas.login_ip.limit = 3;
        config.rate_limit.quotas.login_ip.window_seconds = 60;
    })
    .await;
    register(&keel, &email("ada")).await;
    let ok = login(&keel, &email("ada")).await;
    let policy = ok.headers["ratelimit-policy"].to_str().unwrap();
    assert!(policy.contains("\"login-ip\";q=3;w=60"), "{policy}");
    for name in ["bob", "cy"] {
        let response = login_raw(&keel, &email(name), "wrong password").await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    // The fourth attempt from this address is refused, right credentials or not.
    assert_limited(
        login_raw(&keel, &email("ada"), PASSWORD).await,
        "login-ip",
        3,
        60,
    )
    .await;
    assert_limited(
        login_raw(&keel, &email("dee"), "x").await,
        "login-ip",
        3,
        60,
    )
    .await;
    // The rest of the API is not affected.
    assert_eq!(me_status(&keel, &ok.access).await, StatusCode::OK);
    assert_eq!(keel.get("/health").await.status(), StatusCode::OK);
}

/// A refused login, refresh or registration tells the client its budget, as a success does
/// (before, only 2xx and 429 answers carried the fields).
async fn every_answer_of_a_limited_route_carries_the_ratelimit_fields(backend: Backend) {
    let keel = Keel::spawn(backend, |_| {}).await;
    let ada = signup(&keel, &email("ada")).await;
    let answers = [
        (
            login_raw(&keel, &email("ada"), "wrong password").await,
            StatusCode::UNAUTHORIZED,
            "login-ip",
        ),
        (
            refresh(&keel, "not-a-refresh-token").await,
            StatusCode::UNAUTHORIZED,
            "refresh-ip",
        ),
        (
            keel.post_json(
                REGISTER,
                &json!({"email": email("ada"), "password": PASSWORD}),
            )
            .await,
            StatusCode::CONFLICT,
            "register-ip",
        ),
        (
            keel.post_json(
                REGISTER,
                &json!({"email": email("bo"), "password": "short"}),
            )
            .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "register-ip",
        ),
        (
            refresh(&keel, &ada.refresh).await,
            StatusCode::OK,
            "refresh-ip",
        ),
    ];
    for (response, status, quota) in answers {
        assert_eq!(response.status(), status, "{quota}");
        let headers = response.headers();
        let policy = headers
            .get("ratelimit-policy")
            .unwrap_or_else(|| panic!("{status} lacks ratelimit-policy: {headers:?}"))
            .to_str()
            .unwrap();
        assert!(
            policy.contains(&format!("\"{quota}\"")),
            "{status}: {policy}"
        );
        let state = headers
            .get("ratelimit")
            .unwrap_or_else(|| panic!("{status} lacks ratelimit: {headers:?}"))
            .to_str()
            .unwrap();
        assert!(
            state.contains(&format!("\"{quota}\";r=")),
            "{status}: {state}"
        );
    }
}

async fn login_is_rate_limited_per_email_across_client_ips(backend: Backend) {
    let keel = Keel::spawn(backend, |config| {
        config.http.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
        config.rate_limit.quotas.login_ip.limit = 100;
        config.rate_limit.quotas.login_email.limit = 3;
        config.rate_limit.quotas.login_email.window_seconds = 300;
    })
    .await;
    register(&keel, "ada@example.com").await;
    let attempt = |client: &str, email: &str, password: &str| {
        keel.client
            .post(keel.url(LOGIN))
            .header("x-forwarded-for", client)
            .json(&json!({"email": email, "password": password}))
            .send()
    };
    // Three guesses from three addresses, in different letter cases: one account.
    for (client, email) in [
        ("198.51.100.1", "ada@example.com"),
        ("198.51.100.2", "ADA@example.com"),
        ("198.51.100.3", "Ada@Example.COM"),
    ] {
        let response = attempt(client, email, "guess").await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{client}");
    }
    let response = attempt("198.51.100.4", "ada@example.com", PASSWORD)
        .await
        .unwrap();
    assert_limited(response, "login-email", 3, 300).await;
    // Another account from a fresh address is not limited.
    let response = attempt("198.51.100.5", "bob@example.com", "guess")
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

/// The `keel_device=<value>` pair that a login answer set.
fn device_cookie(headers: &reqwest::header::HeaderMap) -> String {
    headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find(|value| value.starts_with("keel_device="))
        .and_then(|value| value.split(';').next())
        .unwrap_or_else(|| panic!("no device cookie: {headers:?}"))
        .to_owned()
}

/// OWASP's device cookies: an attacker's guesses, from many addresses, lock the account against
/// unknown devices, while the owner's device, which has logged in before, keeps its own
/// allowance. Before, one guess every 30 s from anywhere kept the owner at 429.
async fn guesses_lock_unknown_devices_out_of_an_account_but_not_the_owners_device(
    backend: Backend,
) {
    let keel = Keel::spawn(backend, |config| {
        config.http.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
        config.rate_limit.quotas.login_ip.limit = 100;
        config.rate_limit.quotas.login_email.limit = 3;
        config.rate_limit.quotas.login_email.window_seconds = 300;
        config.rate_limit.quotas.login_device.limit = 2;
        config.rate_limit.quotas.login_device.window_seconds = 300;
    })
    .await;
    register(&keel, "ada@example.com").await;
    let owner = login(&keel, "ada@example.com").await;
    let device = device_cookie(&owner.headers);
    let (_, value) = device.split_once('=').unwrap();
    // Successes spend nothing: the owner logs in again and again.
    for _ in 0..5 {
        let again = keel
            .client
            .post(keel.url(LOGIN))
            .header("cookie", &device)
            .json(&json!({"email": "ada@example.com", "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), StatusCode::OK);
        assert_eq!(
            device_cookie(again.headers()),
            device,
            "the same device, renewed"
        );
    }
    let attempt = |client: &str, password: &str, device: Option<&str>| {
        let mut request = keel
            .client
            .post(keel.url(LOGIN))
            .header("x-forwarded-for", client)
            .json(&json!({"email": "ADA@example.com", "password": password}));
        if let Some(device) = device {
            request = request.header("x-keel-device", device);
        }
        request.send()
    };

    // The attacker guesses from three addresses; the fourth attempt is refused, even with the
    // right password, and so is every unknown device.
    for client in ["198.51.100.1", "198.51.100.2", "198.51.100.3"] {
        let response = attempt(client, "guess", None).await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{client}");
        assert!(
            response.headers().get("set-cookie").is_none(),
            "a failure marks no device"
        );
    }
    for (client, password) in [("198.51.100.4", "guess"), ("203.0.113.9", PASSWORD)] {
        assert_limited(
            attempt(client, password, None).await.unwrap(),
            "login-email",
            3,
            300,
        )
        .await;
    }
    // A forged device value is an unknown device.
    let forged = format!("{}x", &value[..value.len() - 1]);
    assert_limited(
        attempt("203.0.113.9", PASSWORD, Some(&forged))
            .await
            .unwrap(),
        "login-email",
        3,
        300,
    )
    .await;

    // Parallel guesses cannot all pass one check: every attempt is counted when admitted.
    register(&keel, "cy@example.com").await;
    let guesses = futures_util::future::join_all((0..12).map(|i| {
        keel.client
            .post(keel.url(LOGIN))
            .header("x-forwarded-for", format!("198.51.100.{}", 100 + i))
            .json(&json!({"email": "cy@example.com", "password": "guess"}))
            .send()
    }))
    .await;
    let statuses: Vec<StatusCode> = guesses.into_iter().map(|r| r.unwrap().status()).collect();
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    assert_eq!(
        refused, 3,
        "only the budget's worth were tried: {statuses:?}"
    );
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
            .count(),
        9,
        "{statuses:?}"
    );

    // The owner's device gets in, from anywhere, with the header as with the cookie.
    let response = attempt("203.0.113.9", PASSWORD, Some(value)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "the owner's device");
    let policy = response.headers()["ratelimit-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(policy.contains("\"login-device\";q=2;w=300"), "{policy}");
    // Its own mistakes spend its own allowance.
    for _ in 0..2 {
        let typo = attempt("203.0.113.9", "typo", Some(value)).await.unwrap();
        assert_eq!(typo.status(), StatusCode::UNAUTHORIZED);
    }
    assert_limited(
        attempt("203.0.113.9", PASSWORD, Some(value)).await.unwrap(),
        "login-device",
        2,
        300,
    )
    .await;
    // Another account is not limited.
    register(&keel, "bob@example.com").await;
    let bob = keel
        .post_json(
            LOGIN,
            &json!({"email": "bob@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(bob.status(), StatusCode::OK);
}

async fn register_and_refresh_are_rate_limited_per_ip(backend: Backend) {
    let keel = Keel::spawn(backend, |config| {
        config.rate_limit.quotas.register_ip.limit = 2;
        config.rate_limit.quotas.register_ip.window_seconds = 3600;
        config.rate_limit.quotas.refresh_ip.limit = 2;
        config.rate_limit.quotas.refresh_ip.window_seconds = 60;
    })
    .await;
    let login = signup(&keel, &email("ada")).await;
    register(&keel, &email("bob")).await;
    let response = keel
        .post_json(
            REGISTER,
            &json!({"email": email("cy"), "password": PASSWORD}),
        )
        .await;
    assert_limited(response, "register-ip", 2, 3600).await;

    let body = json_of(
        refresh(&keel, &login.refresh).await,
        StatusCode::OK,
        "refresh 1",
    )
    .await;
    let next = body["refreshToken"].as_str().unwrap();
    expect_401(refresh(&keel, "garbage").await, "refresh 2").await;
    assert_limited(refresh(&keel, next).await, "refresh-ip", 2, 60).await;
}
