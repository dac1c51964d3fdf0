//! Clean-up that happens even when nothing is dropped: a server shared by every test of a
//! binary lives in a `static`, and statics are never dropped.

use std::process::{Child, ChildStdin, Command, Stdio};

/// A shell that runs a clean-up command once the pipe from this process closes: when the
/// watchdog is dropped, or when the test process exits, however it exits (a panic, Ctrl-C,
/// SIGKILL all close the pipe). It ignores SIGINT and SIGHUP, which a terminal sends to the
/// whole process group, so it outlives the test binary long enough to clean up.
pub(crate) struct Watchdog {
    child: Child,
    pipe: Option<ChildStdin>,
}

impl Watchdog {
    /// Arms a watchdog that runs `cleanup` (a shell command line) when the pipe closes.
    ///
    /// # Panics
    ///
    /// When `sh` cannot be started.
    pub(crate) fn arm(cleanup: &str) -> Watchdog {
        let script = format!("trap '' INT HUP; read -r _ignored; {cleanup}");
        let spawned = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(err) => panic!("cannot start a clean-up watchdog (sh): {err}"),
        };
        let pipe = child.stdin.take();
        Watchdog { child, pipe }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        // Closing the pipe is the signal; waiting makes the clean-up finish before we go on.
        drop(self.pipe.take());
        let _ = self.child.wait();
    }
}

/// `word` quoted for `sh`.
pub(crate) fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}
