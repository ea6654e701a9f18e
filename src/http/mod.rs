//! The collector's routes: matching, limits, the envelope, and each protocol's answer.
//!
//! [`App::handle`] turns one request into one response and needs no socket, so tests can call
//! it directly; [`crate::server`] feeds it from hyper connections.
//!
//! # Routes
//!
//! | Method | Path | Stored | Answer |
//! |---|---|---|---|
//! | OPTIONS | any | no | 200, CORS preflight headers |
//! | GET, HEAD | `/i`, `/ice.png`, `/com.snowplowanalytics.snowplow/tp1`, `…/tp2` | yes | 200 `image/gif`, 43-byte pixel, no-cache |
//! | POST | `/com.snowplowanalytics.snowplow/tp2` | yes | 200 `text/plain` `ok` |
//! | POST | `/v1/{track,identify,page,screen,group,alias,batch,import}`, analytics.js' `/v1/{t,i,p,s,g,a,b}` | yes | 200 `application/json` `{"success":true}`; errors `{"code","message"}` |
//! | POST | `/v1.0/event`, `/v1.0/events` | yes | 204; errors `{"detail"}` |
//! | POST | `/collect`, `/collect/{stream}` | yes | 202 |
//! | GET, HEAD, POST | `/r/tp2`, `/r/{path}` when `collector.redirects.enabled` | yes | 302 `Location: <u>`; 400 for a missing, invalid or disallowed target (nothing stored) |
//! | any | `/r/{path}` otherwise | no | 404 `redirects disabled` |
//! | as the target | a `collector.paths` alias | yes, with the target's route and path | as the target |
//! | GET, HEAD | `/robots.txt` | no | 200, disallows `/` for every crawler |
//! | GET, HEAD | `/crossdomain.xml` when `collector.cross_domain.enabled` | no | 200 `text/xml` policy (else 404) |
//! | GET, HEAD | `/static/{file}` when `collector.static_dir` is set | no | 200, the file, `Cache-Control: public, max-age=300` (else 404) |
//! | GET, HEAD | `/health` | no | 200 `ok` while the process runs |
//! | GET, HEAD | `/ready` | no | 200 when every partition accepts appends, else 503 |
//!
//! A known path with another method gets 405 and `Allow`; anything else 404. Tracking answers
//! (including their errors) carry CORS headers; successful ones the network-user-id cookie
//! ([`collector`] describes both, the do-not-track cookie and `SP-Anonymous`).
//!
//! Short aliases store their own template (`/v1/t` is stored as `/v1/t`; the publisher maps
//! `t`→track, `p`→page, `i`→identify, `g`→group, `a`→alias, `s`→screen, `b`→batch).
//!
//! # Status codes
//!
//! Trackers drop a batch on 400, 401, 403, 410 and 422 and retry anything else. So a 2xx (or
//! the redirect's 302) is only sent once the request is durable; 400 only for requests that can
//! never succeed (a bad redirect target, unreadable framing, a body that is not JSON or not the
//! route's shape, a Segment batch over `segment.max_batch_items`); every transient refusal (log
//! full, writer queue full, log unavailable or closing) is a 503 with `Retry-After`. These
//! store nothing: 401 (missing or wrong key, [`auth`]), 413 (body over
//! `server.max_body_bytes`, a Segment message or batch over its limit, a gzip body over
//! `server.max_decompressed_bytes`), 415 (a `Content-Type` or `Content-Encoding` the JSON
//! routes do not take), 422 (a pycolytics body of the wrong shape), 429 with `Retry-After`
//! (rate limited, [`crate::ratelimit`]) and 408 (body too slow). Segment routes answer errors
//! as `{"code":"…","message":"…"}`, pycolytics routes as `{"detail":"…"}` (its 401 is exactly
//! `{"detail":"Invalid or missing API Key"}`), the others as text. Every refusal of a tracking
//! request is counted in `sluice_http_rejections_total{reason,source}`.
//!
//! # The hot path
//!
//! For a tracking route the handler takes a token from the client IP's bucket (when
//! `limits.per_ip` is set), reads the body (bounded by `server.max_body_bytes` and
//! `server.request_timeout`), and for the JSON routes checks it ([`sources`]: decompress within
//! the cap, one validating parse into borrowed structs, the key, the per-key bucket). Then it
//! builds the [`Envelope`] with the body exactly as received, picks the partition from the
//! request head ([`crate::ingest`]), submits the record and awaits its durability. It never
//! touches the disk and answers only after the log acknowledged the record: a 2xx means the
//! bytes are synced.

