//! One Engine.IO connection over WebSocket: the reader task that owns its sockets, and the
//! writer task that drains its bounded outbound queue.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_ws::{AggregatedMessage, AggregatedMessageStream, ProtocolError, Session};
use bytes::Bytes;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::CodecError;
use crate::auth::{ConnectRequest, Identity};
use crate::engineio::{self, Handshake};
use crate::handler::{DisconnectReason, NamespaceHandler};
use crate::keel_events::{codes, error_ack};
use crate::server::Shared;
use crate::socket::{
    AckSender, CloseWhy, ConnHandle, Control, Event, OutPacket, Outbound, Socket, SocketInner,
    random_id,
};
use crate::socketio::{Decoder, JsonObject, MAIN_NAMESPACE, Packet, PacketKind, Value};

/// Control requests are rare (a revocation, a server-side disconnect); more than this many
/// waiting means something loops, and the connection is closed instead.
const CONTROL_CAPACITY: usize = 64;

/// What the upgrade request told us, kept for every CONNECT of the connection. Not its headers:
/// a copy of the request's header map costs kilobytes per idle connection, and what the
/// connect-auth port needs from them it captures in `on_upgrade`.
#[derive(Debug)]
pub(crate) struct Upgrade {
    pub(crate) client_ip: Option<IpAddr>,
    pub(crate) captured: Option<String>,
}

/// Where a connection's inbound traffic comes from.
pub(crate) enum Input {
    /// A WebSocket read by the connection task itself.
    WebSocket(AggregatedMessageStream),
    /// Packets handed over by HTTP long-polling requests and, after an upgrade, the WebSocket
    /// messages that the upgrade task reads (the WebSocket may live on another worker thread,
    /// and actix's message stream cannot move between threads).
    Channel(mpsc::Receiver<Inbound>),
}

/// One item of [`Input::Channel`].
#[derive(Debug)]
pub(crate) enum Inbound {
    Packet(engineio::Packet),
    WebSocket(AggregatedMessage),
    Failed(CloseWhy),
}

impl Input {
    async fn next(&mut self) -> Result<Inbound, CloseWhy> {
        match self {
            Self::WebSocket(stream) => match stream.recv().await {
                None => Err(CloseWhy::Gone),
                Some(Err(error)) => Err(close_for_ws_error(&error)),
                Some(Ok(message)) => Ok(Inbound::WebSocket(message)),
            },
            Self::Channel(rx) => match rx.recv().await {
                None => Err(CloseWhy::Gone),
                Some(Inbound::Failed(why)) => Err(why),
                Some(inbound) => Ok(inbound),
            },
        }
    }
}

/// A new connection's handle, with the receiving ends of its outbound queue and control
/// channel.
pub(crate) fn new_handle(
    shared: &Shared,
) -> (
    Arc<ConnHandle>,
    mpsc::Receiver<Outbound>,
    mpsc::Receiver<Control>,
) {
    let (queue_tx, queue_rx) = mpsc::channel(shared.config.outbound_queue);
    let (control_tx, control_rx) = mpsc::channel(CONTROL_CAPACITY);
    let handle = Arc::new(ConnHandle::new(
        queue_tx,
        control_tx,
        shared.shutdown.child_token(),
    ));
    (handle, queue_rx, control_rx)
}

/// Runs a connection that is a WebSocket from the start, with its writer task.
pub(crate) async fn run_websocket(
    shared: Arc<Shared>,
    upgrade: Upgrade,
    session: Session,
    stream: AggregatedMessageStream,
) {
    let (handle, queue_rx, control_rx) = new_handle(&shared);
    let writer = tokio::task::spawn_local(write_loop(
        session,
        Box::new(queue_rx),
        handle.clone(),
        shared.config.close_grace(),
    ));
    let opening = Opening {
        sid: random_id(),
        // Already on the best transport: there is nothing to upgrade to.
        upgrades: Vec::new(),
    };
    run(
        shared,
        upgrade,
        opening,
        handle,
        control_rx,
        Input::WebSocket(stream),
    )
    .await;
    let _ = writer.await;
}

/// The OPEN packet's connection-specific part.
pub(crate) struct Opening {
    pub(crate) sid: String,
    pub(crate) upgrades: Vec<String>,
}

