//! Unit tests of `config`.

use figment::Jail;

use super::*;

fn load_in(jail: &Jail) -> Result<Config, ConfigError> {
    let _ = jail;
    load(Sources {
        file: PathBuf::from("keel.toml"),
        file_required: false,
        env: keel_env(),
    })
}

#[test]
fn defaults_are_the_development_profile_on_port_3000() {
    Jail::expect_with(|jail| {
        let config = load_in(jail).unwrap();
        assert_eq!(config.profile, Profile::Development);
        assert_eq!(config.server.port, 3000);
        assert_eq!(config.log_format(), LogFormat::Pretty);
        assert_eq!(config.drain_seconds(), 0);
        assert!(config.redis.url.is_none());
        assert!(config.rate_limit.enabled);
        Ok(())
    });
}

#[test]
fn the_environment_overrides_the_file() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "keel.toml",
            "[server]\nport = 4000\nkeep_alive_seconds = 9\n",
        )?;
        jail.set_env("KEEL_SERVER__PORT", "5000");
        jail.set_env("KEEL_CORS__ALLOWED_ORIGINS", r#"["https://app.example"]"#);
        jail.set_env("KEEL_RATE_LIMIT__ENABLED", "false");
        let config = load_in(jail).unwrap();
        assert_eq!(config.server.port, 5000);
        assert_eq!(config.server.keep_alive_seconds, 9);
        assert_eq!(
            config.cors.allowed_origins,
            vec!["https://app.example".to_owned()]
        );
        assert!(!config.rate_limit.enabled);
        Ok(())
    });
}

#[test]
fn a_bad_value_names_its_key_and_its_source() {
    Jail::expect_with(|jail| {
        jail.set_env("KEEL_SERVER__PORT", "not-a-port");
        let error = load_in(jail).unwrap_err();
        assert_eq!(error.key(), "server.port");
        let text = error.to_string();
        assert!(text.contains("KEEL_SERVER__PORT"), "{text}");
        Ok(())
    });
}

#[test]
fn an_unknown_key_is_refused_rather_than_ignored() {
    Jail::expect_with(|jail| {
        jail.set_env("KEEL_SERVER__PROT", "3000");
        let error = load_in(jail).unwrap_err();
        assert!(error.to_string().contains("prot"), "{error}");
        Ok(())
    });
}