pub mod auth;
pub mod collector;
pub mod error;
pub mod response;
pub mod sources;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};

use crate::envelope::Envelope;
use crate::ingest::{Identity, Ingest};
use crate::metrics;
use crate::wire::route::{Route, Source};
use crate::wire::time::now_ms;
use auth::{Access, AccessConfig, Policy};
use collector::{CollectorConfig, Extra};

pub use collector::Collector;
pub use error::HttpError;
pub use response::{Answer, Body, PIXEL};
use serde::{Deserialize, Serialize};

use crate::config::units::{ByteSize, HumanDuration};

/// Metric label of requests that matched no route.
const UNMATCHED: &str = "unmatched";
/// Metric label of CORS preflights.
const PREFLIGHT: &str = "OPTIONS";

const ALLOW_PIXEL: &str = "GET, HEAD, OPTIONS";
const ALLOW_TP2: &str = "GET, HEAD, POST, OPTIONS";
const ALLOW_POST: &str = "POST, OPTIONS";
const ALLOW_PROBE: &str = "GET, HEAD";
/// The metrics label of `/static/` files.
const STATIC_ROUTE: &str = "/static/{file}";

/// The `Content-Type` of a static file, by its extension.
fn content_type(name: &str) -> &'static str {
    match name
        .rsplit_once('.')
        .map(|(_, ext)| ext.to_ascii_lowercase())
        .as_deref()
    {
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("map" | "json") => "application/json",
        Some("css") => "text/css; charset=utf-8",
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("txt") => "text/plain; charset=utf-8",
        Some("png") => "image/png",
        Some("gif") => "image/gif",
        Some("svg") => "image/svg+xml",
        Some("wasm") => "application/wasm",
        _ => "application/octet-stream",
    }
}
const ALLOW_REDIRECT: &str = "GET, HEAD, POST, OPTIONS";

/// Headers copied into the envelope (lower-case, as hyper stores names): what the publisher needs
/// to identify, enrich and authorise an event later. For `SP-Anonymous` requests the ones in
/// [`collector::ANONYMOUS_STRIPPED_HEADERS`] are left out.
pub const LOGGED_HEADERS: [&str; 10] = [
    "user-agent",
    "referer",
    "origin",
    "cookie",
    "x-forwarded-for",
    "forwarded",
    "content-type",
    "content-encoding",
    "authorization",
    "sp-anonymous",
];

/// A tracking request's route and the answer its method gets once the request is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tracking {
    /// The route: its template is stored in the envelope and used as the metric label, and it
    /// decides what is checked in the body before it is stored.
    pub route: Route,
    /// The answer once the request is durable.
    pub answer: Answer,
}

/// What a request's method and path resolve to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Store the request, then answer.
    Track(Tracking),
    /// `GET /health`.
    Health,
    /// `GET /ready`.
    Ready,
}

/// Matches a method and path against the route table (OPTIONS is handled before this).
pub fn resolve(method: &Method, path: &str) -> Result<Target, HttpError> {
    let Some(route) = Route::of_path(path) else {
        return Err(HttpError::NotFound { path: path.into() });
    };
    let get = matches!(*method, Method::GET | Method::HEAD);
    let post = *method == Method::POST;
    let (allow, answer) = match route {
        Route::Pixel | Route::IcePixel | Route::Tp1 => (ALLOW_PIXEL, get.then_some(Answer::Pixel)),
        Route::Tp2 => {
            let answer = if get {
                Some(Answer::Pixel)
            } else {
                post.then_some(Answer::TextOk)
            };
            (ALLOW_TP2, answer)
        }
        Route::Segment(_) => (ALLOW_POST, post.then_some(Answer::SegmentSuccess)),
        Route::PycolyticsEvent | Route::PycolyticsEvents => {
            (ALLOW_POST, post.then_some(Answer::NoContent))
        }
        Route::Collect | Route::CollectStream => (ALLOW_POST, post.then_some(Answer::Accepted)),
        Route::Health if get => return Ok(Target::Health),
        Route::Ready if get => return Ok(Target::Ready),
        Route::Health | Route::Ready => (ALLOW_PROBE, None),
        Route::Redirect | Route::RedirectOther | Route::Robots | Route::CrossDomain => {
            return Err(HttpError::NotFound { path: path.into() })
        }
    };
    match answer {
        Some(answer) => Ok(Target::Track(Tracking { route, answer })),
        None => Err(HttpError::MethodNotAllowed {
            method: method.clone(),
            route: route.template(),
            allow,
        }),
    }
}

