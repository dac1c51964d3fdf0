//! The [`RealtimeServer`]: configuration, namespaces, the `/socket.io/` endpoint and shutdown.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::adapter::{Adapter, LocalAdapter};
use crate::auth::ConnectAuth;
use crate::config::{ConfigError, RealtimeConfig};
use crate::connection::{self, Upgrade};
use crate::emitter::Emitter;
use crate::handler::NamespaceHandler;
use crate::keel_events::KeelEvents;
use crate::node::LocalNode;
use crate::polling::{self, PollingSession};
use crate::socketio::{Limits, MAIN_NAMESPACE};

/// The path the server answers on, as `socket.io-client` expects by default.
pub const PATH: &str = "/socket.io/";

/// What every part of the server shares. Never referenced by a socket (see `SocketInner`).
pub(crate) struct Shared {
    pub(crate) config: RealtimeConfig,
    pub(crate) limits: Limits,
    pub(crate) auth: Arc<dyn ConnectAuth>,
    pub(crate) namespaces: HashMap<String, Arc<dyn NamespaceHandler>>,
    pub(crate) node: LocalNode,
    pub(crate) adapter: Arc<dyn Adapter>,
    pub(crate) shutdown: CancellationToken,
    tracker: TaskTracker,
    /// One counter for every server-to-client ack id, so a broadcast's id (the same for all
    /// recipients) never collides with a per-socket one.
    ack_ids: AtomicU64,
    ip_throttle: Mutex<IpThrottle>,
    /// Long-polling sessions by Engine.IO sid (WebSocket connections need no lookup).
    polling: Mutex<HashMap<String, Arc<PollingSession>>>,
}

impl Shared {
    pub(crate) fn next_ack_id(&self) -> u64 {
        self.ack_ids.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn tracker(&self) -> &TaskTracker {
        &self.tracker
    }

    fn polling_sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<PollingSession>>> {
        self.polling.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn polling_insert(&self, sid: String, session: Arc<PollingSession>) {
        self.polling_sessions().insert(sid, session);
    }

    pub(crate) fn polling_remove(&self, sid: &str) {
        self.polling_sessions().remove(sid);
    }

    fn polling_get(&self, sid: &str) -> Option<Arc<PollingSession>> {
        self.polling_sessions().get(sid).cloned()
    }
}

/// New connections per client IP in the current one-second window.
struct IpThrottle {
    started: Instant,
    second: u64,
    counts: HashMap<IpAddr, u32>,
}

impl IpThrottle {
    fn allow(&mut self, ip: Option<IpAddr>, limit: u32) -> bool {
        let Some(ip) = ip.filter(|_| limit > 0) else {
            return true;
        };
        let second = self.started.elapsed().as_secs();
        if second != self.second {
            // Only the current window is kept, so the map holds at most one second's clients.
            self.counts.clear();
            self.second = second;
        }
        let count = self.counts.entry(ip).or_default();
        if *count >= limit {
            return false;
        }
        *count += 1;
        true
    }
}

/// The realtime server: mount it in an actix-web app, emit through its [`Emitter`], shut it
/// down with the application. Cheap to clone.
#[derive(Clone)]
pub struct RealtimeServer {
    shared: Arc<Shared>,
}

impl fmt::Debug for RealtimeServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RealtimeServer")
            .field("config", &self.shared.config)
            .field("node", &self.shared.node)
            .finish_non_exhaustive()
    }
}

type AdapterFactory = Box<dyn FnOnce(LocalNode) -> Arc<dyn Adapter>>;

/// Builds a [`RealtimeServer`]; see [`RealtimeServer::builder`].
pub struct RealtimeServerBuilder {
    config: RealtimeConfig,
    auth: Arc<dyn ConnectAuth>,
    namespaces: HashMap<String, Arc<dyn NamespaceHandler>>,
    adapter: Option<AdapterFactory>,
    shutdown: Option<CancellationToken>,
}

