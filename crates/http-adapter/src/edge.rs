//! The edge middleware: everything that happens to every request before routing and to every
//! response after it, in one pass so the order is visible in one place.
//!
//! In: request id, client IP, CORS preflight, body read deadline. Around: panics become a
//! generic 500 and the worker keeps serving. Out: any error body that is not problem+json yet
//! becomes one, then security headers, CORS headers, `x-request-id`, and one access-log event.

use std::future::{Future, Ready, ready};
use std::net::{IpAddr, Ipv4Addr};
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::error::InternalError;
use actix_web::http::header;
use actix_web::{HttpMessage, HttpResponse, ResponseError};
use futures_util::FutureExt;
use keel_domain::UserId;

use crate::body_timeout;
use crate::client_ip::TrustedProxies;
use crate::cors::Cors;
use crate::error::{ApiError, ErrorCause, PROBLEM_JSON};
use crate::request_id::{RequestId, X_REQUEST_ID};
use crate::security_headers::SecurityHeaders;

/// The client's resolved address, stored in the request extensions by the edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

/// The settings of the edge, built once and shared by every worker.
#[derive(Debug, Clone)]
pub struct Edge {
    settings: Arc<EdgeSettings>,
}

#[derive(Debug)]
struct EdgeSettings {
    cors: Cors,
    security_headers: SecurityHeaders,
    trusted_proxies: TrustedProxies,
    body_read_timeout: Duration,
}

impl Edge {
    /// The edge with these parts.
    pub fn new(
        cors: Cors,
        security_headers: SecurityHeaders,
        trusted_proxies: TrustedProxies,
        body_read_timeout: Duration,
    ) -> Self {
        Self {
            settings: Arc::new(EdgeSettings {
                cors,
                security_headers,
                trusted_proxies,
                body_read_timeout,
            }),
        }
    }
}

impl<S, B> Transform<S, ServiceRequest> for Edge
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<BoxBody>;
    type Error = actix_web::Error;
    type Transform = EdgeService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(EdgeService {
            service: Rc::new(service),
            settings: Arc::clone(&self.settings),
        }))
    }
}

/// The edge wrapped around the app's service.
pub struct EdgeService<S> {
    service: Rc<S>,
    settings: Arc<EdgeSettings>,
}

impl<S, B> Service<ServiceRequest> for EdgeService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<BoxBody>;
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>>>>;

    forward_ready!(service);

    fn call(&self, mut req: ServiceRequest) -> Self::Future {
        let started = Instant::now();
        let settings = Arc::clone(&self.settings);
        let service = Rc::clone(&self.service);
        let request_id = RequestId::from_headers(req.headers());
        let origin = req.headers().get(header::ORIGIN).cloned();
        let peer = req
            .peer_addr()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |addr| addr.ip());
        let client_ip = settings.trusted_proxies.client_ip(peer, req.headers());
        req.extensions_mut().insert(ClientIp(client_ip));
        if body_timeout::has_body(req.headers()) {
            let payload = req.take_payload();
            req.set_payload(body_timeout::with_deadline(
                payload,
                settings.body_read_timeout,
            ));
        }
        let method = req.method().clone();

        Box::pin(request_id.clone().scope(async move {
            let outcome = match settings.cors.preflight(req.method(), req.headers()) {
                Some(preflight) => Ok(Ok(req.into_response(preflight))),
                None => AssertUnwindSafe(service.call(req))
                    .catch_unwind()
                    .await
                    .map(|result| result.map(ServiceResponse::map_into_boxed_body)),
            };
            let finish = |response: HttpResponse| {
                let mut response = if needs_problem_body(&response) {
                    into_problem(response)
                } else {
                    response
                };
                let headers = response.headers_mut();
                settings.security_headers.apply(headers);
                settings.cors.decorate(origin.as_ref(), headers);
                headers.insert(X_REQUEST_ID, request_id.header_value().clone());
                response
            };
            let access = AccessEvent {
                method: &method,
                request_id: &request_id,
                client_ip,
                started,
            };
            match outcome {
                Ok(Ok(response)) => {
                    let (request, response) = response.into_parts();
                    let response = ServiceResponse::new(request, finish(response));
                    access.served(&response);
                    Ok(response)
                }
                // An inner middleware failed, or a handler panicked (the panic hook has logged
                // the message and location). The request is gone with the inner service, so the
                // finished response travels inside the error and actix sends it as it is.
                failure => {
                    let (cause, response) = match failure {
                        Ok(Err(error)) => ("a middleware failed", error.error_response()),
                        _ => {
                            let error = ApiError::internal("a request handler panicked");
                            ("a request handler panicked", error.error_response())
                        }
                    };
                    let response = finish(response);
                    access.failed(&response);
                    Err(InternalError::from_response(cause, response).into())
                }
            }
        }))
    }
}

