//! `server`: loads the configuration, sets up logs, builds the app and runs it until SIGTERM or
//! SIGINT. Exit codes: 0 after a clean shutdown, 1 when the server fails, 2 for bad
//! configuration or usage.

use std::process::ExitCode;

use server::config::{self, Sources};
use server::{Application, shutdown, telemetry};

const USAGE: &str = "\
usage: server [--print-config | --help | --version]

Runs the Keel server. Configuration comes from defaults, then keel.toml (or the file named by
KEEL_CONFIG), then KEEL_<SECTION>__<KEY> environment variables.

  --print-config   print the effective configuration (secrets redacted) and exit
  --help           print this help and exit
  --version        print the version and exit";

enum Command {
    Serve,
    PrintConfig,
}

#[allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "the binary talks to its operator"
)]
fn main() -> ExitCode {
    let command = match std::env::args().nth(1).as_deref() {
        None => Command::Serve,
        Some("--print-config") => Command::PrintConfig,
        Some("--help" | "-h") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some("--version" | "-V") => {
            println!("server {}", server::startup::VERSION);
            return ExitCode::SUCCESS;
        }
        Some(other) => {
            eprintln!("server: unknown argument `{other}`\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };

    let config = match config::load(Sources::from_process_env()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("server: {error}");
            return ExitCode::from(2);
        }
    };
    if let Command::PrintConfig = command {
        return match config.to_redacted_toml() {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("server: {error}");
                ExitCode::FAILURE
            }
        };
    }

    let _logs = telemetry::init(&config);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let stop = shutdown::signal();
        let app = match Application::build(config).await {
            Ok(app) => app,
            Err(error) => {
                tracing::error!(error = %error, cause = ?std::error::Error::source(&error), "start-up failed");
                return ExitCode::FAILURE;
            }
        };
        match app.run_until_stopped(stop).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                tracing::error!(%error, "server failed");
                ExitCode::FAILURE
            }
        }
    })
}