/// Runs one connection to its end: queues OPEN, reads until the connection closes, then
/// disconnects its sockets.
pub(crate) async fn run(
    shared: Arc<Shared>,
    upgrade: Upgrade,
    opening: Opening,
    handle: Arc<ConnHandle>,
    mut control_rx: mpsc::Receiver<Control>,
    mut input: Input,
) {
    let config = &shared.config;
    let now = Instant::now();
    let mut conn = Conn {
        decoder: Decoder::new(shared.limits),
        ping_due: now + config.ping_interval(),
        pong_deadline: None,
        connect_deadline: Some(now + config.connect_timeout()),
        sockets: HashMap::new(),
        handle,
        upgrade,
        shared,
    };
    if conn.open(opening).is_ok() {
        conn.read_loop(&mut input, &mut control_rx).await;
    }
    conn.disconnect_all().await;
}

struct SocketEntry {
    socket: Socket,
    handler: Arc<dyn NamespaceHandler>,
    throttle: EventThrottle,
}

struct Conn {
    shared: Arc<Shared>,
    handle: Arc<ConnHandle>,
    upgrade: Upgrade,
    decoder: Decoder,
    /// The connected sockets, by namespace.
    sockets: HashMap<Arc<str>, SocketEntry>,
    ping_due: Instant,
    /// Set while a ping waits for its pong.
    pong_deadline: Option<Instant>,
    /// Set until the first namespace connects.
    connect_deadline: Option<Instant>,
}

impl Conn {
    fn open(&self, opening: Opening) -> Result<(), CloseWhy> {
        let config = &self.shared.config;
        let open = engineio::Packet::Open(Handshake {
            sid: opening.sid,
            upgrades: opening.upgrades,
            ping_interval: config.ping_interval_ms,
            ping_timeout: config.ping_timeout_ms,
            max_payload: config.max_payload as u64,
        });
        let engineio::Frame::Text(text) = open.encode().map_err(|_| CloseWhy::Protocol)? else {
            return Err(CloseWhy::Protocol);
        };
        self.queue(Arc::new(OutPacket {
            text: text.into(),
            attachments: Vec::new(),
        }));
        Ok(())
    }

    async fn read_loop(&mut self, input: &mut Input, control_rx: &mut mpsc::Receiver<Control>) {
        // One cancellation waiter and one timer for the connection's life, moved rather than
        // made anew for every message: registering and dropping them per packet cost more than
        // the rest of an ack round trip.
        let closing = self.handle.closing.clone();
        let cancelled = closing.cancelled();
        tokio::pin!(cancelled);
        let timer = tokio::time::sleep_until(self.next_deadline());
        tokio::pin!(timer);
        loop {
            let deadline = self.next_deadline();
            if timer.deadline() != deadline {
                timer.as_mut().reset(deadline);
            }
            tokio::select! {
                biased;
                () = &mut cancelled => break,
                Some(control) = control_rx.recv() => self.on_control(control).await,
                () = &mut timer => self.on_timer(),
                inbound = input.next() => {
                    let outcome = match inbound {
                        Err(why) => Err(why),
                        Ok(Inbound::WebSocket(message)) => self.on_message(message).await,
                        Ok(Inbound::Packet(packet)) => self.on_engineio(packet).await,
                        Ok(Inbound::Failed(why)) => Err(why),
                    };
                    if let Err(why) = outcome {
                        tracing::debug!(?why, "closing realtime connection");
                        self.handle.close(why);
                    }
                    // A client's burst is read from a buffer without ever waiting, and each
                    // message may fan out to thousands of queues: give the writers a turn
                    // every so often (Tokio's cooperative budget: 128 messages, half the
                    // default `outbound_queue`), or a burst longer than the queue would
                    // overflow the queues of perfectly healthy readers. Yielding after every
                    // message would cost the batching that makes bursts cheap.
                    tokio::task::consume_budget().await;
                }
            }
        }
    }

    fn next_deadline(&self) -> Instant {
        let heartbeat = self.pong_deadline.unwrap_or(self.ping_due);
        self.connect_deadline
            .map_or(heartbeat, |connect| connect.min(heartbeat))
    }

