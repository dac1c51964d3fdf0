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
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let printed = String::from_utf8(output.stdout).unwrap();
    assert!(printed.contains("profile = \"production\""), "{printed}");
}
