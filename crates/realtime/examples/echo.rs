//! The protocol fixture: a realtime server with no authentication and configurable timings.
//!
//! On connection to `/` or `/custom` it emits `auth` with the CONNECT payload (or `{}`); it
//! answers `message` with `message-back` carrying the same arguments (binary included), and
//! `message-with-ack` with an acknowledgement of the same arguments.
//!
//! ```text
//! cargo run -p keel-realtime --example echo -- --port 0 --ping-interval 300 --ping-timeout 200
//! ```
//!
//! The first line on stdout is `listening on 127.0.0.1:PORT`, so a test can start it on port 0.
//! Options: `--port` (3000), `--ping-interval` ms (25000), `--ping-timeout` ms (20000),
//! `--max-payload` bytes (1000000), `--connect-timeout` ms (45000).

use std::sync::Arc;

use keel_domain::BoxFuture;
use keel_realtime::socketio::JsonObject;
use keel_realtime::{AllowAll, Event, NamespaceHandler, RealtimeConfig, RealtimeServer, Socket};

struct Echo;

impl NamespaceHandler for Echo {
    fn on_connect<'a>(
        &'a self,
        socket: &'a Socket,
        auth: Option<&'a JsonObject>,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let auth = auth.cloned().unwrap_or_default();
            let _ = socket.emit_json("auth", &auth);
        })
    }

    fn on_event<'a>(&'a self, socket: &'a Socket, event: Event) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let Event { name, args, ack } = event;
            match (name.as_str(), ack) {
                ("message", _) => {
                    let _ = socket.emit("message-back", args);
                }
                ("message-with-ack", Some(ack)) => {
                    let _ = ack.send(args);
                }
                _ => {}
            }
        })
    }
}

fn parse_args() -> Result<(u16, RealtimeConfig), String> {
    let mut port = 3000;
    let mut config = RealtimeConfig {
        // A protocol fixture: tests open many connections and send bursts from one address.
        connections_per_ip_per_second: 0,
        max_sockets_per_user: 0,
        events_per_socket_per_second: 0,
        ..RealtimeConfig::default()
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = |value: &str| {
            value
                .parse::<u64>()
                .map_err(|_| format!("{flag}: {value:?} is not a number"))
        };
        match flag.as_str() {
            "--port" => port = u16::try_from(number(&value)?).map_err(|e| e.to_string())?,
            "--ping-interval" => config.ping_interval_ms = number(&value)?,
            "--ping-timeout" => config.ping_timeout_ms = number(&value)?,
            "--max-payload" => {
                config.max_payload = usize::try_from(number(&value)?).map_err(|e| e.to_string())?;
            }
            "--connect-timeout" => config.connect_timeout_ms = number(&value)?,
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    Ok((port, config))
}

#[expect(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "the listening line on stdout is how tests find the port"
)]
#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let (port, config) = parse_args().map_err(|message| {
        eprintln!("{message}");
        std::io::Error::new(std::io::ErrorKind::InvalidInput, message)
    })?;
    let echo: Arc<dyn NamespaceHandler> = Arc::new(Echo);
    let realtime = RealtimeServer::builder(config, Arc::new(AllowAll))
        .namespace("/", echo.clone())
        .namespace("/custom", echo)
        .build()
        .map_err(std::io::Error::other)?;
    let mounted = realtime.clone();
    let server = actix_web::HttpServer::new(move || {
        let mounted = mounted.clone();
        actix_web::App::new().configure(move |cfg| mounted.configure(cfg))
    })
    .disable_signals()
    .bind(("127.0.0.1", port))?;
    for addr in server.addrs() {
        println!("listening on {addr}");
    }
    let server = server.run();
    let handle = server.handle();
    actix_web::rt::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            realtime.shutdown();
            realtime.closed().await;
            handle.stop(true).await;
        }
    });
    server.await
}
