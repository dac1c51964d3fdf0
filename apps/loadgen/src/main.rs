//! `loadgen`: a realtime load generator speaking Engine.IO v4 / Socket.IO v5 over WebSocket, so
//! it can load any Socket.IO server (Keel's events for rooms and pings).
//!
//! `loadgen [--url URL]... [--threads T] [--email E --password P] <idle|fanout|acks> [options]`
//!
//! Progress lines go to stderr; the result is one JSON object on stdout. The exit code is
//! non-zero, with the reason on stderr, when the server cannot be reached or refuses the
//! credentials; a socket failing mid-run is counted in the result instead.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a CLI reports on stdout and stderr"
)]

mod auth;
mod cli;
mod engine;
mod ramp;
mod scenarios;
mod stats;

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use serde_json::Value;

use crate::cli::{Cli, Scenario};
use crate::engine::{Connector, Target};

/// The error of anything that ends a run early; its message is all the user sees.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    stats::start_clock();
    let open_files = raise_open_files_limit();
    let runtime = if cli.threads == 1 {
        // One worker: the current-thread runtime has no cross-thread wake-ups to pay for.
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(usize::from(cli.threads))
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("loadgen: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(run(cli, open_files));
    // Sockets still open are simply dropped with the runtime.
    runtime.shutdown_background();
    match outcome {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("loadgen: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli, open_files: Option<u64>) -> Result<Value, Error> {
    let sockets = match &cli.scenario {
        Scenario::Idle(args) => args.sockets,
        Scenario::Fanout(args) => args.sockets + 1,
        Scenario::Acks(args) => args.sockets,
    };
    if let Some(limit) = open_files.filter(|&limit| sockets as u64 + 32 > limit) {
        eprintln!(
            "loadgen: warning: {sockets} sockets but at most {limit} open files; expect failures"
        );
    }
    let mut targets = Vec::with_capacity(cli.urls.len());
    for url in &cli.urls {
        targets.push(Target::resolve(url).await?);
    }
    let first = targets.first().ok_or("no --url")?.clone();
    let credentials = cli.email.zip(cli.password);
    let token = auth::access_token(&first.http_base, credentials).await?;
    let source_ips = match &cli.scenario {
        Scenario::Idle(args) => args.connect.source_ips.clone(),
        Scenario::Fanout(args) => args.connect.source_ips.clone(),
        Scenario::Acks(args) => args.connect.source_ips.clone(),
    };
    let connector = Connector::new(targets, source_ips, &token);
    probe(&connector).await?;
    let connector = Arc::new(connector);
    match cli.scenario {
        Scenario::Idle(args) => scenarios::idle::run(connector, args).await,
        Scenario::Fanout(args) => scenarios::fanout::run(connector, args).await,
        Scenario::Acks(args) => scenarios::acks::run(connector, args).await,
    }
}

/// Opens and closes one socket on every target first, so an unreachable instance or a token
/// it does not accept ends the run with a clear message instead of N counted failures.
async fn probe(connector: &Connector) -> Result<(), Error> {
    for target in connector.targets() {
        let ws = connector
            .connect_to(target, None)
            .await
            .map_err(|error| format!("{}: the socket handshake failed: {error}", target.ws_url))?;
        scenarios::close(ws).await;
    }
    Ok(())
}

/// Raises the soft limit of open files to the hard limit (every socket is a descriptor) and
/// returns the limit in force.
fn raise_open_files_limit() -> Option<u64> {
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => Some(hard),
            Err(error) => {
                eprintln!(
                    "loadgen: cannot raise the open-files limit from {soft} to {hard}: {error}"
                );
                Some(soft)
            }
        },
        Ok((soft, _)) => Some(soft),
        Err(error) => {
            eprintln!("loadgen: cannot read the open-files limit: {error}");
            None
        }
    }
}