impl fmt::Debug for RealtimeServerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RealtimeServerBuilder")
            .field("config", &self.config)
            .field("namespaces", &self.namespaces.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl RealtimeServerBuilder {
    /// Registers (or replaces) a namespace. The main namespace `/` has [`KeelEvents`] unless
    /// replaced here.
    pub fn namespace(
        mut self,
        name: impl Into<String>,
        handler: Arc<dyn NamespaceHandler>,
    ) -> Self {
        self.namespaces.insert(name.into(), handler);
        self
    }

    /// Uses another adapter (e.g. Redis pub/sub), built from this instance's [`LocalNode`].
    /// The default is [`LocalAdapter`].
    pub fn adapter(
        mut self,
        factory: impl FnOnce(LocalNode) -> Arc<dyn Adapter> + 'static,
    ) -> Self {
        self.adapter = Some(Box::new(factory));
        self
    }

    /// Shuts the server down when `token` is cancelled (the application's shutdown signal):
    /// every socket gets a WebSocket close 1001 and no Socket.IO DISCONNECT.
    pub fn shutdown_token(mut self, token: &CancellationToken) -> Self {
        self.shutdown = Some(token.child_token());
        self
    }

    /// Builds the server.
    ///
    /// # Errors
    /// [`ConfigError`] for an unusable configuration or namespace name.
    pub fn build(self) -> Result<RealtimeServer, ConfigError> {
        self.config.validate()?;
        if let Some(name) = self
            .namespaces
            .keys()
            .find(|name| !name.starts_with('/') || name.contains(','))
        {
            return Err(ConfigError::InvalidNamespace(name.clone()));
        }
        let node = LocalNode::default();
        let adapter = match self.adapter {
            Some(factory) => factory(node.clone()),
            None => Arc::new(LocalAdapter::new(node.clone())),
        };
        let limits = Limits {
            max_attachments: self.config.max_attachments,
            max_packet_len: self.config.max_payload,
        };
        let shared = Shared {
            limits,
            auth: self.auth,
            namespaces: self.namespaces,
            node,
            adapter,
            shutdown: self.shutdown.unwrap_or_default(),
            tracker: TaskTracker::new(),
            ack_ids: AtomicU64::new(0),
            ip_throttle: Mutex::new(IpThrottle {
                started: Instant::now(),
                second: 0,
                counts: HashMap::new(),
            }),
            polling: Mutex::new(HashMap::new()),
            config: self.config,
        };
        Ok(RealtimeServer {
            shared: Arc::new(shared),
        })
    }
}

#[derive(Deserialize)]
struct HandshakeQuery {
    #[serde(rename = "EIO")]
    eio: Option<String>,
    transport: Option<String>,
    sid: Option<String>,
}

/// The Engine.IO handshake error: `{"code":N,"message":"..."}` with the reference codes.
pub(crate) fn engine_error(status: StatusCode, code: u8, message: &str) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("application/json")
        .body(serde_json::json!({"code": code, "message": message}).to_string())
}

impl RealtimeServer {
    /// Starts building a server with this configuration and connect-auth port.
    pub fn builder(config: RealtimeConfig, auth: Arc<dyn ConnectAuth>) -> RealtimeServerBuilder {
        let main: Arc<dyn NamespaceHandler> = Arc::new(KeelEvents::default());
        RealtimeServerBuilder {
            config,
            auth,
            namespaces: HashMap::from([(MAIN_NAMESPACE.to_owned(), main)]),
            adapter: None,
            shutdown: None,
        }
    }

    /// Mounts `/socket.io/`: `GET` (WebSocket, polling, upgrade) and `POST` (polling); any
    /// other method gets the Engine.IO "Bad handshake method".
    ///
    /// ```no_run
    /// # use std::sync::Arc;
    /// # use keel_realtime::{AllowAll, RealtimeConfig, RealtimeServer};
    /// # fn demo() -> Result<(), keel_realtime::ConfigError> {
    /// let realtime = RealtimeServer::builder(RealtimeConfig::default(), Arc::new(AllowAll)).build()?;
    /// let app = actix_web::App::new().configure(|cfg| realtime.configure(cfg));
    /// # Ok(()) }
    /// ```
    pub fn configure(&self, cfg: &mut web::ServiceConfig) {
        let get = self.clone();
        let post = self.clone();
        cfg.service(
            web::resource(PATH)
                .route(web::get().to(move |req: HttpRequest, body: web::Payload| {
                    let server = get.clone();
                    async move { server.handle(req, body).await }
                }))
                .route(web::post().to(move |req: HttpRequest, body: web::Payload| {
                    let server = post.clone();
                    async move { server.handle(req, body).await }
                }))
                .default_service(web::to(|| async {
                    engine_error(StatusCode::BAD_REQUEST, 2, "Bad handshake method")
                })),
        );
    }

