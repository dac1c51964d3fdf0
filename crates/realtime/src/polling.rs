//! The HTTP long-polling transport and the upgrade from it to WebSocket.
//!
//! A polling session has no task of its own reading the network: each POST decodes its payload
//! and hands the packets to the connection task, and each GET takes the connection's outbound
//! queue for as long as it waits, so only one GET and one POST can be in flight. On upgrade,
//! the WebSocket's own task takes the queue for good and forwards what it reads.
//!
//! Long-polling keeps state in one instance's memory between requests: behind several
//! instances it needs sticky sessions (see the crate documentation).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::{AggregatedMessage, AggregatedMessageStream};
use tokio::sync::{Mutex, Notify, mpsc};

use crate::connection::{
    self, Inbound, Input, Opening, Upgrade, close_for_ws_error, new_handle, write_loop,
};
use crate::engineio::{self, FrameRef};
use crate::server::{Shared, engine_error};
use crate::socket::{CloseWhy, ConnHandle, Outbound, random_id};

/// How long a client has to complete the upgrade (`2probe` .. `5`), as the reference server's
/// default `upgradeTimeout`.
const UPGRADE_TIMEOUT: Duration = Duration::from_secs(10);

/// Packets of one POST waiting for the connection task; the POST waits when it is full.
const INBOUND_CAPACITY: usize = 64;

const POLLING: u8 = 0;
const UPGRADING: u8 = 1;
const UPGRADED: u8 = 2;

/// One long-polling Engine.IO session, found by its sid.
pub(crate) struct PollingSession {
    pub(crate) handle: Arc<ConnHandle>,
    /// Held by the GET in flight, then for good by the WebSocket writer after an upgrade.
    queue: Arc<Mutex<mpsc::Receiver<Outbound>>>,
    inbound: mpsc::Sender<Inbound>,
    /// Ends the pending GET with a noop, so the client can pause polling during an upgrade.
    noop: Notify,
    post_in_flight: AtomicBool,
    state: AtomicU8,
}

/// `GET ?transport=polling` without a sid: opens a session and answers with its OPEN packet.
pub(crate) async fn handshake(shared: &Arc<Shared>, upgrade: Upgrade) -> HttpResponse {
    let (handle, queue_rx, control_rx) = new_handle(shared);
    let (inbound_tx, inbound_rx) = mpsc::channel(INBOUND_CAPACITY);
    let sid = random_id();
    let session = Arc::new(PollingSession {
        handle: handle.clone(),
        queue: Arc::new(Mutex::new(queue_rx)),
        inbound: inbound_tx,
        noop: Notify::new(),
        post_in_flight: AtomicBool::new(false),
        state: AtomicU8::new(POLLING),
    });
    shared.polling_insert(sid.clone(), session.clone());
    let opening = Opening {
        sid: sid.clone(),
        upgrades: vec!["websocket".to_owned()],
    };
    let task_shared = shared.clone();
    shared.tracker().spawn_local(async move {
        connection::run(
            task_shared.clone(),
            upgrade,
            opening,
            handle,
            control_rx,
            Input::Channel(inbound_rx),
        )
        .await;
        task_shared.polling_remove(&sid);
    });
    // The OPEN packet is the first thing queued, so this first poll returns it at once.
    get(&session).await
}

/// `GET ?transport=polling&sid=...`: waits for packets and returns them as one payload.
pub(crate) async fn get(session: &PollingSession) -> HttpResponse {
    if session.state.load(Ordering::Acquire) == UPGRADED {
        return engine_error(StatusCode::BAD_REQUEST, 3, "Bad request");
    }
    let Ok(mut queue) = session.queue.clone().try_lock_owned() else {
        // Two polls at once: the protocol says the session is then closed.
        session.handle.close(CloseWhy::Protocol);
        return engine_error(StatusCode::BAD_REQUEST, 3, "Bad request");
    };
    let closing = session.handle.closing.clone();
    let mut items = Vec::new();
    tokio::select! {
        biased;
        () = closing.cancelled() => {}
        () = session.noop.notified() => return payload_response("6".to_owned()),
        item = queue.recv() => items.extend(item),
    }
    // Everything else already queued goes along; the queue's capacity bounds it.
    while let Ok(item) = queue.try_recv() {
        items.push(item);
    }
    drop(queue);
    let frames = items.iter().flat_map(|item| match item {
        Outbound::Packet(packet) => Some(
            std::iter::once(FrameRef::Text(&packet.text))
                .chain(packet.attachments.iter().map(|data| FrameRef::Binary(data))),
        ),
        Outbound::WsPong(_) => None,
    });
    let mut body = match engineio::encode_payload(frames.flatten()) {
        Ok(body) => body,
        Err(_) => {
            session.handle.close(CloseWhy::Protocol);
            String::new()
        }
    };
    // The close packet goes alone, in the poll after the last packets: socket.io-client handles
    // a `41` a tick after the payload is parsed, so a `1` in the same payload would win and the
    // client would see "transport close" (and reconnect) instead of "io server disconnect". The
    // official Engine.IO server sends it separately too.
    if closing.is_cancelled() && body.is_empty() {
        body.push('1');
    }
    payload_response(body)
}

fn payload_response(body: String) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; charset=UTF-8")
        .body(body)
}

/// Clears the POST-in-flight flag however the POST ends.
struct PostGuard<'a>(&'a AtomicBool);

