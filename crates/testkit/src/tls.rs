//! Self-signed certificates for servers that tests run with TLS.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Writes a fresh self-signed certificate for `localhost` and `127.0.0.1` (P-256, two days)
/// and its key into `dir` with `openssl`, and returns their paths.
///
/// # Panics
///
/// When `openssl` is missing or fails.
pub(crate) fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let cert = dir.join("server.crt");
    let key = dir.join("server.key");
    let output = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdin(Stdio::null())
        .output();
    match output {
        Ok(output) if output.status.success() => (cert, key),
        Ok(output) => panic!(
            "openssl could not make a certificate: {}",
            String::from_utf8_lossy(&output.stderr)
        ),
        Err(err) => panic!(
            "cannot run openssl ({err}); install it with `apt-get install openssl` to run the TLS tests"
        ),
    }
}