    /// Handles one request to `/socket.io/`: the Engine.IO handshake (WebSocket or polling),
    /// a poll, a polling POST, or an upgrade. For applications that route it themselves.
    pub async fn handle(&self, req: HttpRequest, body: web::Payload) -> HttpResponse {
        let shared = &self.shared;
        let Ok(query) = web::Query::<HandshakeQuery>::from_query(req.query_string()) else {
            return engine_error(StatusCode::BAD_REQUEST, 3, "Bad request");
        };
        if query.eio.as_deref() != Some("4") {
            return engine_error(StatusCode::BAD_REQUEST, 5, "Unsupported protocol version");
        }
        let websocket = match query.transport.as_deref() {
            Some("websocket") => true,
            Some("polling") => false,
            _ => return engine_error(StatusCode::BAD_REQUEST, 0, "Transport unknown"),
        };
        let is_get = req.method() == actix_web::http::Method::GET;
        if let Some(sid) = query.sid.as_deref() {
            let Some(session) = shared.polling_get(sid) else {
                return engine_error(StatusCode::BAD_REQUEST, 1, "Session ID unknown");
            };
            return match (websocket, is_get) {
                (true, true) => polling::upgrade(shared, session, &req, body),
                (false, true) => polling::get(&session).await,
                (false, false) => polling::post(shared, &session, body).await,
                (true, false) => engine_error(StatusCode::BAD_REQUEST, 2, "Bad handshake method"),
            };
        }
        if !is_get {
            return engine_error(StatusCode::BAD_REQUEST, 2, "Bad handshake method");
        }
        if shared.shutdown.is_cancelled() {
            return engine_error(StatusCode::SERVICE_UNAVAILABLE, 3, "Server shutting down");
        }
        let client_ip = shared.auth.client_ip(&req);
        let allowed = shared
            .ip_throttle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .allow(client_ip, shared.config.connections_per_ip_per_second);
        if !allowed {
            return engine_error(StatusCode::TOO_MANY_REQUESTS, 3, "Too many connections");
        }
        let upgrade = Upgrade {
            client_ip,
            captured: shared.auth.on_upgrade(&req),
        };
        if !websocket {
            return polling::handshake(shared, upgrade).await;
        }
        let Ok((response, session, stream)) = actix_ws::handle(&req, body) else {
            return engine_error(StatusCode::BAD_REQUEST, 3, "Bad request");
        };
        let max = shared.config.max_payload;
        let stream = stream
            .max_frame_size(max)
            .aggregate_continuations()
            .max_continuation_size(max);
        shared.tracker.spawn_local(connection::run_websocket(
            shared.clone(),
            upgrade,
            session,
            stream,
        ));
        response
    }

    /// An emitter for server code.
    pub fn emitter(&self) -> Emitter {
        Emitter {
            shared: self.shared.clone(),
        }
    }

    /// This instance's sockets and rooms.
    pub fn node(&self) -> &LocalNode {
        &self.shared.node
    }

    /// The configuration in force.
    pub fn config(&self) -> &RealtimeConfig {
        &self.shared.config
    }

    /// Starts the shutdown: new connections are refused (503) and every socket gets a
    /// WebSocket close 1001 (no Socket.IO DISCONNECT, so clients reconnect elsewhere).
    pub fn shutdown(&self) {
        self.shared.shutdown.cancel();
    }

    /// Waits until every connection has closed after [`RealtimeServer::shutdown`] (or the
    /// shutdown token). Each connection takes at most about `close_grace_ms`.
    pub async fn closed(&self) {
        self.shared.shutdown.cancelled().await;
        self.shared.tracker.close();
        self.shared.tracker.wait().await;
    }
}
