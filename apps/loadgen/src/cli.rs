//! The command line. The benchmark harness depends on these names and defaults: change them
//! only together with bench/run.sh.

use std::net::IpAddr;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Socket.IO v4 load generator over WebSocket.
///
/// Progress goes to stderr; the result is one JSON object on stdout.
#[derive(Debug, Parser)]
#[command(name = "loadgen", version, about)]
pub struct Cli {
    /// Server base URL; repeat it to spread sockets round-robin over instances (the fan-out
    /// sender always uses the first).
    #[arg(
        long = "url",
        global = true,
        default_value = "http://127.0.0.1:3000",
        action = clap::ArgAction::Append
    )]
    pub urls: Vec<String>,
    /// Tokio worker threads of the load generator itself.
    #[arg(long, global = true, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: u16,
    /// Email of an existing account; without it a fresh account is registered.
    #[arg(long, global = true, requires = "password")]
    pub email: Option<String>,
    /// Password of that account.
    #[arg(long, global = true, requires = "email")]
    pub password: Option<String>,
    /// What to measure.
    #[command(subcommand)]
    pub scenario: Scenario,
}

/// The scenarios.
#[derive(Debug, Subcommand)]
pub enum Scenario {
    /// Open N authenticated sockets, hold them, and measure connect rate and server memory.
    Idle(IdleArgs),
    /// One sender, N receivers in one room: delivery rate and end-to-end latency.
    Fanout(FanoutArgs),
    /// Closed-loop `ping` events with acks on N sockets: round trips per second and latency.
    Acks(AcksArgs),
}

/// How sockets are opened, common to every scenario.
#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// Sockets in their handshake at once.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub connect_concurrency: u32,
    /// Local addresses to bind client sockets to, round-robin (e.g. 127.0.0.1,127.0.0.2), so
    /// more connections fit than one address's ephemeral ports.
    #[arg(long, value_delimiter = ',')]
    pub source_ips: Vec<IpAddr>,
}

/// Options of `idle`.
#[derive(Debug, Args)]
pub struct IdleArgs {
    /// Sockets to open.
    #[arg(long)]
    pub sockets: usize,
    /// Server process whose VmRSS is read before and after; repeat for several instances.
    #[arg(long = "server-pid")]
    pub server_pids: Vec<u32>,
    /// Seconds to hold the sockets open (answering pings) before the second reading.
    #[arg(long, default_value_t = 5.0)]
    pub hold_secs: f64,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// How the fan-out sender paces its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Every message as fast as the socket takes it, without waiting for acks.
    Burst,
    /// `--rate` messages per second.
    Paced,
}

impl Mode {
    /// The name used on the command line and in the report.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Burst => "burst",
            Self::Paced => "paced",
        }
    }
}

/// Options of `fanout`.
#[derive(Debug, Args)]
pub struct FanoutArgs {
    /// Receiver sockets (the sender comes on top).
    #[arg(long, default_value_t = 1000)]
    pub sockets: usize,
    /// Measured messages.
    #[arg(long, default_value_t = 200)]
    pub messages: u64,
    /// Burst or paced sending.
    #[arg(long, value_enum, default_value_t = Mode::Burst)]
    pub mode: Mode,
    /// Messages per second in paced mode.
    #[arg(long, default_value_t = 50.0)]
    pub rate: f64,
    /// Approximate size of each message body in bytes.
    #[arg(long, default_value_t = 64)]
    pub body_bytes: usize,
    /// Unmeasured messages sent (and awaited) first.
    #[arg(long, default_value_t = 20)]
    pub warmup: u64,
    /// The room every socket joins.
    #[arg(long, default_value = "room:bench")]
    pub room: String,
    /// Seconds to wait for missing deliveries after the last send.
    #[arg(long, default_value_t = 30.0)]
    pub drain_timeout_secs: f64,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// Options of `acks`.
#[derive(Debug, Args)]
pub struct AcksArgs {
    /// Sockets, each running one ping at a time.
    #[arg(long, default_value_t = 100)]
    pub sockets: usize,
    /// Measured seconds.
    #[arg(long, default_value_t = 10.0)]
    pub duration_secs: f64,
    /// Unmeasured seconds first.
    #[arg(long, default_value_t = 2.0)]
    pub warmup_secs: f64,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn the_harness_forms_parse() {
        let cli = Cli::try_parse_from([
            "loadgen",
            "--url",
            "http://a:1",
            "--url",
            "http://b:2",
            "--threads",
            "2",
            "fanout",
            "--sockets",
            "10",
            "--mode",
            "paced",
            "--rate",
            "100",
        ])
        .expect("parses");
        assert_eq!(cli.urls, ["http://a:1", "http://b:2"]);
        assert_eq!(cli.threads, 2);
        let Scenario::Fanout(args) = cli.scenario else {
            panic!("not fanout")
        };
        assert_eq!((args.sockets, args.messages, args.warmup), (10, 200, 20));
        assert_eq!(args.mode, Mode::Paced);

        let cli = Cli::try_parse_from([
            "loadgen",
            "idle",
            "--sockets",
            "5",
            "--server-pid",
            "1",
            "--server-pid",
            "2",
            "--source-ips",
            "127.0.0.1,127.0.0.2",
        ])
        .expect("parses");
        assert_eq!(cli.urls, ["http://127.0.0.1:3000"]);
        let Scenario::Idle(args) = cli.scenario else {
            panic!("not idle")
        };
        assert_eq!(args.server_pids, [1, 2]);
        assert_eq!(args.connect.source_ips.len(), 2);
        assert_eq!(args.connect.connect_concurrency, 64);

        assert!(Cli::try_parse_from(["loadgen", "--email", "a@b.c", "acks"]).is_err());
    }
}
