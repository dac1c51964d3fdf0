//! The account lifecycle of API.md v1.1 as a client sees it, with mail through a real SMTP
//! server (the testkit's sink) and run on every backend: e-mail verification, password reset
//! and change, e-mail change, deletion, export, the audit events of each, the outbox across
//! an SMTP outage and a restart, and the limits on mail-sending routes.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

mod support;

use std::time::Duration;

use keel_testkit::smtp::{ReceivedMail, SmtpSink};
use keel_testkit::{TestApp, eventually};
use reqwest::{Method, StatusCode};
use secrecy::SecretString;
use serde_json::{Value, json};
use support::*;

const VERIFY_EMAIL: &str = "/api/v1/auth/verify-email";
const RESEND: &str = "/api/v1/auth/verify-email/resend";
const RESET: &str = "/api/v1/auth/password-reset";
const RESET_CONFIRM: &str = "/api/v1/auth/password-reset/confirm";
const CHANGE_PASSWORD: &str = "/api/v1/auth/password";
const CHANGE_EMAIL: &str = "/api/v1/auth/email";
const USERS_ME: &str = "/api/v1/users/me";
const EXPORT: &str = "/api/v1/users/me/export";
const NEW_PASSWORD: &str = "a new and longer passphrase";
/// How long a mail may take to arrive through the outbox (it polls every 100 ms in tests).
const MAIL_WITHIN: Duration = Duration::from_secs(10);

/// An app on `backend` whose mail goes to `sink`.
async fn keel(backend: Backend, sink: &SmtpSink) -> Keel {
    let url = sink.url();
    Keel::spawn(backend, move |config| {
        config.mail.smtp_url = Some(SecretString::from(url));
    })
    .await
}

/// The mails received for `to` so far.
fn mails_to(sink: &SmtpSink, to: &str) -> Vec<ReceivedMail> {
    sink.received()
        .into_iter()
        .filter(|mail| mail.to.iter().any(|rcpt| rcpt.eq_ignore_ascii_case(to)))
        .collect()
}

/// Waits for the `nth` (from 1) mail to `to` and returns it.
async fn nth_mail(sink: &SmtpSink, to: &str, nth: usize) -> ReceivedMail {
    eventually(&format!("mail {nth} to {to}"), MAIL_WITHIN, || async {
        let mails = mails_to(sink, to);
        mails.get(nth - 1).cloned().ok_or(mails.len())
    })
    .await
}

