//! Configuration: safe development defaults, then `keel.toml` (or the file named by
//! `KEEL_CONFIG`), then `KEEL_<SECTION>__<KEY>` environment variables. This module is the only
//! place in Keel that reads the environment; every library crate takes a plain config struct.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use keel_auth::{JwtConfig, PasswordHashingConfig};
use keel_http_adapter::{CorsConfig, HttpConfig, RateLimitConfig};
use keel_realtime::RealtimeConfig;
use keel_session::SessionConfig;
use keel_storage::postgres::DatabaseConfig;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, Serializer};

/// The whole configuration of a Keel server.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `development` (default) or `production`, which refuses unsafe settings.
    pub profile: Profile,
    /// The listener.
    pub server: ServerConfig,
    /// The HTTP edge: body limits, trusted proxies, HSTS.
    pub http: HttpConfig,
    /// Allowed browser origins.
    pub cors: CorsConfig,
    /// Rate limits.
    pub rate_limit: RateLimitConfig,
    /// Passwords and access tokens.
    pub auth: AuthConfig,
    /// Session lifetimes and the registry's key prefix.
    pub session: SessionConfig,
    /// The session cookie.
    pub cookie: CookieConfig,
    /// The Socket.IO server: timings, limits and throttles.
    pub realtime: RealtimeConfig,
    /// Redis; unset means in-memory stores for a single instance.
    pub redis: RedisConfig,
    /// PostgreSQL, the system of record; unset means accounts in memory (or in Redis).
    pub database: DatabaseConfig,
    /// Graceful shutdown.
    pub shutdown: ShutdownConfig,
    /// Logs.
    pub log: LogConfig,
    /// The base of the links in mails (`{app_url}/verify-email?token=…`): the product's front
    /// end. Required and https in production.
    pub app_url: String,
    /// Mail delivery.
    pub mail: MailConfig,
    /// Who administers accounts.
    pub admin: AdminConfig,
    /// The audit log.
    pub audit: AuditConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            profile: Profile::Development,
            server: ServerConfig::default(),
            http: HttpConfig::default(),
            cors: CorsConfig::default(),
            rate_limit: RateLimitConfig::default(),
            auth: AuthConfig::default(),
            session: SessionConfig::default(),
            cookie: CookieConfig::default(),
            realtime: RealtimeConfig::default(),
            redis: RedisConfig::default(),
            database: DatabaseConfig::default(),
            shutdown: ShutdownConfig::default(),
            log: LogConfig::default(),
            app_url: "http://localhost:3000".to_owned(),
            mail: MailConfig::default(),
            admin: AdminConfig::default(),
            audit: AuditConfig::default(),
        }
    }
}

/// Passwords and access tokens.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// The JWT key ring. Without keys, development generates an ephemeral one; production
    /// refuses to start.
    pub jwt: JwtConfig,
    /// argon2id concurrency.
    pub password_hashing: PasswordHashingConfig,
}

/// The session cookie (browsers; API clients use Bearer tokens).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CookieConfig {
    /// `Secure` attribute; unset: on in production, off in development (plain http).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secure: Option<bool>,
    /// A name other than `__Host-keel` (secure) or `keel_session` (development).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Base64 of at least 64 random bytes that encrypt and sign the cookie, the same on every
    /// instance; unset: a random key per process (development only: cookies die on restart).
    #[serde(serialize_with = "redacted", skip_serializing_if = "Option::is_none")]
    pub key: Option<SecretString>,
}

/// The deployment profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// Safe defaults for a laptop: pretty logs, ephemeral keys, plain-HTTP cookies.
    Development,
    /// Strict: unsafe settings stop start-up.
    Production,
}

/// The listener and connection timeouts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on.
    pub host: IpAddr,
    /// Port to listen on (0 picks a free one).
    pub port: u16,
    /// Worker threads; unset means one per CPU.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workers: Option<usize>,
    /// How long an idle keep-alive connection stays open, in seconds.
    pub keep_alive_seconds: u64,
    /// How long a client may take to send the request head, in milliseconds.
    pub client_request_timeout_ms: u64,
    /// How long a closing connection may take to shut down, in milliseconds.
    pub client_disconnect_timeout_ms: u64,
    /// How long each readiness check may take, in milliseconds.
    pub readiness_timeout_ms: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            host: IpAddr::from([0, 0, 0, 0]),
            port: 3000,
            workers: None,
            keep_alive_seconds: 5,
            client_request_timeout_ms: 5_000,
            client_disconnect_timeout_ms: 1_000,
            readiness_timeout_ms: 1_000,
        }
    }
}

