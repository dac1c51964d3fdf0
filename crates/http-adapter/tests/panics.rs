//! A handler that panics costs its own request a generic 500 problem, and nothing else: the
//! worker keeps serving.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

use std::time::Duration;

use actix_web::{App, HttpResponse, HttpServer, web};
use keel_http_adapter::{Edge, HstsConfig, TrustedProxies};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn get(address: std::net::SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(address).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nhost: keel\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        stream.read_to_string(&mut response),
    )
    .await
    .unwrap()
    .unwrap();
    response
}

#[actix_web::test]
async fn a_panicking_handler_gets_a_generic_500_and_the_worker_keeps_serving() {
    let edge = Edge::new(
        keel_http_adapter::Cors::default(),
        keel_http_adapter::SecurityHeaders::new(&HstsConfig::default()),
        TrustedProxies::default(),
        Duration::from_secs(5),
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let server = HttpServer::new(move || {
        App::new()
            .route(
                "/boom",
                web::get().to(|| async {
                    if true {
                        panic!("secret internal detail 0xDEADBEEF");
                    }
                    HttpResponse::Ok().finish()
                }),
            )
            .route(
                "/fine",
                web::get().to(|| async { HttpResponse::Ok().body("fine") }),
            )
            .wrap(edge.clone())
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .unwrap()
    .run();
    let handle = server.handle();
    actix_web::rt::spawn(server);

    for _ in 0..3 {
        let response = get(address, "/boom").await;
        assert!(response.starts_with("HTTP/1.1 500"), "{response}");
        assert!(response.contains("application/problem+json"), "{response}");
        assert!(
            response.contains("\"code\":\"internal_error\""),
            "{response}"
        );
        assert!(response.contains("x-request-id"), "{response}");
        assert!(
            response.contains("x-content-type-options: nosniff"),
            "{response}"
        );
        assert!(
            !response.contains("DEADBEEF"),
            "the panic message stays on the server"
        );
        let fine = get(address, "/fine").await;
        assert!(fine.starts_with("HTTP/1.1 200"), "{fine}");
    }
    handle.stop(true).await;
}