/// The limits the handler enforces, from `server.*`, the collector behaviour from
/// `[collector]`, and the reloadable access rules (keys, rate limits, JSON sizes).
#[derive(Debug, Clone)]
pub struct Limits {
    /// `server.max_body_bytes`.
    pub max_body_bytes: u64,
    /// `server.request_timeout`: how long the body may take to arrive.
    pub request_timeout: Duration,
    /// `server.retry_after`: sent with 503 answers.
    pub retry_after: Duration,
    /// The compiled `[collector]` section.
    pub collector: Arc<Collector>,
    /// Keys, rate limits and JSON size limits; [`Access::reload`] swaps them while serving.
    pub access: Arc<Access>,
}

impl Limits {
    /// The limits of `[server]`, `[collector]` and the access rules.
    pub fn new(
        server: &ServerConfig,
        collector: &CollectorConfig,
        access: &AccessConfig<'_>,
    ) -> Limits {
        Limits {
            max_body_bytes: server.max_body_bytes.bytes(),
            request_timeout: server.request_timeout.get(),
            retry_after: server.retry_after.get(),
            collector: Arc::new(Collector::with_allowed_headers(
                collector,
                &["Authorization", access.auth.header.as_str()],
            )),
            access: Arc::new(Access::new(access)),
        }
    }
}

/// The collector application: routes, limits and the logs. Cheap to share (`Arc`).
#[derive(Debug)]
pub struct App {
    ingest: Arc<Ingest>,
    limits: Limits,
}

impl App {
    /// An application writing to `ingest` under `limits`.
    pub fn new(ingest: Arc<Ingest>, limits: Limits) -> App {
        metrics::handle();
        App { ingest, limits }
    }

    /// The logs this application writes to.
    pub fn ingest(&self) -> &Arc<Ingest> {
        &self.ingest
    }

    /// The reloadable access rules (keys, rate limits, JSON size limits).
    pub fn access(&self) -> &Arc<Access> {
        &self.limits.access
    }