    fn on_timer(&mut self) {
        let now = Instant::now();
        if self
            .connect_deadline
            .is_some_and(|deadline| now >= deadline)
        {
            self.handle.close(CloseWhy::Policy);
            return;
        }
        match self.pong_deadline {
            Some(deadline) if now >= deadline => self.handle.close(CloseWhy::Policy),
            Some(_) => {}
            None if now >= self.ping_due => {
                self.queue(OutPacket::text("2"));
                self.pong_deadline = Some(now + self.shared.config.ping_timeout());
                // The heartbeat doubles as the sweep of acks nobody waits for any more.
                for entry in self.sockets.values() {
                    entry.socket.inner.sweep_acks(now);
                }
            }
            None => {}
        }
    }

    /// Queues a packet; a failure has already closed the connection, so it needs no answer.
    fn queue(&self, packet: Arc<OutPacket>) {
        let _ = self.handle.send(packet);
    }

    fn queue_packet(&self, packet: &Packet) {
        match packet.encode_with(&self.shared.limits) {
            Ok(encoded) => self.queue(Arc::new(encoded.into())),
            Err(error) => tracing::warn!(%error, "cannot encode a server packet"),
        }
    }

    async fn on_message(&mut self, message: AggregatedMessage) -> Result<(), CloseWhy> {
        match message {
            AggregatedMessage::Text(text) => {
                let packet = engineio::Packet::decode_text(&text, self.shared.config.max_payload)
                    .map_err(|error| close_for_codec_error(&error))?;
                self.on_engineio(packet).await
            }
            AggregatedMessage::Binary(data) => self.on_binary(data).await,
            AggregatedMessage::Ping(data) => {
                let _ = self.handle.push(Outbound::WsPong(data));
                Ok(())
            }
            AggregatedMessage::Pong(_) => Ok(()),
            AggregatedMessage::Close(_) => Err(CloseWhy::Normal),
        }
    }

    async fn on_engineio(&mut self, packet: engineio::Packet) -> Result<(), CloseWhy> {
        match packet {
            engineio::Packet::Message(engineio::Message::Text(text)) => {
                let packet = self
                    .decoder
                    .feed_text(&text)
                    .map_err(|error| close_for_codec_error(&error))?;
                match packet {
                    Some(packet) => self.on_socketio(packet).await,
                    None => Ok(()),
                }
            }
            engineio::Packet::Message(engineio::Message::Binary(data)) => {
                self.on_binary(data).await
            }
            engineio::Packet::Pong(_) => {
                if self.pong_deadline.take().is_some() {
                    self.ping_due = Instant::now() + self.shared.config.ping_interval();
                }
                Ok(())
            }
            engineio::Packet::Close => Err(CloseWhy::Normal),
            // The server pings in Engine.IO v4; a ping from the client (or an open, upgrade or
            // noop on an established WebSocket) breaks the protocol.
            engineio::Packet::Ping(_)
            | engineio::Packet::Open(_)
            | engineio::Packet::Upgrade
            | engineio::Packet::Noop => Err(CloseWhy::Protocol),
        }
    }

    async fn on_binary(&mut self, data: Bytes) -> Result<(), CloseWhy> {
        let packet = self
            .decoder
            .feed_binary(data)
            .map_err(|error| close_for_codec_error(&error))?;
        match packet {
            Some(packet) => self.on_socketio(packet).await,
            None => Ok(()),
        }
    }