/// The token of the link to `{app_url}/{path}?token=` in `mail`'s text.
fn token_in(mail: &ReceivedMail, path: &str) -> String {
    let text = mail.text();
    let marker = format!("http://localhost:3000/{path}?token=");
    let start = text
        .find(&marker)
        .unwrap_or_else(|| panic!("no {marker} link in:\n{text}"))
        + marker.len();
    text[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect()
}

async fn post(app: &TestApp, path: &str, body: &Value) -> reqwest::Response {
    app.post_json(path, body).await
}

async fn authed(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    body: &Value,
) -> reqwest::Response {
    send(bearer(app, method, path, token).json(body)).await
}

/// The audit event types of the caller's export, newest first.
async fn exported_types(app: &TestApp, token: &str) -> Vec<String> {
    let response = send(bearer(app, Method::GET, EXPORT, token)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["type"].as_str().unwrap().to_owned())
        .collect()
}

async fn registration_mails_a_link_that_verifies_the_address_once(backend: Backend) {
    let sink = SmtpSink::start();
    let app = keel(backend, &sink).await;
    let ada = email("ada");
    let user = register(&app, &ada).await;
    assert_eq!(user["emailVerified"], false, "{user}");
    let mail = nth_mail(&sink, &ada, 1).await;
    assert!(mail.header("subject").is_some());
    let token = token_in(&mail, "verify-email");
    assert_eq!(token.len(), 43, "256 bits in base64url");
    // The HTML part carries the same link.
    assert!(mail.html().contains(&token));

    // Opening the link (as a mail scanner would) spends nothing: the page only POSTs on submit.
    let page = app.get(&format!("/verify-email?token={token}")).await;
    assert_eq!(page.status(), StatusCode::OK);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(page.text().await.unwrap().contains("/_keel/pages.js"));
    assert_eq!(app.get("/_keel/pages.js").await.status(), StatusCode::OK);

    let verified = post(&app, VERIFY_EMAIL, &json!({"token": token})).await;
    assert_eq!(verified.status(), StatusCode::OK);
    assert!(verified.headers().contains_key("ratelimit"));
    let body: Value = verified.json().await.unwrap();
    assert_eq!(body["user"]["emailVerified"], true, "{body}");
    assert_eq!(body["user"]["email"], ada.as_str());

    // Spent, unknown and malformed tokens get one answer.
    for token in [
        token.as_str(),
        "A".repeat(43).as_str(),
        "",
        "not a token at all",
    ] {
        let response = post(&app, VERIFY_EMAIL, &json!({"token": token})).await;
        let (status, headers, problem) = support::problem(response).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{token:?}: {problem}");
        assert_eq!(problem["code"], "invalid_token");
        assert!(
            headers.contains_key("ratelimit"),
            "a limited route's failure carries its headers"
        );
    }
    let login = support::login(&app, &ada).await;
    let me: Value = me(&app, &login.access).await.json().await.unwrap();
    assert_eq!(me["user"]["emailVerified"], true);

    // A verified address gets no new link on a resend; the answer is the same.
    let resent = authed(&app, Method::POST, RESEND, &login.access, &json!({})).await;
    assert_eq!(resent.status(), StatusCode::ACCEPTED);
    let types = exported_types(&app, &login.access).await;
    assert!(types.contains(&"email.verified".to_owned()), "{types:?}");
    assert!(types.contains(&"user.registered".to_owned()), "{types:?}");
    assert_eq!(mails_to(&sink, &ada).len(), 1);
}

async fn a_resent_link_verifies_and_the_first_one_still_works_until_used(backend: Backend) {
    let sink = SmtpSink::start();
    let app = keel(backend, &sink).await;
    let ada = email("ada");
    let login = signup(&app, &ada).await;
    let first = token_in(&nth_mail(&sink, &ada, 1).await, "verify-email");
    let resent = authed(&app, Method::POST, RESEND, &login.access, &json!({})).await;
    assert_eq!(resent.status(), StatusCode::ACCEPTED);
    let second = token_in(&nth_mail(&sink, &ada, 2).await, "verify-email");
    assert_ne!(first, second);
    let response = post(&app, VERIFY_EMAIL, &json!({"token": second})).await;
    assert_eq!(response.status(), StatusCode::OK);
    // Anonymous resends are refused like any authenticated route.
    let anonymous = post(&app, RESEND, &json!({})).await;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
}

async fn a_password_reset_revokes_every_session_and_spends_every_reset_link(backend: Backend) {
    let sink = SmtpSink::start();
    let app = keel(backend, &sink).await;
    let ada = email("ada");
    let first = signup(&app, &ada).await;
    let second = support::login(&app, &ada).await;
    nth_mail(&sink, &ada, 1).await; // the verification mail

    // Asked twice; an address without an account gets the same answer and no mail.
    for who in [ada.as_str(), ada.as_str(), email("nobody").as_str()] {
        let response = post(&app, RESET, &json!({"email": who})).await;
        assert_eq!(response.status(), StatusCode::ACCEPTED, "{who}");
        assert!(response.headers().contains_key("ratelimit"));
        assert_eq!(response.bytes().await.unwrap().len(), 0);
    }
    let malformed = post(&app, RESET, &json!({"email": "not-an-address"})).await;
    assert_eq!(malformed.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let one = token_in(&nth_mail(&sink, &ada, 2).await, "reset-password");
    let two = token_in(&nth_mail(&sink, &ada, 3).await, "reset-password");

    // A weak password is refused and spends nothing.
    let weak = post(
        &app,
        RESET_CONFIRM,
        &json!({"token": one, "password": "password123"}),
    )
    .await;
    let (status, _, problem) = support::problem(weak).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(problem["errors"][0]["field"], "password");
    assert_eq!(problem["errors"][0]["code"], "too_common");

    let done = post(
        &app,
        RESET_CONFIRM,
        &json!({"token": one, "password": NEW_PASSWORD}),
    )
    .await;
    assert_eq!(done.status(), StatusCode::NO_CONTENT);
    // Every session is gone: access tokens and refresh tokens alike.
    for login in [&first, &second] {
        assert_eq!(
            me_status(&app, &login.access).await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            refresh(&app, &login.refresh).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    // The other link, and the used one, are spent.
    for token in [&one, &two] {
        let again = post(
            &app,
            RESET_CONFIRM,
            &json!({"token": token, "password": NEW_PASSWORD}),
        )
        .await;
        let (status, _, problem) = support::problem(again).await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_token"))
        );
    }
    assert_eq!(
        login_raw(&app, &ada, PASSWORD).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let fresh = read_login(login_raw(&app, &ada, NEW_PASSWORD).await).await;
    // The link reached the address: it counts as verified.
    let me: Value = me(&app, &fresh.access).await.json().await.unwrap();
    assert_eq!(me["user"]["emailVerified"], true);
    // The address is told.
    let notice = nth_mail(&sink, &ada, 4).await;
    assert!(
        !notice.text().contains("token="),
        "a notice carries no link to spend"
    );
    assert_eq!(mails_to(&sink, &email("nobody")).len(), 0);
    let types = exported_types(&app, &fresh.access).await;
    for kind in [
        "password.reset",
        "password.reset_requested",
        "session.revoked",
    ] {
        assert!(types.contains(&kind.to_owned()), "{kind} in {types:?}");
    }
}

async fn a_password_change_keeps_the_current_session_and_ends_the_others(backend: Backend) {
    let sink = SmtpSink::start();
    let app = keel(backend, &sink).await;
    let ada = email("ada");
    let current = signup(&app, &ada).await;
    let other = support::login(&app, &ada).await;
    nth_mail(&sink, &ada, 1).await;

    let wrong = authed(
        &app,
        Method::POST,
        CHANGE_PASSWORD,
        &current.access,
        &json!({"currentPassword": "not the password", "newPassword": NEW_PASSWORD}),
    )
    .await;
    let (status, _, problem) = support::problem(wrong).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_credentials"))
    );
    let weak = authed(
        &app,
        Method::POST,
        CHANGE_PASSWORD,
        &current.access,
        &json!({"currentPassword": PASSWORD, "newPassword": "short"}),
    )
    .await;
    let (status, _, problem) = support::problem(weak).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem["errors"][0]["field"], "newPassword");
    assert_eq!(problem["errors"][0]["code"], "too_short");
    assert_eq!(
        me_status(&app, &other.access).await,
        StatusCode::OK,
        "nothing changed yet"
    );

    let changed = authed(
        &app,
        Method::POST,
        CHANGE_PASSWORD,
        &current.access,
        &json!({"currentPassword": PASSWORD, "newPassword": NEW_PASSWORD}),
    )
    .await;
    assert_eq!(changed.status(), StatusCode::NO_CONTENT);
    assert_eq!(me_status(&app, &current.access).await, StatusCode::OK);
    assert_eq!(
        me_status(&app, &other.access).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        refresh(&app, &other.refresh).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login_raw(&app, &ada, PASSWORD).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login_raw(&app, &ada, NEW_PASSWORD).await.status(),
        StatusCode::OK
    );
    nth_mail(&sink, &ada, 2).await; // the notice
    let types = exported_types(&app, &current.access).await;
    assert!(types.contains(&"password.changed".to_owned()), "{types:?}");
}

async fn an_email_change_happens_only_through_the_link_to_the_new_address(backend: Backend) {
    let sink = SmtpSink::start();
    let app = keel(backend, &sink).await;
    let (ada, bob, new) = (email("ada"), email("bob"), email("ada.new"));
    let login = signup(&app, &ada).await;
    register(&app, &bob).await;

    let taken = authed(
        &app,
        Method::POST,
        CHANGE_EMAIL,
        &login.access,
        &json!({"newEmail": bob.to_uppercase(), "password": PASSWORD}),
    )
    .await;
    let (status, _, problem) = support::problem(taken).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (StatusCode::CONFLICT, Some("email_taken"))
    );
    let wrong = authed(
        &app,
        Method::POST,
        CHANGE_EMAIL,
        &login.access,
        &json!({"newEmail": new, "password": "not the password"}),
    )
    .await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);

    let asked = authed(
        &app,
        Method::POST,
        CHANGE_EMAIL,
        &login.access,
        &json!({"newEmail": new, "password": PASSWORD}),
    )
    .await;
    assert_eq!(asked.status(), StatusCode::ACCEPTED);
    let mail = nth_mail(&sink, &new, 1).await;
    let token = token_in(&mail, "verify-email");
    let me_now: Value = me(&app, &login.access).await.json().await.unwrap();
    assert_eq!(
        me_now["user"]["email"],
        ada.as_str(),
        "nothing changes before the link"
    );

    let confirmed = post(&app, VERIFY_EMAIL, &json!({"token": token})).await;
    assert_eq!(confirmed.status(), StatusCode::OK);
    let body: Value = confirmed.json().await.unwrap();
    assert_eq!(body["user"]["email"], new.as_str());
    assert_eq!(body["user"]["emailVerified"], true);
    assert_eq!(
        login_raw(&app, &ada, PASSWORD).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login_raw(&app, &new, PASSWORD).await.status(),
        StatusCode::OK
    );
    // The old address is told, and is free again.
    let notice = eventually("the old address's notice", MAIL_WITHIN, || async {
        mails_to(&sink, &ada)
            .into_iter()
            .find(|mail| mail.text().contains(&new))
            .ok_or(())
    })
    .await;
    assert!(!notice.text().contains("token="));
    register(&app, &ada).await;

    // A change whose address is taken before its link is followed: 409, nothing changes.
    let later = email("ada.later");
    let asked = authed(
        &app,
        Method::POST,
        CHANGE_EMAIL,
        &login.access,
        &json!({"newEmail": later, "password": PASSWORD}),
    )
    .await;
    assert_eq!(asked.status(), StatusCode::ACCEPTED);
    let token = token_in(&nth_mail(&sink, &later, 1).await, "verify-email");
    register(&app, &later).await;
    let late = post(&app, VERIFY_EMAIL, &json!({"token": token})).await;
    let (status, _, problem) = support::problem(late).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (StatusCode::CONFLICT, Some("email_taken"))
    );
    let types = exported_types(&app, &login.access).await;
    assert!(types.contains(&"email.changed".to_owned()), "{types:?}");
}

