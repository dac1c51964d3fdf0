//! The example production configuration in deploy/ stays valid under the production checks.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

use std::process::Command;

#[test]
fn the_example_production_config_passes_the_production_checks() {
    let file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/keel.production.toml"
    );
    let output = Command::new(env!("CARGO_BIN_EXE_server"))
        .arg("--print-config")
        .env_clear()
        .env("KEEL_CONFIG", file)
        // Secrets come from the environment in production, as deploy/README.md says.
        .env("KEEL_AUTH__JWT__ALGORITHM", "HS256")
        .env(
            "KEEL_AUTH__JWT__KEYS",
            r#"[{kid="2026-11",secret="0123456789abcdef0123456789abcdef0123"}]"#,
        )
        .env("KEEL_COOKIE__KEY", "a".repeat(88))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let printed = String::from_utf8(output.stdout).unwrap();
    assert!(printed.contains("profile = \"production\""), "{printed}");
}