    /// Handles one Socket.IO packet in a future of its own on the heap: the state of a CONNECT
    /// or an event handler is large, and inlined it would make every idle connection's task
    /// carry that size for its whole life.
    fn on_socketio(
        &mut self,
        packet: Packet,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), CloseWhy>> + '_>> {
        Box::pin(self.handle_socketio(packet))
    }

    async fn handle_socketio(&mut self, packet: Packet) -> Result<(), CloseWhy> {
        let Packet { namespace, kind } = packet;
        match kind {
            PacketKind::Connect(auth) => self.on_connect(namespace, auth).await,
            PacketKind::Disconnect => {
                if let Some(entry) = self.sockets.remove(namespace.as_str()) {
                    self.drop_socket(entry, DisconnectReason::ClientDisconnect)
                        .await;
                }
                Ok(())
            }
            PacketKind::Event { name, args, ack_id } => {
                self.on_event(&namespace, name, args, ack_id).await
            }
            PacketKind::Ack { ack_id, args } => {
                // Like the reference server, packets for a namespace that is not connected
                // are ignored.
                if let Some(entry) = self.sockets.get(namespace.as_str()) {
                    entry.socket.inner.resolve_ack(ack_id, args);
                }
                Ok(())
            }
            PacketKind::ConnectError(_) => Err(CloseWhy::Protocol),
        }
    }

    async fn on_connect(
        &mut self,
        namespace: String,
        auth: Option<JsonObject>,
    ) -> Result<(), CloseWhy> {
        if self.sockets.contains_key(namespace.as_str()) {
            return Err(CloseWhy::Protocol);
        }
        let Some(handler) = self.shared.namespaces.get(namespace.as_str()).cloned() else {
            self.connect_error(&namespace, "Invalid namespace", None);
            return Ok(());
        };
        let Some(identity) = self.authenticate(&namespace, auth.as_ref()).await else {
            return Ok(());
        };
        let namespace: Arc<str> = namespace.into();
        let inner = Arc::new(SocketInner::new(
            namespace.clone(),
            identity,
            self.handle.clone(),
        ));
        let mut sid = JsonObject::new();
        sid.insert("sid".to_owned(), inner.id.as_str().into());
        let accepted = Packet::connect(&*namespace, Some(sid))
            .encode_with(&self.shared.limits)
            .map_err(|_| CloseWhy::Protocol)?;
        let mut queued = Ok(());
        let inserted =
            self.shared
                .node
                .insert(&inner, self.shared.config.max_sockets_per_user, || {
                    queued = self.handle.send(Arc::new(accepted.into()))
                });
        if inserted.is_err() {
            self.connect_error(&namespace, "rate_limited", Some("too_many_sockets"));
            return Ok(());
        }
        if queued.is_err() {
            self.shared.node.remove(&inner);
            return Ok(());
        }
        self.connect_deadline = None;
        let socket = Socket {
            inner,
            shared: self.shared.clone(),
        };
        self.sockets.insert(
            namespace,
            SocketEntry {
                socket: socket.clone(),
                handler: handler.clone(),
                throttle: EventThrottle::default(),
            },
        );
        let closing = self.handle.closing.clone();
        tokio::select! {
            biased;
            () = closing.cancelled() => {}
            () = handler.on_connect(&socket, auth.as_ref()) => {}
        }
        Ok(())
    }

    /// Runs the connect-auth port; on refusal answers CONNECT_ERROR and returns `None`.
    async fn authenticate(&self, namespace: &str, auth: Option<&JsonObject>) -> Option<Identity> {
        let request = ConnectRequest {
            namespace,
            auth,
            client_ip: self.upgrade.client_ip,
            captured: self.upgrade.captured.as_deref(),
        };
        let result = tokio::select! {
            biased;
            () = self.handle.closing.cancelled() => return None,
            result = self.shared.auth.authenticate(request) => result,
        };
        match result {
            Ok(identity) => Some(identity),
            Err(refusal) => {
                self.connect_error(namespace, "unauthorized", Some(&refusal.code));
                None
            }
        }
    }

    /// Queues CONNECT_ERROR. Written by hand rather than through `Packet::connect_error`,
    /// whose JSON map sorts its keys: the contract shows `message` before `data`, and clients
    /// that compare text should see exactly that.
    fn connect_error(&self, namespace: &str, message: &str, code: Option<&str>) {
        #[derive(Serialize)]
        struct Data<'a> {
            code: &'a str,
        }
        #[derive(Serialize)]
        struct Body<'a> {
            message: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            data: Option<Data<'a>>,
        }
        let body = Body {
            message,
            data: code.map(|code| Data { code }),
        };
        let mut text = String::from("44");
        // Decoded namespaces start with `/` and hold no `,`, so they need no escaping.
        if namespace != MAIN_NAMESPACE {
            text.push_str(namespace);
            text.push(',');
        }
        match serde_json::to_string(&body) {
            Ok(json) => text.push_str(&json),
            Err(_) => return,
        }
        self.queue(Arc::new(OutPacket {
            text: text.into(),
            attachments: Vec::new(),
        }));
    }

    async fn on_event(
        &mut self,
        namespace: &str,
        name: String,
        args: Vec<Value>,
        ack_id: Option<u64>,
    ) -> Result<(), CloseWhy> {
        let config = &self.shared.config;
        let Some(entry) = self.sockets.get_mut(namespace) else {
            return Ok(());
        };
        let verdict = entry.throttle.check(
            Instant::now(),
            config.events_per_socket_per_second,
            config.flood_disconnect_after,
        );
        let ack = ack_id.map(|ack_id| AckSender {
            socket: entry.socket.inner.clone(),
            ack_id,
            limits: self.shared.limits,
        });
        match verdict {
            Verdict::Allow => {}
            Verdict::Refuse => {
                if let Some(ack) = ack {
                    let _ = ack.send_json(&error_ack(
                        codes::RATE_LIMITED,
                        "too many events; slow down",
                    ));
                }
                return Ok(());
            }
            Verdict::Flood => return Err(CloseWhy::Policy),
        }
        let socket = entry.socket.clone();
        let handler = entry.handler.clone();
        let closing = self.handle.closing.clone();
        tokio::select! {
            biased;
            () = closing.cancelled() => {}
            () = handler.on_event(&socket, Event { name, args, ack }) => {}
        }
        Ok(())
    }

    async fn on_control(&mut self, control: Control) {
        match control {
            Control::Disconnect(socket_id) => {
                let Some(namespace) = self
                    .sockets
                    .iter()
                    .find(|(_, entry)| *entry.socket.id() == socket_id)
                    .map(|(namespace, _)| namespace.clone())
                else {
                    return;
                };
                let Some(entry) = self.sockets.remove(&namespace) else {
                    return;
                };
                self.queue_packet(&Packet::disconnect(&*namespace));
                self.drop_socket(entry, DisconnectReason::ServerDisconnect)
                    .await;
                if self.sockets.is_empty() {
                    self.handle.close(CloseWhy::Normal);
                }
            }
        }
    }

    async fn drop_socket(&self, entry: SocketEntry, reason: DisconnectReason) {
        // Bounded: a handler stuck in its disconnect logic must not keep the connection (and
        // a server shutdown) waiting.
        let _ = tokio::time::timeout(
            self.shared.config.close_grace(),
            entry.handler.on_disconnect(&entry.socket, reason),
        )
        .await;
        self.shared.node.remove(&entry.socket.inner);
    }

    async fn disconnect_all(&mut self) {
        self.handle.close(CloseWhy::Normal);
        let reason = match self.handle.why() {
            CloseWhy::Shutdown => DisconnectReason::ServerShutdown,
            CloseWhy::Normal | CloseWhy::Gone => DisconnectReason::TransportClose,
            _ => DisconnectReason::ConnectionError,
        };
        for (_, entry) in std::mem::take(&mut self.sockets) {
            self.drop_socket(entry, reason).await;
        }
    }
}