    /// Answers one request. `peer` is the TCP peer's address, when there is one.
    pub async fn handle<B>(&self, req: Request<B>, peer: Option<SocketAddr>) -> Response<Body>
    where
        B: hyper::body::Body<Data = Bytes> + Unpin,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let started = Instant::now();
        let _in_flight = metrics::InFlight::start();
        let (label, resp) = self.dispatch(req, peer).await;
        metrics::record_request(label, resp.status(), started.elapsed());
        resp
    }

    async fn dispatch<B>(
        &self,
        req: Request<B>,
        peer: Option<SocketAddr>,
    ) -> (&'static str, Response<Body>)
    where
        B: hyper::body::Body<Data = Bytes> + Unpin,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let collector = &*self.limits.collector;
        if req.method() == Method::OPTIONS {
            let mut resp = response::preflight();
            collector.add_cors(resp.headers_mut(), req.headers().get(header::ORIGIN));
            collector.add_preflight(resp.headers_mut());
            return (PREFLIGHT, resp);
        }
        let plan = match resolve(req.method(), req.uri().path()) {
            Ok(Target::Track(route)) => Plan {
                route,
                mapped: None,
                redirect: false,
            },
            Ok(Target::Health) => {
                let answer = response::text(StatusCode::OK, "ok\n");
                return (Route::Health.template(), answer);
            }
            Ok(Target::Ready) => return (Route::Ready.template(), self.readiness()),
            Err(e @ HttpError::MethodNotAllowed { route, .. }) => {
                return (route, e.into_response())
            }
            Err(_) if collector.static_file(req.uri().path()).is_some() => {
                return (
                    STATIC_ROUTE,
                    self.static_file(req.uri().path(), req.method()).await,
                )
            }
            Err(e) => match collector.extra(req.uri().path()) {
                None => return (UNMATCHED, e.into_response()),
                Some(extra) => match self.plan_extra(extra, req.method()) {
                    Ok(plan) => plan,
                    Err(answer) => return answer,
                },
            },
        };
        let origin = req.headers().get(header::ORIGIN).cloned();
        let mut resp = match self.accept(plan, req, peer).await {
            Ok(accepted) => {
                let mut resp = plan.route.answer.response();
                let h = resp.headers_mut();
                if let Some(location) = accepted.location {
                    h.insert(header::LOCATION, location);
                }
                if let Some(cookie) = accepted.set_cookie {
                    h.insert(header::SET_COOKIE, cookie);
                }
                resp
            }
            Err(e) => {
                let source = plan.route.route.source().unwrap_or(Source::Snowplow);
                if let Some(reason) = e.rejection() {
                    metrics::record_rejection(reason, source.as_str());
                }
                e.into_response_for(source)
            }
        };
        collector.add_cors(resp.headers_mut(), origin.as_ref());
        (plan.route.route.template(), resp)
    }

    /// `GET /static/{name}`: a file of `collector.static_dir`, read when asked for (so a new
    /// tracker version is served as soon as it is copied in). Nothing is stored.
    async fn static_file(&self, request_path: &str, method: &Method) -> Response<Body> {
        if !matches!(*method, Method::GET | Method::HEAD) {
            return HttpError::MethodNotAllowed {
                method: method.clone(),
                route: STATIC_ROUTE,
                allow: ALLOW_PROBE,
            }
            .into_response();
        }
        let not_found = || {
            HttpError::NotFound {
                path: request_path.to_string(),
            }
            .into_response()
        };
        let Some((files, name)) = self.limits.collector.static_file(request_path) else {
            return not_found();
        };
        let Some(path) = files.path(name) else {
            return not_found();
        };
        let max = files.max_file_bytes;
        let read = tokio::task::spawn_blocking(move || -> std::io::Result<Option<Vec<u8>>> {
            let m = std::fs::metadata(&path)?;
            if !m.is_file() {
                return Ok(None);
            }
            if m.len() > max {
                tracing::warn!(path = %path.display(), bytes = m.len(),
                    "not served: larger than collector.static_max_file_bytes");
                return Ok(None);
            }
            std::fs::read(&path).map(Some)
        })
        .await;
        match read {
            Ok(Ok(Some(bytes))) => response::static_file(content_type(name), Bytes::from(bytes)),
            Ok(Err(e)) if e.kind() != std::io::ErrorKind::NotFound => {
                tracing::warn!(path = request_path, error = %e, "cannot read a static file");
                not_found()
            }
            _ => not_found(),
        }
    }

    /// Routes a path that only the `[collector]` section knows: answers it directly, or returns
    /// the tracking plan (redirects, aliases).
    #[allow(clippy::result_large_err)]
    fn plan_extra(
        &self,
        extra: Extra,
        method: &Method,
    ) -> Result<Plan, (&'static str, Response<Body>)> {
        let collector = &*self.limits.collector;
        let probe = matches!(*method, Method::GET | Method::HEAD);
        let not_allowed = |route: &'static str, allow: &'static str| {
            let e = HttpError::MethodNotAllowed {
                method: method.clone(),
                route,
                allow,
            };
            (route, e.into_response())
        };
        match extra {
            Extra::Robots if probe => Err((
                Route::Robots.template(),
                response::text(StatusCode::OK, collector::ROBOTS_TXT),
            )),
            Extra::Robots => Err(not_allowed(Route::Robots.template(), ALLOW_PROBE)),
            Extra::CrossDomain => match collector.cross_domain_policy() {
                Some(body) if probe => Err((Route::CrossDomain.template(), response::xml(body))),
                Some(_) => Err(not_allowed(Route::CrossDomain.template(), ALLOW_PROBE)),
                None => Err((
                    UNMATCHED,
                    HttpError::NotFound {
                        path: Route::CrossDomain.template().into(),
                    }
                    .into_response(),
                )),
            },
            Extra::RedirectsDisabled => Err((
                Route::RedirectOther.template(),
                HttpError::RedirectsDisabled.into_response(),
            )),
            Extra::Redirect { route, mapped } => {
                if probe || *method == Method::POST {
                    Ok(Plan {
                        route: Tracking {
                            route,
                            answer: Answer::Found,
                        },
                        mapped,
                        redirect: true,
                    })
                } else {
                    Err(not_allowed(route.template(), ALLOW_REDIRECT))
                }
            }
            Extra::Alias(target) => match resolve(method, target.template()) {
                Ok(Target::Track(route)) => Ok(Plan {
                    route,
                    mapped: Some(target.template()),
                    redirect: false,
                }),
                Err(e @ HttpError::MethodNotAllowed { route, .. }) => {
                    Err((route, e.into_response()))
                }
                // Alias targets are tracking routes only (validated).
                Ok(_) | Err(_) => Err((
                    UNMATCHED,
                    HttpError::NotFound {
                        path: target.template().into(),
                    }
                    .into_response(),
                )),
            },
        }
    }

    /// Stores the request unless the do-not-track cookie opted it out; returns once it is
    /// durable, with the headers the answer needs.
    async fn accept<B>(
        &self,
        plan: Plan,
        req: Request<B>,
        peer: Option<SocketAddr>,
    ) -> Result<Accepted, HttpError>
    where
        B: hyper::body::Body<Data = Bytes> + Unpin,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let received_at_ms = now_ms();
        let (parts, body) = req.into_parts();
        let query = parts.uri.query();
        let collector = &*self.limits.collector;
        let access = &*self.limits.access;
        let policy = access.policy();
        // Rate limits come first: a refused client costs no body read.
        access.limit_client(&policy, peer, &parts.headers)?;
        let location = if plan.redirect {
            Some(collector.redirect_target(query).map_err(HttpError::from)?)
        } else {
            None
        };
        let visitor = collector.visitor(&parts.headers, query);
        let body = self.read_body(body, &parts.headers).await?;
        let store = self.admit(&policy, plan.route.route, &parts.headers, query, &body)?;
        if visitor.do_not_track || !store {
            return Ok(Accepted {
                location,
                set_cookie: None,
            });
        }

        let partition = {
            let forwarded_for = parts
                .headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok());
            let user = visitor.nuid.as_deref().filter(|_| visitor.from_request);
            self.ingest.route(&Identity::of(user, forwarded_for, peer))
        };
        let (headers, peer) = if visitor.anonymous {
            (anonymous_headers(&parts.headers), None)
        } else {
            (logged_headers(&parts.headers), peer.map(|p| p.to_string()))
        };
        let envelope = Envelope {
            received_at_ms,
            route: plan.route.route.template().to_owned(),
            method: parts.method.as_str().to_owned(),
            path: plan.mapped.unwrap_or(parts.uri.path()).to_owned(),
            query: query.map(str::to_owned),
            headers,
            body,
            peer,
            nuid: visitor.nuid,
        };
        let record = envelope.encode();
        drop(envelope);

        let submitted = Instant::now();
        let result = self.ingest.append(partition, record).await;
        metrics::record_append(submitted.elapsed());
        result
            .map_err(|e| HttpError::from_wal(e, self.limits.retry_after))
            .map(|_| Accepted {
                location,
                set_cookie: visitor.set_cookie,
            })
    }

    /// The checks between reading the body and storing it: the key (401), the per-key rate
    /// limit (429) and, on the JSON routes, the body ([`sources`]: 400, 413, 415, 422). Returns
    /// whether there is anything to store (an empty batch is answered but not stored).
    fn admit(
        &self,
        policy: &Policy,
        route: Route,
        headers: &HeaderMap,
        query: Option<&str>,
        body: &[u8],
    ) -> Result<bool, HttpError> {
        let access = &*self.limits.access;
        let source = route.source().unwrap_or(Source::Snowplow);
        let unauthorized = || HttpError::Unauthorized { protocol: source };
        match route {
            // Snowplow's bodies are stored as sent; the publisher decodes them. (The probes and
            // `/robots.txt`, `/crossdomain.xml` are answered before anything is admitted.)
            Route::Pixel
            | Route::IcePixel
            | Route::Tp1
            | Route::Tp2
            | Route::Redirect
            | Route::RedirectOther
            | Route::Health
            | Route::Ready
            | Route::Robots
            | Route::CrossDomain => {
                let key = auth::header_key(headers, &policy.key_header);
                if !policy.snowplow_keys.admits(key) {
                    return Err(unauthorized());
                }
                access.limit_key(policy, key)?;
                Ok(true)
            }
            Route::Collect | Route::CollectStream => {
                let key = auth::header_key(headers, &policy.key_header);
                if !policy.collect_keys.admits(key) {
                    return Err(unauthorized());
                }
                sources::check_content_type(headers)?;
                let cap = policy.max_decompressed_bytes;
                let json = sources::decoded_body(headers, body, cap, cap, |_| {
                    HttpError::DecompressedTooLarge { limit: cap }
                })?;
                let inspected = sources::inspect_collect(&json)?;
                access.limit_key(policy, key)?;
                Ok(!inspected.empty)
            }
            Route::Segment(segment) => {
                sources::check_content_type(headers)?;
                let batch = segment.is_batch();
                let limit = if batch {
                    policy.max_batch_bytes
                } else {
                    policy.max_event_bytes
                };
                let json = sources::decoded_body(
                    headers,
                    body,
                    limit,
                    policy.max_decompressed_bytes,
                    |size| {
                        if batch {
                            HttpError::BatchTooLarge { size, limit }
                        } else {
                            HttpError::EventTooLarge { size, limit }
                        }
                    },
                )?;
                let inspected = sources::inspect_segment(batch, &json)?;
                // Basic auth, else the body's writeKey, else ?writeKey=.
                let from_query;
                let key: Option<std::borrow::Cow<'_, str>> = match auth::basic_username(headers) {
                    Some(k) => Some(k.into()),
                    None => match inspected.keys.into_iter().next().flatten() {
                        Some(k) => Some(k),
                        None => {
                            from_query = auth::query_write_key(query);
                            from_query.as_deref().map(Into::into)
                        }
                    },
                };
                if !policy.segment_keys.admits(key.as_deref()) {
                    return Err(unauthorized());
                }
                if inspected.items > policy.max_batch_items {
                    return Err(HttpError::TooManyEvents {
                        count: inspected.items,
                        limit: policy.max_batch_items,
                    });
                }
                access.limit_key(policy, key.as_deref())?;
                Ok(!inspected.empty)
            }
            Route::PycolyticsEvent | Route::PycolyticsEvents => {
                sources::check_content_type(headers)?;
                let cap = policy.max_decompressed_bytes;
                let json = sources::decoded_body(headers, body, cap, cap, |_| {
                    HttpError::DecompressedTooLarge { limit: cap }
                })?;
                let inspected =
                    sources::inspect_pycolytics(route == Route::PycolyticsEvents, &json)?;
                // Every event must carry a valid key; a missing one never passes. (An empty
                // batch stores nothing and is answered 204 whatever its key.)
                if !policy
                    .pycolytics_keys
                    .admits_all(inspected.keys.iter().map(|k| k.as_deref()))
                {
                    return Err(unauthorized());
                }
                let key = inspected.keys.first().and_then(|k| k.as_deref());
                access.limit_key(policy, key)?;
                Ok(!inspected.empty)
            }
        }
    }

    /// Reads the whole body within the size and time limits. A declared `Content-Length` over
    /// the limit is refused before reading anything.
    async fn read_body<B>(&self, body: B, headers: &HeaderMap) -> Result<Vec<u8>, HttpError>
    where
        B: hyper::body::Body<Data = Bytes> + Unpin,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        if body.is_end_stream() {
            return Ok(Vec::new());
        }
        let limit = self.limits.max_body_bytes;
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit) {
            return Err(HttpError::BodyTooLarge { limit });
        }
        let capacity = declared.unwrap_or(0).min(limit) as usize;
        let collect = async move {
            let mut buf = Vec::with_capacity(capacity);
            let mut body = Limited::new(body, limit as usize);
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| {
                    if e.downcast_ref::<LengthLimitError>().is_some() {
                        HttpError::BodyTooLarge { limit }
                    } else {
                        HttpError::BodyRead(e.to_string())
                    }
                })?;
                if let Some(data) = frame.data_ref() {
                    buf.extend_from_slice(data);
                }
            }
            Ok(buf)
        };
        let timeout = self.limits.request_timeout;
        tokio::time::timeout(timeout, collect)
            .await
            .map_err(|_| HttpError::BodyTimeout { timeout })?
    }

    fn readiness(&self) -> Response<Body> {
        let unavailable = self.ingest.unavailable();
        if unavailable.is_empty() {
            return response::text(StatusCode::OK, "ready\n");
        }
        let list = unavailable
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        response::message(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "not ready: the log of partition(s) {list} is full or poisoned; `sluice wal status` shows which\n"
            ),
        )
    }
}

