//! `server`: loads the configuration, sets up logs, builds the app and runs it until SIGTERM or
//! SIGINT; or runs one administrative command and exits. Exit codes: 0 after a clean shutdown
//! or a command that did what it was asked, 1 when the server or the command fails, 2 for bad
//! configuration or usage.

use std::process::ExitCode;

use server::config::{self, Config, Sources};
use server::{Application, admin, shutdown, telemetry};

const USAGE: &str = "\
usage: server [COMMAND] [--print-config | --help | --version]

Runs the Keel server. Configuration comes from defaults, then keel.toml (or the file named by
KEEL_CONFIG), then KEEL_<SECTION>__<KEY> environment variables.

Commands:
  (none)                    serve until SIGTERM or SIGINT
  migrate                   apply the database migrations (database.url) and exit
  users import-from-redis   copy the accounts kept in Redis (redis.url) into PostgreSQL
                            (database.url) and exit; safe to run again
  admin grant <email>       give the account with this address the admin role in the
                            database (database.url) and exit; safe to run again

Options:
  --print-config   print the effective configuration (secrets redacted) and exit
  --help           print this help and exit
  --version        print the version and exit";

enum Command {
    Serve,
    PrintConfig,
    Migrate,
    ImportUsersFromRedis,
    GrantAdmin(String),
}

#[allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "the binary talks to its operator"
)]
fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let command = match args.as_slice() {
        [] => Command::Serve,
        ["--print-config"] => Command::PrintConfig,
        ["migrate"] => Command::Migrate,
        ["users", "import-from-redis"] => Command::ImportUsersFromRedis,
        ["admin", "grant", email] => Command::GrantAdmin((*email).to_owned()),
        ["--help" | "-h"] => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        ["--version" | "-V"] => {
            println!("server {}", server::startup::VERSION);
            return ExitCode::SUCCESS;
        }
        other => {
            eprintln!("server: unknown arguments `{}`\n\n{USAGE}", other.join(" "));
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
    let needs = match command {
        Command::Migrate | Command::GrantAdmin(_) => admin::needs_database(&config),
        Command::ImportUsersFromRedis => {
            admin::needs_database(&config).and_then(|()| admin::needs_redis(&config))
        }
        Command::Serve | Command::PrintConfig => Ok(()),
    };
    if let Err(error) = needs {
        eprintln!("server: {error}");
        return ExitCode::from(2);
    }
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
        match command {
            Command::Migrate => admin::migrate(&config).await,
            Command::ImportUsersFromRedis => admin::import_users_from_redis(&config).await,
            Command::GrantAdmin(email) => admin::grant_admin(&config, &email).await,
            Command::Serve | Command::PrintConfig => serve(config).await,
        }
    })
}

async fn serve(config: Config) -> ExitCode {
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
}