pub(crate) fn close_for_codec_error(error: &CodecError) -> CloseWhy {
    match error {
        CodecError::Json(_) | CodecError::InvalidUtf8 => CloseWhy::InvalidData,
        CodecError::TooLarge { .. } => CloseWhy::TooBig,
        CodecError::TooManyAttachments { .. } => CloseWhy::Policy,
        _ => CloseWhy::Protocol,
    }
}

pub(crate) fn close_for_ws_error(error: &ProtocolError) -> CloseWhy {
    match error {
        ProtocolError::Overflow => CloseWhy::TooBig,
        ProtocolError::Io(io) if io.kind() == std::io::ErrorKind::InvalidData => {
            CloseWhy::InvalidData
        }
        // The aggregator reports a reassembled message over the continuation limit as a
        // plain I/O error; a broken transport does too, but then no close frame arrives anyway.
        ProtocolError::Io(_) => CloseWhy::TooBig,
        _ => CloseWhy::Protocol,
    }
}

/// Drains the outbound queue into the WebSocket, then writes the close frame.
pub(crate) async fn write_loop<Q>(
    mut session: Session,
    mut queue: Q,
    handle: Arc<ConnHandle>,
    grace: Duration,
) where
    Q: std::ops::DerefMut<Target = mpsc::Receiver<Outbound>>,
{
    // One cancellation waiter for the whole loop, not one registered and dropped per packet.
    let closing = handle.closing.clone();
    let cancelled = closing.cancelled();
    tokio::pin!(cancelled);
    loop {
        let item = tokio::select! {
            biased;
            () = &mut cancelled => break,
            item = queue.recv() => item,
        };
        let Some(item) = item else { break };
        let write = write(&mut session, item);
        tokio::pin!(write);
        let written = tokio::select! {
            biased;
            result = &mut write => result.is_ok(),
            () = &mut cancelled => {
                if !handle.why().flushes() {
                    return;
                }
                // Finish the packet being written, so the client does not see half of it.
                matches!(tokio::time::timeout(grace, &mut write).await, Ok(Ok(())))
            }
        };
        if !written {
            handle.close(CloseWhy::Gone);
            break;
        }
    }
    let why = handle.why();
    if !why.flushes() {
        // Dropping the session ends the response body: actix closes the TCP connection.
        return;
    }
    let _ = tokio::time::timeout(grace, async move {
        while let Ok(item) = queue.try_recv() {
            if write(&mut session, item).await.is_err() {
                return;
            }
        }
        let _ = session.close(Some(why.close_reason())).await;
    })
    .await;
}