/// How one tracking request is handled: its route, the path to store, and whether it redirects.
#[derive(Debug, Clone, Copy)]
struct Plan {
    route: Tracking,
    /// The stored path when it is not the request's own (an alias's target).
    mapped: Option<&'static str>,
    redirect: bool,
}

/// What a stored (or deliberately not stored) request's answer carries besides its body.
#[derive(Debug)]
struct Accepted {
    location: Option<HeaderValue>,
    set_cookie: Option<HeaderValue>,
}

/// [`logged_headers`] without the ones an `SP-Anonymous` request must not leave behind.
fn anonymous_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    let mut out = logged_headers(headers);
    out.retain(|(name, _)| !collector::ANONYMOUS_STRIPPED_HEADERS.contains(&name.as_str()));
    out
}

/// The headers in [`LOGGED_HEADERS`], in arrival order. Values that are not valid UTF-8 are
/// kept with replacement characters (headers are ASCII in practice).
fn logged_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    let mut out = Vec::with_capacity(LOGGED_HEADERS.len());
    for (name, value) in headers {
        if LOGGED_HEADERS.contains(&name.as_str()) {
            out.push((name.as_str().to_owned(), header_text(value)));
        }
    }
    out
}

fn header_text(value: &HeaderValue) -> String {
    match value.to_str() {
        Ok(s) => s.to_owned(),
        Err(_) => String::from_utf8_lossy(value.as_bytes()).into_owned(),
    }
}

