//! The benchmarks' reference: a bare actix-web hello-world, the limit of the HTTP stack on the
//! machine. `GET /` answers 200 `Hello, world!` as text; nothing else (no middleware, no logs).
//!
//! The port is the first argument, else `PORT`, else 8080. Workers are actix's default: one per
//! available CPU, which respects the affinity mask, so `taskset -c 0 bench-hello` runs one worker
//! exactly as a Keel server pinned the same way does.

use std::net::Ipv4Addr;

use actix_web::{App, HttpResponse, HttpServer, web};

async fn hello() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body("Hello, world!")
}

// The workspace keeps configuration reading in apps/server; this standalone reference binary
// has no configuration but its port.
#[expect(
    clippy::disallowed_methods,
    reason = "a standalone benchmark binary whose only setting is its port"
)]
fn port() -> std::io::Result<u16> {
    let raw = std::env::args()
        .nth(1)
        .or_else(|| std::env::var_os("PORT").and_then(|p| p.into_string().ok()));
    match raw {
        None => Ok(8080),
        Some(raw) => raw.parse().map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("usage: bench-hello [PORT] (or PORT=...); `{raw}` is not a port"),
            )
        }),
    }
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let port = port()?;
    HttpServer::new(|| App::new().route("/", web::get().to(hello)))
        .bind((Ipv4Addr::UNSPECIFIED, port))?
        .run()
        .await
}