/// Redis.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://[:password@]host:port[/db]`; unset means in-memory stores.
    #[serde(
        serialize_with = "redacted_url",
        skip_serializing_if = "Option::is_none"
    )]
    pub url: Option<SecretString>,
    /// Connections in the shared pool.
    pub pool_size: usize,
    /// Bound on establishing a connection, in milliseconds.
    pub connect_timeout_ms: u64,
    /// Bound on one command's answer, in milliseconds.
    pub response_timeout_ms: u64,
    /// Bound on waiting for a free pooled connection, in milliseconds.
    pub wait_timeout_ms: u64,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: None,
            pool_size: 16,
            connect_timeout_ms: 1_000,
            response_timeout_ms: 1_000,
            wait_timeout_ms: 1_000,
        }
    }
}

/// Graceful shutdown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownConfig {
    /// After SIGTERM, readiness is 503 and requests are still served for this long, so load
    /// balancers stop sending traffic before the listener closes. Unset: 0 in development, 5 in
    /// production.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drain_seconds: Option<u64>,
    /// Then in-flight work gets this long to finish.
    pub timeout_seconds: u64,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self {
            drain_seconds: None,
            timeout_seconds: 30,
        }
    }
}

/// Logs on stdout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `pretty` or `json`; unset: pretty in development, JSON in production.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<LogFormat>,
    /// A level (`info`) or a `tracing` filter directive (`info,keel::access=warn`).
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: None,
            level: "info".to_owned(),
        }
    }
}

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable, for a terminal.
    Pretty,
    /// One JSON object per line, for log shippers.
    Json,
}

impl Config {
    /// The log format in force.
    pub fn log_format(&self) -> LogFormat {
        self.log.format.unwrap_or(match self.profile {
            Profile::Development => LogFormat::Pretty,
            Profile::Production => LogFormat::Json,
        })
    }

    /// Whether the session cookie is `Secure`.
    pub fn cookie_secure(&self) -> bool {
        self.cookie
            .secure
            .unwrap_or(self.profile == Profile::Production)
    }

    /// The cookie key's bytes, when one is configured (validated by [`Config::validate`]).
    pub fn cookie_key_bytes(&self) -> Option<Vec<u8>> {
        let key = self.cookie.key.as_ref()?;
        BASE64.decode(key.expose_secret().trim()).ok()
    }

    /// The drain period in force, in seconds.
    pub fn drain_seconds(&self) -> u64 {
        self.shutdown.drain_seconds.unwrap_or(match self.profile {
            Profile::Development => 0,
            Profile::Production => 5,
        })
    }

    /// The effective configuration as TOML, secrets redacted.
    pub fn to_redacted_toml(&self) -> Result<String, ConfigError> {
        toml::to_string_pretty(self).map_err(|error| {
            ConfigError::new("", format!("cannot print the configuration: {error}"))
        })
    }

