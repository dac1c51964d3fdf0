//! Ports for the private servers.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};

/// A port of 127.0.0.1 that was free a moment ago. The server binds it right after, so a
/// collision is unlikely; the servers retry on another port when it happens.
pub(crate) fn free_port() -> u16 {
    match TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))) {
        Ok(listener) => match listener.local_addr() {
            Ok(addr) => addr.port(),
            Err(err) => panic!("cannot read the address of a bound socket: {err}"),
        },
        Err(err) => panic!("cannot bind 127.0.0.1:0 to find a free port: {err}"),
    }
}