impl Drop for PostGuard<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// `POST ?transport=polling&sid=...`: decodes the payload and hands its packets over.
pub(crate) async fn post(
    shared: &Shared,
    session: &PollingSession,
    body: web::Payload,
) -> HttpResponse {
    if session.state.load(Ordering::Acquire) == UPGRADED {
        return engine_error(StatusCode::BAD_REQUEST, 3, "Bad request");
    }
    if session.post_in_flight.swap(true, Ordering::AcqRel) {
        session.handle.close(CloseWhy::Protocol);
        return engine_error(StatusCode::BAD_REQUEST, 3, "Bad request");
    }
    let _guard = PostGuard(&session.post_in_flight);
    let max = shared.config.max_payload;
    let data = match body.to_bytes_limited(max).await {
        Ok(Ok(data)) => data,
        Ok(Err(_)) => return engine_error(StatusCode::BAD_REQUEST, 3, "Bad request"),
        Err(_) => {
            session.handle.close(CloseWhy::TooBig);
            return engine_error(StatusCode::PAYLOAD_TOO_LARGE, 3, "Payload too large");
        }
    };
    let packets = match engineio::decode_payload(&data, max) {
        Ok(packets) => packets,
        Err(_) => {
            session.handle.close(CloseWhy::Protocol);
            return engine_error(StatusCode::BAD_REQUEST, 3, "Bad request");
        }
    };
    let closing = &session.handle.closing;
    for packet in packets {
        let inbound = match packet {
            Ok(packet) => Inbound::Packet(packet),
            Err(error) => Inbound::Failed(connection::close_for_codec_error(&error)),
        };
        let failed = matches!(inbound, Inbound::Failed(_));
        let sent = tokio::select! {
            biased;
            () = closing.cancelled() => false,
            sent = session.inbound.send(inbound) => sent.is_ok(),
        };
        if failed {
            return engine_error(StatusCode::BAD_REQUEST, 3, "Bad request");
        }
        if !sent {
            break;
        }
    }
    HttpResponse::Ok()
        .content_type("text/plain; charset=UTF-8")
        .body("ok")
}

/// `GET ?transport=websocket&sid=...`: the upgrade of a polling session.
pub(crate) fn upgrade(
    shared: &Arc<Shared>,
    session: Arc<PollingSession>,
    req: &HttpRequest,
    body: web::Payload,
) -> HttpResponse {
    if session
        .state
        .compare_exchange(POLLING, UPGRADING, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return engine_error(StatusCode::BAD_REQUEST, 3, "Bad request");
    }
    let Ok((response, ws, stream)) = actix_ws::handle(req, body) else {
        session.state.store(POLLING, Ordering::Release);
        return engine_error(StatusCode::BAD_REQUEST, 3, "Bad request");
    };
    let max = shared.config.max_payload;
    let stream = stream
        .max_frame_size(max)
        .aggregate_continuations()
        .max_continuation_size(max);
    shared
        .tracker()
        .spawn_local(run_upgrade(shared.clone(), session, ws, stream));
    response
}

/// Probes the new WebSocket, then makes it the session's transport: its writer takes the
/// outbound queue, and what it reads is forwarded to the connection task.
async fn run_upgrade(
    shared: Arc<Shared>,
    session: Arc<PollingSession>,
    mut ws: actix_ws::Session,
    mut stream: AggregatedMessageStream,
) {
    let probed = tokio::time::timeout(UPGRADE_TIMEOUT, async {
        if !expect_text(&mut ws, &mut stream, "2probe").await {
            return false;
        }
        if ws.text("3probe").await.is_err() {
            return false;
        }
        session.noop.notify_one();
        expect_text(&mut ws, &mut stream, "5").await
    })
    .await;
    let queue = match probed {
        Ok(true) => tokio::time::timeout(UPGRADE_TIMEOUT, session.queue.clone().lock_owned())
            .await
            .ok(),
        _ => None,
    };
    let Some(queue) = queue else {
        session.state.store(POLLING, Ordering::Release);
        let _ = ws.close(Some(CloseWhy::Protocol.close_reason())).await;
        return;
    };
    session.state.store(UPGRADED, Ordering::Release);
    let handle = session.handle.clone();
    let writer = tokio::task::spawn_local(write_loop(
        ws,
        queue,
        handle.clone(),
        shared.config.close_grace(),
    ));
    loop {
        let inbound = tokio::select! {
            biased;
            () = handle.closing.cancelled() => break,
            message = stream.recv() => match message {
                None => Inbound::Failed(CloseWhy::Gone),
                Some(Err(error)) => Inbound::Failed(close_for_ws_error(&error)),
                Some(Ok(message)) => Inbound::WebSocket(message),
            },
        };
        let failed = matches!(inbound, Inbound::Failed(_));
        if session.inbound.send(inbound).await.is_err() || failed {
            break;
        }
    }
    let _ = writer.await;
}

/// Reads the next message and checks it is this text; answers WebSocket pings on the way.
async fn expect_text(
    ws: &mut actix_ws::Session,
    stream: &mut AggregatedMessageStream,
    expected: &str,
) -> bool {
    loop {
        match stream.recv().await {
            Some(Ok(AggregatedMessage::Text(text))) => return &*text == expected,
            Some(Ok(AggregatedMessage::Ping(data))) => {
                if ws.pong(&data).await.is_err() {
                    return false;
                }
            }
            Some(Ok(AggregatedMessage::Pong(_))) => {}
            _ => return false,
        }
    }
}