    /// Checks what types alone cannot, then, in production, refuses unsafe settings.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.http.body_limit_bytes == 0 {
            return Err(ConfigError::new(
                "http.body_limit_bytes",
                "must be at least 1",
            ));
        }
        if self.http.body_read_timeout_seconds == 0 {
            return Err(ConfigError::new(
                "http.body_read_timeout_seconds",
                "must be at least 1",
            ));
        }
        if let Err(error) = self.auth.password_hashing.params() {
            return Err(ConfigError::new(
                format!("auth.password_hashing.{}", error.field),
                error.reason,
            ));
        }
        if self.server.workers == Some(0) {
            return Err(ConfigError::new(
                "server.workers",
                "must be at least 1 (or unset)",
            ));
        }
        if self.shutdown.timeout_seconds == 0 {
            return Err(ConfigError::new(
                "shutdown.timeout_seconds",
                "must be at least 1",
            ));
        }
        if self.server.readiness_timeout_ms == 0 {
            return Err(ConfigError::new(
                "server.readiness_timeout_ms",
                "must be at least 1",
            ));
        }
        if let Err(error) = tracing_subscriber::EnvFilter::builder().parse(&self.log.level) {
            return Err(ConfigError::new(
                "log.level",
                format!("is not a level or filter: {error}"),
            ));
        }
        for origin in &self.cors.allowed_origins {
            if let Err(reason) = check_origin(origin) {
                return Err(ConfigError::new(
                    "cors.allowed_origins",
                    format!("`{origin}` {reason}"),
                ));
            }
        }
        let guard = &self.rate_limit.flood_guard;
        if self.rate_limit.enabled && (guard.per_second == 0 || guard.burst == 0) {
            return Err(ConfigError::new(
                "rate_limit.flood_guard",
                "per_second and burst must be at least 1 (turn limits off with rate_limit.enabled = false)",
            ));
        }
        if let Err(error) = self.realtime.validate() {
            return Err(ConfigError::new("realtime", error.to_string()));
        }
        if let Some(url) = &self.redis.url {
            let url = url.expose_secret();
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                return Err(ConfigError::new(
                    "redis.url",
                    "must start with redis:// or rediss://",
                ));
            }
            if keel_session::deadpool_redis::redis::IntoConnectionInfo::into_connection_info(url)
                .is_err()
            {
                return Err(ConfigError::new("redis.url", "is not a valid Redis URL"));
            }
        }
        for (key, value) in [
            ("redis.pool_size", self.redis.pool_size as u64),
            ("redis.connect_timeout_ms", self.redis.connect_timeout_ms),
            ("redis.response_timeout_ms", self.redis.response_timeout_ms),
            ("redis.wait_timeout_ms", self.redis.wait_timeout_ms),
        ] {
            if value == 0 {
                return Err(ConfigError::new(key, "must be at least 1"));
            }
        }
        if let Err(error) = self.database.validate() {
            return Err(ConfigError::new(
                format!("database.{}", error.field),
                error.reason,
            ));
        }
        if self.cookie.key.is_some() {
            match self.cookie_key_bytes() {
                None => return Err(ConfigError::new("cookie.key", "is not base64")),
                Some(bytes) if bytes.len() < 64 => {
                    return Err(ConfigError::new(
                        "cookie.key",
                        format!(
                            "holds {} bytes; at least 64 random bytes are needed",
                            bytes.len()
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
        if let Err(error) = self.rate_limit.quotas.validate() {
            return Err(ConfigError::new(error.key(), error.reason()));
        }
        let cookie = keel_session::actix::SessionCookieConfig {
            secure: self.cookie_secure(),
            name: self.cookie.name.clone(),
        };
        if let Err(error) = cookie.validate() {
            return Err(ConfigError::new("cookie.name", error.to_string()));
        }
        self.validate_mail()?;
        if self.profile == Profile::Production {
            self.refuse_unsafe_production_settings()?;
        }
        Ok(())
    }

    fn refuse_unsafe_production_settings(&self) -> Result<(), ConfigError> {
        for origin in &self.cors.allowed_origins {
            if !origin.starts_with("https://") {
                return Err(ConfigError::new(
                    "cors.allowed_origins",
                    format!(
                        "`{origin}` is not https: in production a plain-http origin lets any network attacker act as the user"
                    ),
                ));
            }
        }
        if let Some(everything) = self.http.trusted_proxies.iter().find(|n| n.is_everything()) {
            return Err(ConfigError::new(
                "http.trusted_proxies",
                format!(
                    "`{everything}` trusts every address: any client could forge x-forwarded-for and dodge rate limits"
                ),
            ));
        }
        if self.auth.jwt.keys.is_empty() {
            return Err(ConfigError::new(
                "auth.jwt.keys",
                "production needs configured signing keys: an ephemeral key would log everyone out on every restart and differ between instances",
            ));
        }
        if self.cookie.key.is_none() {
            return Err(ConfigError::new(
                "cookie.key",
                "production needs a configured cookie key (base64 of 64 random bytes), the same on every instance",
            ));
        }
        if !self.cookie_secure() {
            return Err(ConfigError::new(
                "cookie.secure",
                "the session cookie must be Secure in production, or it travels over plain http",
            ));
        }
        if !self.rate_limit.enabled {
            return Err(ConfigError::new(
                "rate_limit.enabled",
                "rate limits may not be off in production: logins could be brute-forced",
            ));
        }
        if !self.app_url.starts_with("https://") {
            return Err(ConfigError::new(
                "app_url",
                "must be the https URL of the product's front end in production: the links in mails point there",
            ));
        }
        if self.mail.smtp_url.is_none() {
            return Err(ConfigError::new(
                "mail.smtp_url",
                "production needs an SMTP server: without one, verification and reset mails are only written to files",
            ));
        }
        if let Some(url) = &self.redis.url
            && url.expose_secret().ends_with("#insecure")
        {
            return Err(ConfigError::new(
                "redis.url",
                "`#insecure` turns off the check of Redis's TLS certificate: not in production",
            ));
        }
        Ok(())
    }
}

fn check_origin(origin: &str) -> Result<(), &'static str> {
    let rest = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        .ok_or("is not an origin: it must start with https:// or http://")?;
    if rest.is_empty() || rest.contains(['/', '?', '#', '*', ' ']) {
        return Err("is not an origin: write scheme://host[:port], without a path or wildcard");
    }
    Ok(())
}

/// Serialises a secret as `[REDACTED]`.
fn redacted<S: Serializer>(
    secret: &Option<SecretString>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match secret {
        Some(_) => serializer.serialize_str("[REDACTED]"),
        None => serializer.serialize_none(),
    }
}

/// Serialises a Redis URL with its password replaced, so operators still see the host.
fn redacted_url<S: Serializer>(
    url: &Option<SecretString>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match url {
        Some(url) => {
            serializer.serialize_str(&keel_storage::postgres::redact_url(url.expose_secret()))
        }
        None => serializer.serialize_none(),
    }
}

/// A configuration value that cannot be used: which key, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    key: String,
    reason: String,
}

impl ConfigError {
    fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            reason: reason.into(),
        }
    }

    /// A key that a command needs and the configuration lacks.
    pub fn missing(key: &str, reason: &str) -> Self {
        Self::new(key, reason)
    }

    /// The key at fault, dotted (`server.port`), or empty when the whole file is at fault.
    pub fn key(&self) -> &str {
        &self.key
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "invalid configuration: {}", self.reason)
        } else {
            write!(f, "invalid configuration: {}: {}", self.key, self.reason)
        }
    }
}