async fn write(session: &mut Session, item: Outbound) -> Result<(), actix_ws::Closed> {
    match item {
        Outbound::Packet(packet) => {
            session.text(packet.text.clone()).await?;
            for attachment in &packet.attachments {
                session.binary(attachment.clone()).await?;
            }
            Ok(())
        }
        Outbound::WsPong(data) => session.pong(&data).await,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Allow,
    Refuse,
    Flood,
}

/// Events per socket per second, in fixed one-second windows, with a count of refusals in
/// consecutive flooded windows.
#[derive(Debug, Default)]
struct EventThrottle {
    window_start: Option<Instant>,
    count: u32,
    strikes: u32,
}

impl EventThrottle {
    fn check(&mut self, now: Instant, limit: u32, flood_after: u32) -> Verdict {
        if limit == 0 {
            return Verdict::Allow;
        }
        let expired = self
            .window_start
            .is_none_or(|start| now.duration_since(start) >= Duration::from_secs(1));
        if expired {
            if self.count <= limit {
                // A window without refusals ends the flood.
                self.strikes = 0;
            }
            self.window_start = Some(now);
            self.count = 0;
        }
        self.count = self.count.saturating_add(1);
        if self.count <= limit {
            return Verdict::Allow;
        }
        self.strikes = self.strikes.saturating_add(1);
        if flood_after > 0 && self.strikes >= flood_after {
            Verdict::Flood
        } else {
            Verdict::Refuse
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_refuses_over_the_limit_and_resets_each_second() {
        let mut throttle = EventThrottle::default();
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(throttle.check(start, 3, 0), Verdict::Allow);
        }
        assert_eq!(throttle.check(start, 3, 0), Verdict::Refuse);
        let later = start + Duration::from_secs(1);
        assert_eq!(throttle.check(later, 3, 0), Verdict::Allow);
    }

    #[test]
    fn throttle_detects_a_flood_across_consecutive_windows() {
        let mut throttle = EventThrottle::default();
        let start = Instant::now();
        let mut verdicts = Vec::new();
        for second in 0..3 {
            let now = start + Duration::from_secs(second);
            for _ in 0..4 {
                verdicts.push(throttle.check(now, 2, 5));
            }
        }
        // Two refusals per second; the fifth one overall is the flood.
        assert_eq!(
            verdicts.iter().filter(|v| **v == Verdict::Refuse).count(),
            4
        );
        assert_eq!(verdicts.last(), Some(&Verdict::Flood));
    }

    #[test]
    fn a_quiet_second_forgives_earlier_refusals() {
        let mut throttle = EventThrottle::default();
        let start = Instant::now();
        for _ in 0..4 {
            throttle.check(start, 2, 3);
        }
        assert_eq!(throttle.strikes, 2);
        throttle.check(start + Duration::from_secs(1), 2, 3);
        throttle.check(start + Duration::from_secs(2), 2, 3);
        assert_eq!(throttle.strikes, 0);
    }

    #[test]
    fn unlimited_when_zero() {
        let mut throttle = EventThrottle::default();
        for _ in 0..1000 {
            assert_eq!(throttle.check(Instant::now(), 0, 1), Verdict::Allow);
        }
    }
}