#[test]
fn production_refuses_unsafe_settings_and_says_which() {
    Jail::expect_with(|jail| {
        jail.set_env("KEEL_PROFILE", "production");
        jail.set_env("KEEL_CORS__ALLOWED_ORIGINS", r#"["http://app.example"]"#);
        assert_eq!(load_in(jail).unwrap_err().key(), "cors.allowed_origins");

        jail.set_env("KEEL_CORS__ALLOWED_ORIGINS", "[]");
        jail.set_env("KEEL_HTTP__TRUSTED_PROXIES", r#"["0.0.0.0/0"]"#);
        assert_eq!(load_in(jail).unwrap_err().key(), "http.trusted_proxies");

        jail.set_env("KEEL_HTTP__TRUSTED_PROXIES", r#"["10.0.0.0/8"]"#);
        assert_eq!(load_in(jail).unwrap_err().key(), "auth.jwt.keys");

        jail.set_env("KEEL_AUTH__JWT__ALGORITHM", "HS256");
        jail.set_env(
            "KEEL_AUTH__JWT__KEYS",
            r#"[{kid="k1",secret="0123456789abcdef0123456789abcdef"}]"#,
        );
        assert_eq!(load_in(jail).unwrap_err().key(), "cookie.key");

        jail.set_env("KEEL_COOKIE__KEY", BASE64.encode([7u8; 64]));
        jail.set_env("KEEL_COOKIE__SECURE", "false");
        assert_eq!(load_in(jail).unwrap_err().key(), "cookie.secure");

        jail.set_env("KEEL_COOKIE__SECURE", "true");
        jail.set_env("KEEL_RATE_LIMIT__ENABLED", "false");
        assert_eq!(load_in(jail).unwrap_err().key(), "rate_limit.enabled");

        jail.set_env("KEEL_RATE_LIMIT__ENABLED", "true");
        assert_eq!(load_in(jail).unwrap_err().key(), "app_url");

        jail.set_env("KEEL_APP_URL", "https://app.example");
        assert_eq!(load_in(jail).unwrap_err().key(), "mail.smtp_url");

        jail.set_env("KEEL_MAIL__SMTP_URL", "smtps://keel:pw@smtp.example:465");
        let config = load_in(jail).unwrap();
        assert_eq!(config.log_format(), LogFormat::Json);
        assert_eq!(config.drain_seconds(), 5);
        assert!(config.cookie_secure());
        Ok(())
    });
}

#[test]
fn a_cookie_key_must_be_base64_of_64_bytes() {
    Jail::expect_with(|jail| {
        jail.set_env("KEEL_COOKIE__KEY", BASE64.encode([7u8; 32]));
        let error = load_in(jail).unwrap_err();
        assert_eq!(error.key(), "cookie.key");
        assert!(error.to_string().contains("32 bytes"), "{error}");
        jail.set_env("KEEL_COOKIE__KEY", "not base64!");
        assert_eq!(load_in(jail).unwrap_err().key(), "cookie.key");
        Ok(())
    });
}

#[test]
fn argon2_parameters_are_checked_at_load_and_named() {
    Jail::expect_with(|jail| {
        jail.set_env("KEEL_AUTH__PASSWORD_HASHING__MEMORY_KIB", "65536");
        jail.set_env("KEEL_AUTH__PASSWORD_HASHING__ITERATIONS", "3");
        let config = load_in(jail).unwrap();
        assert_eq!(config.auth.password_hashing.memory_kib, 65_536);
        jail.set_env("KEEL_AUTH__PASSWORD_HASHING__ITERATIONS", "0");
        let error = load_in(jail).unwrap_err();
        assert_eq!(error.key(), "auth.password_hashing.iterations");
        jail.set_env("KEEL_AUTH__PASSWORD_HASHING__ITERATIONS", "2");
        jail.set_env("KEEL_AUTH__PASSWORD_HASHING__MEMORY_KIB", "1");
        let error = load_in(jail).unwrap_err();
        assert_eq!(error.key(), "auth.password_hashing.memory_kib");
        Ok(())
    });
}

#[test]
fn development_cookies_are_not_secure_unless_asked() {
    Jail::expect_with(|jail| {
        assert!(!load_in(jail).unwrap().cookie_secure());
        jail.set_env("KEEL_COOKIE__SECURE", "true");
        assert!(load_in(jail).unwrap().cookie_secure());
        Ok(())
    });
}

#[test]
fn printing_never_shows_key_material() {
    Jail::expect_with(|jail| {
        jail.set_env("KEEL_AUTH__JWT__ALGORITHM", "HS256");
        jail.set_env(
            "KEEL_AUTH__JWT__KEYS",
            r#"[{kid="k1",secret="canary-hmac-secret-0123456789abcdef"}]"#,
        );
        jail.set_env(
            "KEEL_COOKIE__KEY",
            BASE64.encode(*b"canary-cookie-key-canary-cookie-key-canary-cookie-key-canary-coo"),
        );
        let printed = load_in(jail).unwrap().to_redacted_toml().unwrap();
        assert!(!printed.contains("canary"), "{printed}");
        assert!(!printed.contains(
            &BASE64.encode(*b"canary-cookie-key-canary-cookie-key-canary-cookie-key-canary-coo")
        ));
        assert!(printed.contains("kid = \"k1\""), "{printed}");
        Ok(())
    });
}

#[test]
fn origins_must_be_origins() {
    Jail::expect_with(|jail| {
        jail.set_env(
            "KEEL_CORS__ALLOWED_ORIGINS",
            r#"["https://app.example/path"]"#,
        );
        assert_eq!(load_in(jail).unwrap_err().key(), "cors.allowed_origins");
        jail.set_env("KEEL_CORS__ALLOWED_ORIGINS", r#"["*"]"#);
        assert_eq!(load_in(jail).unwrap_err().key(), "cors.allowed_origins");
        Ok(())
    });
}

#[test]
fn a_bad_database_setting_names_its_key_without_the_url() {
    Jail::expect_with(|jail| {
        jail.set_env("KEEL_DATABASE__URL", "mysql://keel:canary-pw@db/keel");
        let error = load_in(jail).unwrap_err();
        assert_eq!(error.key(), "database.url");
        assert!(!error.to_string().contains("canary"), "{error}");
        jail.set_env("KEEL_DATABASE__URL", "postgres://keel:canary-pw@db/keel");
        jail.set_env("KEEL_DATABASE__STATEMENT_TIMEOUT_MS", "0");
        assert_eq!(
            load_in(jail).unwrap_err().key(),
            "database.statement_timeout_ms"
        );
        jail.set_env("KEEL_DATABASE__STATEMENT_TIMEOUT_MS", "1500");
        let config = load_in(jail).unwrap();
        assert_eq!(
            config.database.statement_timeout(),
            std::time::Duration::from_millis(1500)
        );
        let printed = config.to_redacted_toml().unwrap();
        assert!(!printed.contains("canary"), "{printed}");
        assert!(
            printed.contains("postgres://[REDACTED]@db/keel"),
            "{printed}"
        );
        Ok(())
    });
}

#[test]
fn zero_redis_bounds_and_insecure_tls_in_production_are_refused() {
    Jail::expect_with(|jail| {
        jail.set_env("KEEL_REDIS__POOL_SIZE", "0");
        assert_eq!(load_in(jail).unwrap_err().key(), "redis.pool_size");
        jail.set_env("KEEL_REDIS__POOL_SIZE", "4");
        jail.set_env("KEEL_REDIS__URL", "rediss://cache:6380/#insecure");
        assert!(load_in(jail).is_ok());
        jail.set_env("KEEL_PROFILE", "production");
        jail.set_env("KEEL_AUTH__JWT__ALGORITHM", "HS256");
        jail.set_env(
            "KEEL_AUTH__JWT__KEYS",
            r#"[{kid="k1",secret="0123456789abcdef0123456789abcdef"}]"#,
        );
        jail.set_env("KEEL_COOKIE__KEY", BASE64.encode([7u8; 64]));
        jail.set_env("KEEL_APP_URL", "https://app.example");
        jail.set_env("KEEL_MAIL__SMTP_URL", "smtps://smtp.example:465");
        assert_eq!(load_in(jail).unwrap_err().key(), "redis.url");
        jail.set_env("KEEL_REDIS__URL", "rediss://cache:6380/");
        assert!(load_in(jail).is_ok());
        Ok(())
    });
}

#[test]
fn printing_redacts_the_redis_password_but_keeps_the_host() {
    Jail::expect_with(|jail| {
        jail.set_env(
            "KEEL_REDIS__URL",
            "redis://:canary-s3cret@cache.internal:6379/0",
        );
        let printed = load_in(jail).unwrap().to_redacted_toml().unwrap();
        assert!(!printed.contains("canary-s3cret"), "{printed}");
        assert!(
            printed.contains("redis://[REDACTED]@cache.internal:6379/0"),
            "{printed}"
        );
        Ok(())
    });
}

#[test]
fn mail_settings_are_checked_when_they_load_and_name_their_key() {
    Jail::expect_with(|jail| {
        for (key, value, at_fault) in [
            ("KEEL_APP_URL", "app.example.com", "app_url"),
            ("KEEL_APP_URL", "https://app.example.com/?x=1", "app_url"),
            ("KEEL_MAIL__FROM", "not an address", "mail.from"),
            (
                "KEEL_MAIL__SMTP_URL",
                "http://smtp.example",
                "mail.smtp_url",
            ),
            // A password in clear over the network.
            (
                "KEEL_MAIL__SMTP_URL",
                "smtp://u:pw@smtp.example:25",
                "mail.smtp_url",
            ),
            ("KEEL_MAIL__MAX_ATTEMPTS", "0", "mail.max_attempts"),
            (
                "KEEL_MAIL__TEMPLATES",
                "/nonexistent/keel-templates",
                "mail.templates",
            ),
        ] {
            jail.set_env(key, value);
            let error = load_in(jail).unwrap_err();
            assert_eq!(error.key(), at_fault, "{key}={value}: {error}");
            // The URL may hold a password: never repeated.
            assert!(!error.to_string().contains("pw@"), "{error}");
            jail.clear_env();
        }
        jail.set_env("KEEL_APP_URL", "https://app.example.com/base/");
        jail.set_env("KEEL_MAIL__SMTP_URL", "smtp://127.0.0.1:2525");
        let config = load_in(jail).unwrap();
        assert_eq!(config.mail.from, "Keel <no-reply@localhost>");
        Ok(())
    });
}

#[test]
fn a_zero_quota_and_a_bad_cookie_name_are_refused_when_they_load() {
    Jail::expect_with(|jail| {
        jail.set_env(
            "KEEL_RATE_LIMIT__QUOTAS__LOGIN_IP",
            "{limit=0, window_seconds=60}",
        );
        assert_eq!(
            load_in(jail).unwrap_err().key(),
            "rate_limit.quotas.login_ip"
        );
        jail.set_env(
            "KEEL_RATE_LIMIT__QUOTAS__LOGIN_IP",
            "{limit=5, window_seconds=0}",
        );
        assert_eq!(
            load_in(jail).unwrap_err().key(),
            "rate_limit.quotas.login_ip"
        );
        jail.clear_env();
        jail.set_env("KEEL_COOKIE__NAME", "bad name;");
        assert_eq!(load_in(jail).unwrap_err().key(), "cookie.name");
        // A __Host- name needs Secure, which development leaves off.
        jail.set_env("KEEL_COOKIE__NAME", "__Host-app");
        assert_eq!(load_in(jail).unwrap_err().key(), "cookie.name");
        jail.set_env("KEEL_COOKIE__SECURE", "true");
        assert!(load_in(jail).is_ok());
        Ok(())
    });
}