impl std::error::Error for ConfigError {}

/// Where the configuration comes from: the file and an environment to read `KEEL_*` from.
pub struct Sources {
    file: PathBuf,
    file_required: bool,
    env: Env,
}

impl Sources {
    /// The process's own environment: `KEEL_CONFIG` names the file (which must then exist),
    /// else an optional `keel.toml` in the working directory.
    #[allow(
        clippy::disallowed_methods,
        reason = "this is the one place that reads the environment"
    )]
    pub fn from_process_env() -> Self {
        let named = std::env::var_os("KEEL_CONFIG").map(PathBuf::from);
        Self {
            file_required: named.is_some(),
            file: named.unwrap_or_else(|| PathBuf::from("keel.toml")),
            env: keel_env(),
        }
    }
}

fn keel_env() -> Env {
    Env::prefixed("KEEL_").split("__").ignore(&["config"])
}

/// Loads and validates the configuration.
pub fn load(sources: Sources) -> Result<Config, ConfigError> {
    if sources.file_required && !sources.file.is_file() {
        return Err(ConfigError::new(
            "KEEL_CONFIG",
            format!("`{}` is not a readable file", sources.file.display()),
        ));
    }
    let config: Config = Figment::from(Serialized::defaults(Config::default()))
        .merge(Toml::file(&sources.file))
        .merge(sources.env)
        .extract()
        .map_err(describe)?;
    config.validate()?;
    Ok(config)
}

/// Turns figment's error into one line naming the key, the reason and where the value came from.
fn describe(error: figment::Error) -> ConfigError {
    let Some(error) = error.into_iter().next() else {
        return ConfigError::new("", "unreadable configuration");
    };
    let key = error.path.join(".");
    let source = error.metadata.as_ref().map(|metadata| {
        let profile = error.profile.clone().unwrap_or_default();
        match &metadata.source {
            Some(figment::Source::File(path)) => format!("in {}", path.display()),
            // figment's own interpolation does not know about the `__` split.
            _ if metadata.name.contains("environment") => {
                format!("from KEEL_{}", error.path.join("__").to_uppercase())
            }
            _ if !error.path.is_empty() => {
                format!("from {}", metadata.interpolate(&profile, &error.path))
            }
            _ => format!("from {}", metadata.name),
        }
    });
    let reason = match source {
        Some(source) => format!("{} ({source})", error.kind),
        None => error.kind.to_string(),
    };
    ConfigError::new(key, reason)
}

mod accounts;

pub use accounts::{AdminConfig, AuditConfig, MailConfig};

#[cfg(test)]
#[allow(
    clippy::result_large_err,
    reason = "figment::Jail's closures return figment::Error"
)]
mod tests;