async fn deleting_an_account_revokes_it_and_frees_the_address(backend: Backend) {
    let sink = SmtpSink::start();
    let app = keel(backend, &sink).await;
    let ada = email("ada");
    let login = signup(&app, &ada).await;
    let other = support::login(&app, &ada).await;
    let wrong = authed(
        &app,
        Method::DELETE,
        USERS_ME,
        &login.access,
        &json!({"password": "nope"}),
    )
    .await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let deleted = authed(
        &app,
        Method::DELETE,
        USERS_ME,
        &login.access,
        &json!({"password": PASSWORD}),
    )
    .await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    for session in [&login, &other] {
        assert_eq!(
            me_status(&app, &session.access).await,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        login_raw(&app, &ada, PASSWORD).await.status(),
        StatusCode::UNAUTHORIZED
    );
    // The link mailed at registration died with the account.
    let token = token_in(&nth_mail(&sink, &ada, 1).await, "verify-email");
    let stale = post(&app, VERIFY_EMAIL, &json!({"token": token})).await;
    assert_eq!(stale.status(), StatusCode::BAD_REQUEST);
    // The address registers again, as a new account.
    let again = register(&app, &ada).await;
    assert_ne!(again["id"], login.user_id.as_str());
}

async fn the_export_holds_the_account_its_sessions_and_its_audit_events(backend: Backend) {
    let sink = SmtpSink::start();
    let app = keel(backend, &sink).await;
    let ada = email("ada");
    let login = signup(&app, &ada).await;
    assert_eq!(
        login_raw(&app, &ada, "a wrong password").await.status(),
        StatusCode::UNAUTHORIZED
    );
    let response = send(bearer(&app, Method::GET, EXPORT, &login.access)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["user"]["email"], ada.as_str());
    assert_eq!(body["sessions"][0]["current"], true, "{body}");
    let events = body["events"].as_array().unwrap();
    let types: Vec<_> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        ["user.login_failed", "user.login", "user.registered"],
        "{body}"
    );
    let failed = &events[0];
    assert_eq!(failed["userId"], login.user_id.as_str());
    assert_eq!(failed["userAgent"], USER_AGENT);
    assert!(failed["ip"].as_str().is_some(), "{failed}");
    assert!(
        failed["at"].as_str().is_some_and(|at| at.ends_with('Z')),
        "{failed}"
    );
    assert_eq!(events[1]["data"]["sessionId"], body["sessions"][0]["id"]);
    // Nothing secret is exported.
    let text = body.to_string();
    assert!(
        !text.contains("argon2") && !text.contains("refresh"),
        "{text}"
    );
    let anonymous = app.get(EXPORT).await;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
}

