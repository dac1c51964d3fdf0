//! The binary's command line: exit codes and what it prints, for operators and scripts.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

use std::process::{Command, Output};

fn server(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_server"))
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .expect("the binary runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn an_invalid_value_exits_2_with_one_line_naming_the_key() {
    let output = server(&[], &[("KEEL_SERVER__PORT", "seventy")]);
    assert_eq!(output.status.code(), Some(2));
    let text = stderr(&output);
    assert_eq!(text.trim_end().lines().count(), 1, "one line: {text}");
    assert!(text.contains("server.port"), "{text}");
    assert!(text.contains("KEEL_SERVER__PORT"), "{text}");
    assert!(
        !text.contains("panicked") && !text.contains("backtrace"),
        "{text}"
    );
}

#[test]
fn production_refuses_an_unsafe_setting_and_says_which() {
    let output = server(
        &[],
        &[
            ("KEEL_PROFILE", "production"),
            ("KEEL_HTTP__TRUSTED_PROXIES", r#"["0.0.0.0/0"]"#),
        ],
    );
    assert_eq!(output.status.code(), Some(2));
    let text = stderr(&output);
    assert!(text.contains("http.trusted_proxies"), "{text}");
    assert!(text.contains("forge"), "the reason is given: {text}");
}

#[test]
fn a_named_config_file_that_does_not_exist_is_an_error() {
    let output = server(&[], &[("KEEL_CONFIG", "/nonexistent/keel.toml")]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("KEEL_CONFIG"));
}

#[test]
fn print_config_shows_the_effective_values_with_secrets_redacted() {
    let output = server(
        &["--print-config"],
        &[
            ("KEEL_SERVER__PORT", "4321"),
            (
                "KEEL_REDIS__URL",
                "redis://:canary-Zq9xPw@cache.internal:6379",
            ),
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let printed = String::from_utf8(output.stdout).unwrap();
    assert!(printed.contains("port = 4321"), "{printed}");
    assert!(printed.contains("cache.internal:6379"), "{printed}");
    assert!(!printed.contains("canary-Zq9xPw"), "{printed}");
    let parsed: toml::Value = toml::from_str(&printed).expect("the output is valid TOML");
    assert_eq!(parsed["server"]["port"].as_integer(), Some(4321));
}

#[test]
fn an_unknown_argument_exits_2_with_usage() {
    let output = server(&["--frobnicate"], &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("usage: server"));
}

#[test]
fn commands_that_need_a_store_say_which_key_is_missing() {
    let output = server(&["migrate"], &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("database.url"),
        "{}",
        stderr(&output)
    );

    let output = server(
        &["users", "import-from-redis"],
        &[("KEEL_DATABASE__URL", "postgres://keel@127.0.0.1:1/keel")],
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("redis.url"), "{}", stderr(&output));

    let output = server(&["users", "frobnicate"], &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("usage: server"));
}

#[test]
fn migrating_an_unreachable_database_fails_with_exit_1_in_bounded_time() {
    let started = std::time::Instant::now();
    let output = server(
        &["migrate"],
        &[
            (
                "KEEL_DATABASE__URL",
                "postgres://keel:canary-pw@127.0.0.1:1/keel",
            ),
            ("KEEL_DATABASE__CONNECT_TIMEOUT_MS", "500"),
            ("KEEL_LOG__FORMAT", "json"),
        ],
    );
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    let logs = String::from_utf8_lossy(&output.stdout);
    assert!(logs.contains("the migrations failed"), "{logs}");
    assert!(!logs.contains("canary-pw"), "{logs}");
}
