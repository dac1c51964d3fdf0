//! The example production configuration in deploy/ stays valid under the production checks.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

use std::process::Command;

#[test]
fn the_example_production_config_passes_the_production_checks() {
    let output = print_production_config(&[(
        "KEEL_MAIL__SMTP_URL",
        "smtps://keel:pw@smtp.example.com:465",
    )]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let printed = String::from_utf8(output.stdout).unwrap();
    assert!(printed.contains("profile = \"production\""), "{printed}");
    assert!(
        printed.contains("app_url = \"https://app.example.com\""),
        "{printed}"
    );
    // The SMTP password is a secret: redacted when printed.
    assert!(!printed.contains("pw@smtp"), "{printed}");
}

#[test]
fn production_refuses_to_start_without_an_smtp_server() {
    let output = print_production_config(&[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("mail.smtp_url"), "{stderr}");
}

/// `server --print-config` on deploy/keel.production.toml, with the secrets that production
/// takes from the environment (as deploy/README.md says) and `extra` variables.
fn print_production_config(extra: &[(&str, &str)]) -> std::process::Output {
    let file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/keel.production.toml"
    );
    Command::new(env!("CARGO_BIN_EXE_server"))
        .arg("--print-config")
        .env_clear()
        .env("KEEL_CONFIG", file)
        .env("KEEL_AUTH__JWT__ALGORITHM", "HS256")
        .env(
            "KEEL_AUTH__JWT__KEYS",
            r#"[{kid="2026-11",secret="0123456789abcdef0123456789abcdef0123"}]"#,
        )
        .env("KEEL_COOKIE__KEY", "a".repeat(88))
        .envs(extra.iter().copied())
        .output()
        .unwrap()
}

fn deploy_file(path: &str) -> String {
    let path = format!("{}/../../deploy/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn yaml(path: &str) -> Vec<yaml_rust2::Yaml> {
    yaml_rust2::YamlLoader::load_from_str(&deploy_file(path))
        .unwrap_or_else(|e| panic!("deploy/{path} is not valid YAML: {e}"))
}

#[test]
fn every_manifest_parses_and_the_compose_topology_has_its_database() {
    for path in [
        "docker-compose.yml",
        "k8s/configmap.yaml",
        "k8s/deployment.yaml",
        "k8s/ingress.yaml",
        "k8s/kustomization.yaml",
        "k8s/pdb.yaml",
        "k8s/secret.yaml",
        "k8s/service.yaml",
    ] {
        assert!(!yaml(path).is_empty(), "deploy/{path} is empty");
    }
    let compose = &yaml("docker-compose.yml")[0];
    let services = &compose["services"];
    for service in ["postgres", "redis", "keel-1", "keel-2", "nginx"] {
        assert!(!services[service].is_badvalue(), "no {service} service");
    }
    // The instances wait for a healthy database: the `x-keel` block says so, and each instance
    // merges it (a YAML merge key, `<<: *keel`, which this parser keeps as a plain key).
    assert_eq!(
        compose["x-keel"]["depends_on"]["postgres"]["condition"].as_str(),
        Some("service_healthy")
    );
    for instance in ["keel-1", "keel-2"] {
        assert_eq!(services[instance]["<<"], compose["x-keel"], "{instance}");
    }
    assert!(
        services["postgres"]["healthcheck"]["test"][1]
            .as_str()
            .is_some_and(|test| test.contains("pg_isready"))
    );
    // Every instance gets the database URL from the secrets, and so does Kubernetes.
    assert!(deploy_file("keel.env.example").contains("\nKEEL_DATABASE__URL=postgres://"));
    // Mail: the SMTP server is a secret everywhere; the front end's URL is configuration.
    assert!(deploy_file("keel.env.example").contains("\nKEEL_MAIL__SMTP_URL=smtps://"));
    let config = &yaml("k8s/configmap.yaml")[0];
    assert_eq!(
        config["data"]["KEEL_APP_URL"].as_str(),
        Some("https://app.example.com")
    );
    assert!(
        yaml("k8s/secret.yaml")[0]["stringData"]["KEEL_MAIL__SMTP_URL"]
            .as_str()
            .is_some_and(|url| url.starts_with("smtps://"))
    );
    let secret = &yaml("k8s/secret.yaml")[0];
    assert!(
        secret["stringData"]["KEEL_DATABASE__URL"]
            .as_str()
            .is_some_and(|url| url.starts_with("postgres://"))
    );
}