async fn a_password_reset_kills_a_pending_email_change(backend: Backend) {
    let sink = SmtpSink::start();
    let app = keel(backend, &sink).await;
    let (ada, thief) = (email("ada"), email("thief"));
    // Someone who knew the password asks to move the account to their address...
    let login = signup(&app, &ada).await;
    let asked = authed(
        &app,
        Method::POST,
        CHANGE_EMAIL,
        &login.access,
        &json!({"newEmail": thief, "password": PASSWORD}),
    )
    .await;
    assert_eq!(asked.status(), StatusCode::ACCEPTED);
    let stolen = token_in(&nth_mail(&sink, &thief, 1).await, "verify-email");
    // ...the owner resets the password...
    assert_eq!(
        post(&app, RESET, &json!({"email": ada})).await.status(),
        StatusCode::ACCEPTED
    );
    let reset = token_in(&nth_mail(&sink, &ada, 2).await, "reset-password");
    let done = post(
        &app,
        RESET_CONFIRM,
        &json!({"token": reset, "password": NEW_PASSWORD}),
    )
    .await;
    assert_eq!(done.status(), StatusCode::NO_CONTENT);
    // ...and the change link no longer works.
    let late = post(&app, VERIFY_EMAIL, &json!({"token": stolen})).await;
    assert_eq!(late.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        login_raw(&app, &ada, NEW_PASSWORD).await.status(),
        StatusCode::OK
    );
}