/// An error response whose body was made by actix or a third-party middleware (plain text or
/// empty), not by Keel. Keel's own JSON error bodies, such as the readiness report, stay.
fn needs_problem_body(response: &HttpResponse) -> bool {
    let status = response.status();
    (status.is_client_error() || status.is_server_error())
        && response
            .headers()
            .get(header::CONTENT_TYPE)
            .is_none_or(|content_type| {
                let content_type = content_type.as_bytes();
                content_type != PROBLEM_JSON.as_bytes()
                    && !content_type.starts_with(b"application/json")
            })
}

/// Replaces the body with the generic problem for its status, keeping meaningful headers
/// (`allow`, `retry-after`, `www-authenticate`, ...).
fn into_problem(original: HttpResponse) -> HttpResponse {
    let mut problem = ApiError::from_status(original.status()).error_response();
    for (name, value) in original.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            problem.headers_mut().insert(name.clone(), value.clone());
        }
    }
    problem
}

/// The one access event of a request.
struct AccessEvent<'a> {
    method: &'a actix_web::http::Method,
    request_id: &'a RequestId,
    client_ip: IpAddr,
    started: Instant,
}

impl AccessEvent<'_> {
    /// Logs a response that went through routing: its route pattern and the user, when known.
    fn served(&self, response: &ServiceResponse<BoxBody>) {
        let request = response.request();
        let route = request.match_pattern();
        let user_id = request.extensions().get::<UserId>().copied();
        let error = response
            .response()
            .extensions()
            .get::<ErrorCause>()
            .cloned();
        self.log(
            response.status().as_u16(),
            route.as_deref().unwrap_or("<unmatched>"),
            user_id,
            error,
        );
    }

    /// Logs a response made for a failure whose request was lost with the inner service.
    fn failed(&self, response: &HttpResponse) {
        let error = response.extensions().get::<ErrorCause>().cloned();
        self.log(response.status().as_u16(), "<unknown>", None, error);
    }

    fn log(&self, status: u16, route: &str, user_id: Option<UserId>, error: Option<ErrorCause>) {
        let latency_us = u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX);
        let code = error.as_ref().map(|error| error.code);
        let cause = error.and_then(|error| error.cause);
        // Strings and integers, not `%` (Display): a JSON subscriber records those directly,
        // where a Display value is first formatted into a temporary string, on every request.
        // A server error with a cause is the one line an operator must see: at ERROR.
        // tracing's level is fixed per call site: one macro, two sites, the same fields.
        macro_rules! access {
            ($level:expr) => {
                tracing::event!(
                    target: "keel::access",
                    $level,
                    method = self.method.as_str(),
                    route,
                    status,
                    latency_us,
                    request_id = self.request_id.as_str(),
                    user_id = user_id.as_ref().map(tracing::field::display),
                    client_ip = %self.client_ip,
                    code,
                    cause,
                    "request"
                )
            };
        }
        if status >= 500 && cause.is_some() {
            access!(tracing::Level::ERROR);
        } else {
            access!(tracing::Level::INFO);
        }
    }
}