/// The collector's HTTP listener and its limits.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on. Default `0.0.0.0:8080`. Flag `--listen`.
    pub listen: SocketAddr,
    /// Largest request body accepted; larger → 413 and nothing stored. Default `2MiB`;
    /// between `1KiB` and `64MiB`, and it must fit in one WAL segment with room to spare.
    pub max_body_bytes: ByteSize,
    /// Largest decompressed body of a gzip request (`Content-Encoding: gzip`) on the JSON
    /// routes (Segment, pycolytics, collect); decompression stops there and the request gets
    /// 413 (gzip bombs cost at most this much memory). The publisher decompresses stored
    /// bodies with the same cap. Default `4MiB`; `1KiB` to `256MiB`.
    pub max_decompressed_bytes: ByteSize,
    /// Largest request head (request line plus headers); larger → 431. Default `40KiB`;
    /// between `8KiB` and `1MiB`.
    pub max_header_bytes: ByteSize,
    /// Time allowed to receive a request's body after its head; slower → 408. Also bounds how
    /// long a connection may take to send a complete head. Default `30s`; `1s` to `10m`.
    pub request_timeout: HumanDuration,
    /// Concurrent connections; further ones wait in the kernel's accept queue. Default 10 000;
    /// 1 to 1 000 000.
    pub max_connections: usize,
    /// On SIGTERM/SIGINT, how long in-flight requests may take to finish. Default `30s`;
    /// `0s` to `10m`.
    pub shutdown_grace: HumanDuration,
    /// `Retry-After` seconds sent with 503 answers (log full or unavailable). Default `5s`;
    /// `1s` to `1h`.
    pub retry_after: HumanDuration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            max_body_bytes: ByteSize(2 << 20),
            max_decompressed_bytes: ByteSize(4 << 20),
            max_header_bytes: ByteSize(40 << 10),
            request_timeout: HumanDuration(Duration::from_secs(30)),
            max_connections: 10_000,
            shutdown_grace: HumanDuration(Duration::from_secs(30)),
            retry_after: HumanDuration(Duration::from_secs(5)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::route::SEGMENT_ROUTES;

    const TP1: &str = "/com.snowplowanalytics.snowplow/tp1";
    const TP2: &str = "/com.snowplowanalytics.snowplow/tp2";

    fn track(method: Method, path: &str) -> Tracking {
        match resolve(&method, path) {
            Ok(Target::Track(route)) => route,
            other => panic!("{method} {path} resolved to {other:?}"),
        }
    }

    #[test]
    fn every_tracking_route_resolves_to_its_template_and_answer() {
        assert_eq!(track(Method::GET, "/i").answer, Answer::Pixel);
        assert_eq!(track(Method::HEAD, "/ice.png").route.template(), "/ice.png");
        assert_eq!(track(Method::GET, TP1).answer, Answer::Pixel);
        assert_eq!(track(Method::GET, TP2).answer, Answer::Pixel);
        assert_eq!(track(Method::POST, TP2).answer, Answer::TextOk);
        for route in SEGMENT_ROUTES {
            let p = route.template();
            let Route::Segment(segment) = route else {
                panic!("{p} is a Segment route");
            };
            let batch = ["/v1/batch", "/v1/import", "/v1/b"].contains(&p);
            assert_eq!(
                track(Method::POST, p),
                Tracking {
                    route,
                    answer: Answer::SegmentSuccess,
                },
                "{p}"
            );
            assert_eq!(segment.is_batch(), batch, "{p}");
        }
        assert_eq!(track(Method::POST, "/v1/t").route.template(), "/v1/t");
        assert_eq!(
            track(Method::POST, "/v1.0/event").route,
            Route::PycolyticsEvent
        );
        assert_eq!(
            track(Method::GET, "/i").route.source(),
            Some(Source::Snowplow)
        );
        assert_eq!(
            track(Method::POST, "/collect/x").route.source(),
            Some(Source::Collect)
        );
        assert_eq!(
            track(Method::POST, "/v1.0/events").answer,
            Answer::NoContent
        );
        assert_eq!(track(Method::POST, "/collect").route.template(), "/collect");
        assert_eq!(
            track(Method::POST, "/collect/orders").route.template(),
            "/collect/{stream}"
        );
    }

    #[test]
    fn known_paths_with_the_wrong_method_are_405_and_unknown_paths_404() {
        for (m, p) in [
            (Method::POST, "/i"),
            (Method::PUT, TP2),
            (Method::POST, TP1),
            (Method::GET, "/v1/track"),
            (Method::GET, "/v1/t"),
            (Method::GET, "/collect/x"),
            (Method::POST, "/health"),
        ] {
            let err = resolve(&m, p).unwrap_err();
            assert_eq!(err.status(), StatusCode::METHOD_NOT_ALLOWED, "{m} {p}");
        }
        for p in [
            "/",
            "/collect/",
            "/collect/a/b",
            "/v1/unknown",
            "/v1/x",
            "/v1/",
            "/i/",
        ] {
            let err = resolve(&Method::POST, p).unwrap_err();
            assert_eq!(err.status(), StatusCode::NOT_FOUND, "{p}");
        }
    }

    #[test]
    fn only_the_listed_headers_are_logged() {
        let mut h = HeaderMap::new();
        h.insert(header::USER_AGENT, HeaderValue::from_static("ua"));
        h.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        h.append(header::COOKIE, HeaderValue::from_static("a=1"));
        h.append(header::COOKIE, HeaderValue::from_static("sp=2"));
        let logged = logged_headers(&h);
        assert_eq!(
            logged,
            vec![
                ("user-agent".into(), "ua".into()),
                ("cookie".into(), "a=1".into()),
                ("cookie".into(), "sp=2".into()),
            ]
        );
    }
}