on_every_backend!(
    a_password_reset_kills_a_pending_email_change,
    registration_mails_a_link_that_verifies_the_address_once,
    a_resent_link_verifies_and_the_first_one_still_works_until_used,
    a_password_reset_revokes_every_session_and_spends_every_reset_link,
    a_password_change_keeps_the_current_session_and_ends_the_others,
    an_email_change_happens_only_through_the_link_to_the_new_address,
    deleting_an_account_revokes_it_and_frees_the_address,
    the_export_holds_the_account_its_sessions_and_its_audit_events,
);

/// The real binary, its SMTP server down: a reset request is answered 202 at once, the sender's
/// attempt fails (its log says so, and that it will retry), and once the server is back the
/// mail arrives and its link works.
#[tokio::test]
async fn the_outbox_delivers_what_was_asked_while_smtp_was_down() {
    let mut sink = SmtpSink::start();
    let ada = email("ada");
    let url = sink.url();
    let server = keel_testkit::ServerProcess::start(&[("KEEL_MAIL__SMTP_URL", url.as_str())]).await;
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let register = client
        .post(server.url(support::REGISTER))
        .json(&json!({"email": ada, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(register.status(), StatusCode::CREATED);
    nth_mail(&sink, &ada, 1).await;
    sink.stop();
    let asked = client
        .post(server.url(RESET))
        .json(&json!({"email": ada}))
        .send()
        .await
        .unwrap();
    assert_eq!(asked.status(), StatusCode::ACCEPTED);
    let failed = server
        .wait_for_line(MAIL_WITHIN, |line| {
            line.contains("mail not delivered; retrying later")
        })
        .await;
    assert!(
        failed.is_some(),
        "no failed attempt logged:\n{}",
        server.output()
    );
    sink.start_again();
    let token = token_in(&nth_mail(&sink, &ada, 2).await, "reset-password");
    let done = client
        .post(server.url(RESET_CONFIRM))
        .json(&json!({"token": token, "password": NEW_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), StatusCode::NO_CONTENT);
    // The link is in the mail, never in the log.
    assert!(!server.output().contains(&token), "the token was logged");
}

/// Mail asked for while SMTP is down survives a restart of the server: the outbox is in
/// PostgreSQL, and the next instance delivers it.
#[tokio::test]
async fn queued_mail_survives_a_restart_on_postgres() {
    let mut sink = SmtpSink::start();
    sink.stop();
    let db = keel_testkit::postgres::PostgresServer::shared().database();
    let on_db = |sink_url: String, db_url: String| {
        move |config: &mut server::config::Config| {
            config.mail.smtp_url = Some(SecretString::from(sink_url));
            config.database.url = Some(SecretString::from(db_url));
        }
    };
    let app = TestApp::spawn_with(on_db(sink.url(), db.url.clone())).await;
    let ada = email("ada");
    register(&app, &ada).await;
    let response = post(&app, RESET, &json!({"email": ada})).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    app.shutdown().await;

    sink.start_again();
    let app = TestApp::spawn_with(on_db(sink.url(), db.url.clone())).await;
    let reset = eventually("the reset mail", MAIL_WITHIN, || async {
        mails_to(&sink, &ada)
            .into_iter()
            .find(|mail| mail.text().contains("/reset-password?token="))
            .ok_or(())
    })
    .await;
    let token = token_in(&reset, "reset-password");
    let done = post(
        &app,
        RESET_CONFIRM,
        &json!({"token": token, "password": NEW_PASSWORD}),
    )
    .await;
    assert_eq!(done.status(), StatusCode::NO_CONTENT);
    // Both mails, once each.
    assert_eq!(mails_to(&sink, &ada).len(), 2);
}

/// Mail-sending routes are limited per address as well as per IP, whether or not the address
/// has an account, and the limit's answer says nothing more.
#[tokio::test]
async fn password_reset_requests_are_limited_per_address() {
    let sink = SmtpSink::start();
    let app = keel(Backend::Memory, &sink).await;
    for who in ["ada", "nobody"] {
        let address = email(who);
        for _ in 0..5 {
            let response = post(&app, RESET, &json!({"email": address})).await;
            assert_eq!(response.status(), StatusCode::ACCEPTED);
        }
        // Another spelling of the address shares its budget.
        let limited = post(&app, RESET, &json!({"email": address.to_uppercase()})).await;
        let (status, headers, problem) = support::problem(limited).await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (StatusCode::TOO_MANY_REQUESTS, Some("rate_limited"))
        );
        assert!(headers.contains_key("retry-after"));
    }
    // Another address is not affected.
    let other = post(&app, RESET, &json!({"email": email("carol")})).await;
    assert_eq!(other.status(), StatusCode::ACCEPTED);
}

/// Guesses from unknown devices that lock an account tell its owner, once: the eleventh
/// attempt is refused (429) and a notice goes to the address; later refusals send no more.
#[tokio::test]
async fn a_locked_account_tells_its_owner_once() {
    let sink = SmtpSink::start();
    let app = keel(Backend::Memory, &sink).await;
    let ada = email("ada");
    register(&app, &ada).await;
    nth_mail(&sink, &ada, 1).await;
    let guesser = reqwest::Client::builder().no_proxy().build().unwrap();
    let guess = || async {
        guesser
            .post(app.url(support::LOGIN))
            .json(&json!({"email": ada, "password": "a wrong guess"}))
            .send()
            .await
            .unwrap()
            .status()
    };
    for _ in 0..10 {
        assert_eq!(guess().await, StatusCode::UNAUTHORIZED);
    }
    for _ in 0..3 {
        assert_eq!(guess().await, StatusCode::TOO_MANY_REQUESTS);
    }
    let notice = nth_mail(&sink, &ada, 2).await;
    assert!(!notice.text().contains("token="), "{}", notice.text());
    // A register for another address, whose mail comes after any second notice would have.
    let bob = email("bob");
    register(&app, &bob).await;
    nth_mail(&sink, &bob, 1).await;
    assert_eq!(mails_to(&sink, &ada).len(), 2, "one notice only");
}

/// The routes that check a signed-in caller's password share the account's login budget, so a
/// stolen access token cannot guess the password from many addresses; wrong guesses are
/// recorded as failed logins.
#[tokio::test]
async fn password_checks_of_a_signed_in_caller_are_limited_per_account() {
    let sink = SmtpSink::start();
    let app = keel(Backend::Memory, &sink).await;
    let login = signup(&app, &email("ada")).await;
    let guess = json!({"currentPassword": "a wrong guess", "newPassword": NEW_PASSWORD});
    for _ in 0..10 {
        let response = authed(&app, Method::POST, CHANGE_PASSWORD, &login.access, &guess).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let limited = authed(&app, Method::POST, CHANGE_PASSWORD, &login.access, &guess).await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    let deletion = authed(
        &app,
        Method::DELETE,
        USERS_ME,
        &login.access,
        &json!({"password": PASSWORD}),
    )
    .await;
    assert_eq!(
        deletion.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "the budget is the account's"
    );
    let types = exported_types(&app, &login.access).await;
    let failed = types.iter().filter(|t| *t == "user.login_failed").count();
    assert_eq!(failed, 10, "{types:?}");
}
