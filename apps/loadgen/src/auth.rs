//! Getting the one access token every socket of a run shares: log in, registering a fresh
//! account first when no credentials were given.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::StatusCode;
use serde_json::{Value, json};

/// An access token for `base` (`http://host:port`): logs in with `credentials`, or registers a
/// random account and logs in with it.
///
/// # Errors
/// The server cannot be reached, or registration or login does not succeed.
pub async fn access_token(
    base: &str,
    credentials: Option<(String, String)>,
) -> Result<String, crate::Error> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let (email, password) = match credentials {
        Some(credentials) => credentials,
        None => {
            let credentials = random_credentials();
            register(&client, base, &credentials.0, &credentials.1).await?;
            credentials
        }
    };
    login(&client, base, &email, &password).await
}

/// A fresh email and password, unique per process and moment.
fn random_credentials() -> (String, String) {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    let pid = std::process::id();
    (
        format!("loadgen-{nanos:x}-{pid:x}@example.com"),
        format!("loadgen-{nanos:x}-pw"),
    )
}

/// POSTs the credentials to `url` and returns the answer when its status is `expected`.
async fn post_credentials(
    client: &reqwest::Client,
    url: &str,
    what: &str,
    (email, password): (&str, &str),
    expected: StatusCode,
) -> Result<reqwest::Response, crate::Error> {
    let response = client
        .post(url)
        .json(&json!({ "email": email, "password": password }))
        .send()
        .await
        .map_err(|error| unreachable(url, &error))?;
    let status = response.status();
    if status != expected {
        let body = response.text().await.unwrap_or_default();
        return Err(format!("{what} at {url} failed: {status} {body}").into());
    }
    Ok(response)
}

async fn register(
    client: &reqwest::Client,
    base: &str,
    email: &str,
    password: &str,
) -> Result<(), crate::Error> {
    let url = format!("{base}/api/v1/auth/register");
    post_credentials(
        client,
        &url,
        "registration",
        (email, password),
        StatusCode::CREATED,
    )
    .await?;
    Ok(())
}

async fn login(
    client: &reqwest::Client,
    base: &str,
    email: &str,
    password: &str,
) -> Result<String, crate::Error> {
    let url = format!("{base}/api/v1/auth/login");
    let response =
        post_credentials(client, &url, "login", (email, password), StatusCode::OK).await?;
    let body: Value = response
        .json()
        .await
        .map_err(|error| format!("login at {url}: unreadable answer: {error}"))?;
    body.get("accessToken")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| format!("login at {url}: no accessToken in the answer").into())
}

fn unreachable(url: &str, error: &reqwest::Error) -> crate::Error {
    // reqwest's Display stops at "error sending request"; the sources below it say why.
    let mut message = format!("cannot reach the server at {url}: {error}");
    let mut cause = std::error::Error::source(error);
    while let Some(inner) = cause {
        message.push_str(": ");
        message.push_str(&inner.to_string());
        cause = inner.source();
    }
    message.into()
}
