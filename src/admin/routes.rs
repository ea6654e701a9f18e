//! The admin routes (see the table in [`crate::admin`]): authentication (the bearer token, or
//! the console's cookie), then one handler per route, each answering JSON; the console's own
//! paths are answered by [`console`].

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Frame, Incoming};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc};

use super::console::{self, CookieCheck};
use super::live::{LiveFilter, LiveItem};
use super::{AdminConfig, AdminToken, Daemon, DEFAULT_PAGE_ENTRIES};
use crate::deadletter::{DeadLetterError, Entry, EntryId, Filter};
use crate::event::FailureCategory;
use crate::publish::replay::{replay_dead_letters, ReplayError};
use crate::shutdown::Shutdown;
use crate::sink::clickhouse::client::CallError;

/// ClickHouse's exception code for a query cancelled by `max_execution_time`.
const TIMEOUT_EXCEEDED: u32 = 159;
/// Rows `/api/v1/events` returns when `limit` is not given.
pub const DEFAULT_EVENTS_LIMIT: usize = 50;
/// How often an idle live-feed stream sends a comment, so proxies keep it open.
pub const LIVE_KEEPALIVE: Duration = Duration::from_secs(15);
/// Chunks queued between a live viewer's relay and its socket.
const LIVE_QUEUE: usize = 16;

/// Every answer's body: whole, or a live stream.
pub(super) type Body = BoxBody<Bytes, Infallible>;

/// The API's state: the daemon, the token and the limits.
pub(super) struct Api {
    pub daemon: Arc<Daemon>,
    pub token: AdminToken,
    pub config: AdminConfig,
    /// Ends open live streams when the daemon stops.
    pub shutdown: Shutdown,
}

/// An answer that is not a success: its status and a message saying what to fix.
struct Refusal {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl Refusal {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Refusal {
        Refusal {
            status,
            code,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Refusal {
        Refusal::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
}

impl From<DeadLetterError> for Refusal {
    fn from(e: DeadLetterError) -> Refusal {
        let status = match e {
            DeadLetterError::NotFound(_) => StatusCode::NOT_FOUND,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Refusal::new(status, e.code(), e.to_string())
    }
}

type Answer = Result<Response<Body>, Refusal>;

fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())).boxed());
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn ok(body: Value) -> Answer {
    Ok(json_response(StatusCode::OK, &body))
}

impl Api {
    pub(super) async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        let path = req.uri().path().to_string();
        let method = req.method().clone();
        let answer = if path == "/healthz" {
            if method == Method::GET || method == Method::HEAD {
                let mut resp = Response::new(Full::new(Bytes::from_static(b"ok\n")).boxed());
                resp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                );
                Ok(resp)
            } else {
                Err(method_not_allowed("GET"))
            }
        } else if console::is_console_path(&path) {
            Ok(console::answer(&req, &self.token).map(BodyExt::boxed))
        } else {
            match self.authenticate(&req) {
                Ok(credential) => match refuse_cookie_write(credential, &method, &req) {
                    Some(refusal) => Err(refusal),
                    None => self.route(req, &method, &path).await,
                },
                Err(refusal) => Err(refusal),
            }
        };
        answer.unwrap_or_else(|r| {
            let mut resp = json_response(r.status, &json!({ "error": r.message, "code": r.code }));
            if r.status == StatusCode::UNAUTHORIZED {
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"sluice-admin\""),
                );
            }
            resp
        })
    }

    /// The bearer token, else the console's cookie (see [`console`]).
    fn authenticate(&self, req: &Request<Incoming>) -> Result<Credential, Refusal> {
        let unauthorized =
            |message: String| Refusal::new(StatusCode::UNAUTHORIZED, "unauthorized", message);
        let where_ = format!(
            "the admin token is admin.token, or when that is empty the file {}",
            self.token.origin
        );
        let Some(value) = req.headers().get(header::AUTHORIZATION) else {
            return match console::check_cookie(req.headers(), &self.token) {
                CookieCheck::Valid => Ok(Credential::ConsoleCookie),
                CookieCheck::Stale => Err(unauthorized(format!(
                    "the console's {} cookie is not the admin token (it changed?): sign in \
                     again at {} ({where_})",
                    console::COOKIE,
                    console::PREFIX
                ))),
                CookieCheck::Absent => Err(unauthorized(format!(
                    "this route needs the admin token: send `Authorization: Bearer <token>` \
                     ({where_})"
                ))),
            };
        };
        let presented = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        match presented {
            Some(t) if self.token.accepts(t) => Ok(Credential::Bearer),
            Some(_) => Err(unauthorized(format!(
                "the bearer token does not match ({where_})"
            ))),
            None => Err(unauthorized(
                "the Authorization header must be `Bearer <token>`".into(),
            )),
        }
    }

    async fn route(&self, req: Request<Incoming>, method: &Method, path: &str) -> Answer {
        const DEAD_LETTERS: &str = "/api/v1/dead-letters";
        match path {
            "/api/v1/status" => {
                only(method, Method::GET)?;
                self.status()
            }
            "/api/v1/history" => {
                only(method, Method::GET)?;
                ok(json!({
                    "every_ms": super::SAMPLE_EVERY.as_millis() as u64,
                    "samples": self.daemon.history.samples(),
                }))
            }
            DEAD_LETTERS => {
                only(method, Method::GET)?;
                self.list(req.uri().query().unwrap_or("")).await
            }
            "/api/v1/live" => {
                only(method, Method::GET)?;
                self.live(req.uri().query().unwrap_or(""))
            }
            "/api/v1/events" => {
                only(method, Method::GET)?;
                self.events(req.uri().query().unwrap_or("")).await
            }
            "/api/v1/query" => {
                only(method, Method::POST)?;
                let body = self.body(req).await?;
                self.query(&body).await
            }
            "/api/v1/dead-letters/replay" => {
                only(method, Method::POST)?;
                let selection = self.selection(req).await?;
                self.replay(selection).await
            }
            "/api/v1/dead-letters/purge" => {
                only(method, Method::POST)?;
                let selection = self.selection(req).await?;
                self.purge(selection).await
            }
            _ => match path
                .strip_prefix(DEAD_LETTERS)
                .and_then(|p| p.strip_prefix('/'))
            {
                Some(id) if !id.contains('/') => {
                    only(method, Method::GET)?;
                    self.show(id).await
                }
                _ => Err(Refusal::new(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    format!("no admin route {path}; see the routes in the README's \"Admin API\""),
                )),
            },
        }
    }

    fn status(&self) -> Answer {
        let d = &self.daemon;
        let health = d.health.snapshot();
        let partitions: Vec<Value> = d
            .ingest
            .statuses()
            .into_iter()
            .map(|(index, s)| {
                let h = health.get(&index).cloned().unwrap_or_default();
                let lag_seconds = if s.unconfirmed == 0 {
                    0.0
                } else {
                    h.lag_seconds
                };
                json!({
                    "partition": index,
                    "appended": s.last_lsn.0,
                    "checkpoint": s.checkpoint.0,
                    "unpublished": s.unconfirmed,
                    "lag_records": s.unconfirmed,
                    "lag_seconds": lag_seconds,
                    "used_bytes": s.used_bytes,
                    "capacity_bytes": s.capacity_bytes,
                    "segments": s.segments,
                    "full": s.full,
                    "poisoned": s.poisoned,
                    "dropped_total": s.dropped_total,
                    "rows_confirmed": h.rows_confirmed,
                    "dead_lettered": h.dead_lettered,
                    "last_confirmed_ms": h.last_confirmed_ms,
                    "last_error": h.last_error,
                    "last_error_ms": h.last_error_ms,
                })
            })
            .collect();
        let sink = d.sink.get();
        let last_error = health
            .values()
            .filter_map(|h| Some((h.last_error_ms?, h.last_error.clone()?)))
            .max()
            .map(|(_, e)| e)
            .or_else(|| {
                d.connect_error
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone()
            });
        let paused = sink.and_then(|s| s.paused_because());
        let publishers = match (sink, &paused) {
            (None, _) => json!({ "running": false,
                "paused": "waiting for ClickHouse: the collector stores into the log meanwhile" }),
            (Some(_), Some(reason)) => json!({ "running": true, "paused": reason }),
            (Some(_), None) => json!({ "running": true, "paused": null }),
        };
        let counts = d.dead_letters.counts()?;
        let by_category: serde_json::Map<String, Value> = FailureCategory::ALL
            .iter()
            .map(|c| {
                (
                    c.as_str().to_string(),
                    json!(counts.get(c).copied().unwrap_or(0)),
                )
            })
            .collect();
        let now = crate::wire::time::now_ms();
        ok(json!({
            "version": env!("CARGO_PKG_VERSION"),
            "instance": d.instance.to_string(),
            "started_ms": d.started_ms,
            "uptime_seconds": (now - d.started_ms).max(0) as f64 / 1000.0,
            "partitions": partitions,
            "clickhouse": {
                "connected": sink.is_some(),
                "up": d.clickhouse_up(&health),
                "version": sink.map(|s| s.server_version().to_string()),
                "delivery": sink.map(|s| if s.supports_dedup() { "exactly_once" } else { "at_least_once" }),
                "last_error": last_error,
            },
            "publishers": publishers,
            "collector": { "listen": d.collector_addr.to_string() },
            "dead_letters": {
                "total": counts.values().sum::<u64>(),
                "by_category": by_category,
            },
            "rates": d.history.rates(),
            "live": {
                "viewers": d.live.viewers(),
                "max_viewers": d.live.max_viewers(),
            },
        }))
    }

    async fn list(&self, query: &str) -> Answer {
        let mut q = ListQuery::default();
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            q.set(&k, &v)?;
        }
        let limit = q
            .limit
            .unwrap_or(DEFAULT_PAGE_ENTRIES)
            .min(self.config.max_page_entries);
        if limit == 0 {
            return Err(Refusal::bad_request("limit must be at least 1"));
        }
        let store = self.daemon.dead_letters.clone();
        let page = blocking(move || store.page(&q.filter, q.after, limit)).await??;
        ok(json!({
            "entries": page.entries.iter().map(view).collect::<Vec<_>>(),
            "next_after": page.next_after.map(|id| id.to_string()),
        }))
    }

    async fn show(&self, id: &str) -> Answer {
        let id: EntryId = id.parse().map_err(|e: String| Refusal::bad_request(e))?;
        let store = self.daemon.dead_letters.clone();
        let entry = blocking(move || store.get(id)).await??;
        ok(view(&entry))
    }

    /// The request's body, at most `admin.max_body_bytes`.
    async fn body(&self, req: Request<Incoming>) -> Result<Bytes, Refusal> {
        let max = self.config.max_body_bytes.bytes() as usize;
        match Limited::new(req.into_body(), max).collect().await {
            Ok(b) => Ok(b.to_bytes()),
            Err(e)
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some() =>
            {
                Err(Refusal::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    format!("the body is larger than admin.max_body_bytes = {max} bytes"),
                ))
            }
            Err(e) => Err(Refusal::bad_request(format!("cannot read the body: {e}"))),
        }
    }

    async fn selection(&self, req: Request<Incoming>) -> Result<Filter, Refusal> {
        let body = self.body(req).await?;
        let s: Selection = serde_json::from_slice(&body).map_err(|e| {
            Refusal::bad_request(format!(
                "the body must be a JSON selection ({{\"ids\": [...]}}, filter fields or \
                 {{\"all\": true}}): {e}"
            ))
        })?;
        s.into_filter()
    }

    async fn replay(&self, filter: Filter) -> Answer {
        let Some(sink) = self.daemon.sink.get().cloned() else {
            return Err(Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_connected",
                "ClickHouse is not connected yet, so nothing can be replayed; see \
                 clickhouse.last_error in /api/v1/status",
            ));
        };
        let _one_at_a_time = self.daemon.writing.lock().await;
        let d = self.daemon.clone();
        let runtime = tokio::runtime::Handle::current();
        let (summary, failures) = blocking(move || {
            let mut out = Vec::new();
            let s = replay_dead_letters(
                &d.instance,
                &d.dead_letters,
                &filter,
                d.replay_chunk_rows,
                &*d.processor,
                &*sink,
                &runtime,
                &mut out,
                &(),
            )?;
            let lines: Vec<String> = String::from_utf8_lossy(&out)
                .lines()
                .map(String::from)
                .collect();
            Ok::<_, ReplayError>((s, lines))
        })
        .await?
        .map_err(|e| Refusal::new(StatusCode::BAD_GATEWAY, e.code(), e.to_string()))?;
        tracing::info!(
            tried = summary.tried,
            loaded = summary.loaded,
            failed_again = summary.failed_again,
            "dead letters replayed through the admin API"
        );
        ok(json!({
            "tried": summary.tried,
            "loaded": summary.loaded,
            "rows": summary.rows,
            "failed_again": summary.failed_again,
            "failures": failures,
        }))
    }

    /// Streams the live feed as Server-Sent Events until the viewer leaves or the daemon
    /// stops. A relay task per viewer moves records from the broadcast to the socket.
    fn live(&self, query: &str) -> Answer {
        let mut filter = LiveFilter::default();
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            let v = Some(v.into_owned()).filter(|v| !v.is_empty());
            match &*k {
                "source" => filter.source = v,
                "route" => filter.route = v,
                "app_id" => filter.app_id = v,
                "event" => filter.event = v,
                other => {
                    return Err(Refusal::bad_request(format!(
                        "unknown query parameter {other:?}; expected source, route, app_id or event"
                    )))
                }
            }
        }
        let Some(mut viewer) = self.daemon.live.watch() else {
            return Err(Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too_many_viewers",
                format!(
                    "admin.max_live_viewers = {} viewers are already watching",
                    self.daemon.live.max_viewers()
                ),
            ));
        };
        let (tx, rx) = mpsc::channel::<Bytes>(LIVE_QUEUE);
        let mut stop = self.shutdown.clone();
        // Owned by the viewer's connection: it ends when the socket's side of `tx` is gone
        // (the viewer left) or when the daemon stops.
        tokio::spawn(async move {
            let _ = tx.send(Bytes::from_static(b": sluice live feed\n\n")).await;
            loop {
                let chunk = tokio::select! {
                    received = viewer.records.recv() => match received.as_deref() {
                        Ok(LiveItem::Record(r)) if filter.matches(r) => r.frame.clone(),
                        Ok(LiveItem::Record(_)) => continue,
                        Ok(LiveItem::Skipped { partition, records }) => Bytes::from(format!(
                            ": skipped {records} records of partition {partition} \
                             (admin.live_max_records_per_second)\n\n"
                        )),
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            Bytes::from(format!(": lagged {n}\n\n"))
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    _ = tokio::time::sleep(LIVE_KEEPALIVE) => Bytes::from_static(b": keep-alive\n\n"),
                    _ = stop.stopped() => return,
                };
                if tx.send(chunk).await.is_err() {
                    return;
                }
            }
        });
        let mut resp = Response::new(ChannelBody(rx).boxed());
        let headers = resp.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
        Ok(resp)
    }

    fn sink(&self) -> Result<Arc<crate::sink::clickhouse::Sink>, Refusal> {
        self.daemon.sink.get().cloned().ok_or_else(|| {
            Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_connected",
                "ClickHouse is not connected yet; see clickhouse.last_error in /api/v1/status",
            )
        })
    }

    /// Runs a read-only query and answers its columns and rows.
    async fn run_query(&self, sql: &str, max_rows: usize) -> Result<Value, Refusal> {
        let sink = self.sink()?;
        let timeout = self.config.query_timeout.get();
        let answer = sink
            .query_readonly(sql, max_rows, timeout)
            .await
            .map_err(|e| match &e {
                CallError::Timeout(_)
                | CallError::Server {
                    code: Some(TIMEOUT_EXCEEDED),
                    ..
                } => Refusal::new(StatusCode::GATEWAY_TIMEOUT, "timeout", e.to_string()),
                CallError::Connect(_) => {
                    Refusal::new(StatusCode::BAD_GATEWAY, "unreachable", e.to_string())
                }
                CallError::Server { .. } => Refusal::new(
                    StatusCode::BAD_REQUEST,
                    "refused_by_clickhouse",
                    e.to_string(),
                ),
            })?;
        Ok(json!({
            "columns": answer["meta"],
            "rows": answer["data"],
            "statistics": answer["statistics"],
        }))
    }

    /// `POST /api/v1/query`: `{"sql": "...", "max_rows": N}`.
    async fn query(&self, body: &[u8]) -> Answer {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Query {
            sql: String,
            max_rows: Option<usize>,
        }
        let q: Query = serde_json::from_slice(body).map_err(|e| {
            Refusal::bad_request(format!(
                "the body must be {{\"sql\": \"SELECT ...\", \"max_rows\": N}}: {e}"
            ))
        })?;
        if !is_read_only(&q.sql) {
            return Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                "not_read_only",
                format!(
                    "only read queries run here (they start with one of {}); ClickHouse runs \
                     them with readonly = 1",
                    READ_KEYWORDS.join(", ")
                ),
            ));
        }
        let max = self.config.query_max_rows;
        let max_rows = q.max_rows.unwrap_or(max).clamp(1, max);
        let mut answer = self.run_query(&q.sql, max_rows).await?;
        answer["max_rows"] = max_rows.into();
        ok(answer)
    }

    /// `GET /api/v1/events`: a page of the events table, newest first by default.
    async fn events(&self, query: &str) -> Answer {
        let sink = self.sink()?;
        let columns = sink.columns();
        let mut limit = DEFAULT_EVENTS_LIMIT;
        let mut offset = 0u64;
        let mut order_by = "collector_tstamp".to_string();
        let mut desc = true;
        let mut conditions = Vec::new();
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            let number = |v: &str| {
                v.parse::<u64>().map_err(|_| {
                    Refusal::bad_request(format!("{k} must be a non-negative integer, not {v:?}"))
                })
            };
            match &*k {
                "limit" => limit = number(&v)? as usize,
                "offset" => offset = number(&v)?,
                "order_by" => order_by = v.into_owned(),
                "desc" => {
                    desc = match &*v {
                        "true" | "1" => true,
                        "false" | "0" => false,
                        _ => return Err(Refusal::bad_request("desc must be true or false")),
                    }
                }
                "app_id" | "event" | "source" | "platform" | "user_id" if !v.is_empty() => {
                    conditions.push(format!("{} = {}", quote_identifier(&k), quote_string(&v)))
                }
                "app_id" | "event" | "source" | "platform" | "user_id" => {}
                other => {
                    return Err(Refusal::bad_request(format!(
                        "unknown query parameter {other:?}; expected limit, offset, order_by, \
                         desc, app_id, event, source, platform or user_id"
                    )))
                }
            }
        }
        if !columns.contains(&order_by) {
            return Err(Refusal::bad_request(format!(
                "order_by must be a column of {}; {order_by:?} is not",
                sink.table()
            )));
        }
        if limit == 0 || limit > self.config.query_max_rows {
            return Err(Refusal::bad_request(format!(
                "limit must be 1 to admin.query_max_rows = {}",
                self.config.query_max_rows
            )));
        }
        let sql = format!(
            "SELECT * FROM {table}{filter} ORDER BY {order} {direction} LIMIT {offset}, {limit}",
            table = sink.table(),
            filter = if conditions.is_empty() {
                String::new()
            } else {
                format!(" WHERE {}", conditions.join(" AND "))
            },
            order = quote_identifier(&order_by),
            direction = if desc { "DESC" } else { "ASC" },
        );
        let mut answer = self.run_query(&sql, limit).await?;
        answer["limit"] = limit.into();
        answer["offset"] = offset.into();
        answer["order_by"] = order_by.into();
        answer["desc"] = desc.into();
        ok(answer)
    }

    async fn purge(&self, filter: Filter) -> Answer {
        let _one_at_a_time = self.daemon.writing.lock().await;
        let store = self.daemon.dead_letters.clone();
        let purged = blocking(move || {
            let ids: Vec<EntryId> = store.list(&filter)?.into_iter().map(|e| e.id).collect();
            store.remove(&ids)
        })
        .await??;
        tracing::info!(purged, "dead letters purged through the admin API");
        ok(json!({ "purged": purged }))
    }
}

/// How a request showed the admin token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Credential {
    /// `Authorization: Bearer <token>`.
    Bearer,
    /// The console's session cookie, which the browser attaches by itself.
    ConsoleCookie,
}

/// A `403` for a write authenticated only by the console's cookie and lacking the console's
/// header: another page on this host could have made the browser send it (the reasons are in
/// [`console`]'s docs).
fn refuse_cookie_write(
    credential: Credential,
    method: &Method,
    req: &Request<Incoming>,
) -> Option<Refusal> {
    let safe = *method == Method::GET || *method == Method::HEAD;
    (credential == Credential::ConsoleCookie && !safe && !console::sent_by_console(req.headers()))
        .then(|| {
            Refusal::new(
                StatusCode::FORBIDDEN,
                "console_header_missing",
                format!(
                    "a {method} authenticated by the console's cookie must carry the header \
                     `X-Sluice-Console: 1` (the console sends it; other pages cannot); scripts \
                     send `Authorization: Bearer <token>` instead"
                ),
            )
        })
}

/// `Err(405)` unless `method` is `allowed`.
fn only(method: &Method, allowed: Method) -> Result<(), Refusal> {
    if *method == allowed {
        Ok(())
    } else {
        Err(method_not_allowed(allowed.as_str()))
    }
}

fn method_not_allowed(allowed: &str) -> Refusal {
    Refusal::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("use {allowed} on this route"),
    )
}

/// Runs store work off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, Refusal> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        Refusal::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "panicked",
            format!("the request's work failed: {e}"),
        )
    })
}

/// An entry as the API shows it: [`Entry::to_json`] plus the raw request's bytes in base64
/// (`request_base64`), from which a client can rebuild the entry exactly.
pub fn view(entry: &Entry) -> Value {
    use base64::Engine as _;
    let mut v = entry.to_json();
    v["request_base64"] = base64::engine::general_purpose::STANDARD
        .encode(&entry.envelope)
        .into();
    v
}

/// A listing's query string.
#[derive(Default)]
struct ListQuery {
    filter: Filter,
    after: Option<EntryId>,
    limit: Option<usize>,
}

impl ListQuery {
    fn set(&mut self, key: &str, value: &str) -> Result<(), Refusal> {
        let number = |v: &str| {
            v.parse::<u64>().map_err(|_| {
                Refusal::bad_request(format!("{key} must be a non-negative integer, not {v:?}"))
            })
        };
        match key {
            "category" => self.filter.category = Some(category(value)?),
            "partition" => self.filter.partition = Some(number(value)? as u32),
            "received_from_ms" => self.filter.received_from_ms = Some(number(value)?),
            "received_before_ms" => self.filter.received_before_ms = Some(number(value)?),
            "written_before_ms" => self.filter.written_before_ms = Some(number(value)? as i64),
            "after" => {
                self.after = Some(value.parse().map_err(|e: String| Refusal::bad_request(e))?)
            }
            "limit" => self.limit = Some(number(value)? as usize),
            other => {
                return Err(Refusal::bad_request(format!(
                    "unknown query parameter {other:?}; expected category, partition, \
                     received_from_ms, received_before_ms, written_before_ms, after or limit"
                )))
            }
        }
        Ok(())
    }
}

fn category(name: &str) -> Result<FailureCategory, Refusal> {
    FailureCategory::parse(name).ok_or_else(|| {
        let known: Vec<_> = FailureCategory::ALL.iter().map(|c| c.as_str()).collect();
        Refusal::bad_request(format!(
            "unknown category {name:?}; expected one of: {}",
            known.join(", ")
        ))
    })
}

/// A replay's or purge's body (see "Selections" in [`crate::admin`]).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Selection {
    /// Everything: exclusive with the other fields.
    #[serde(default)]
    pub all: bool,
    /// These entries.
    #[serde(default)]
    pub ids: Vec<String>,
    /// Only this category.
    pub category: Option<String>,
    /// Only this partition.
    pub partition: Option<u32>,
    /// Only requests received at or after this time.
    pub received_from_ms: Option<u64>,
    /// Only requests received before this time.
    pub received_before_ms: Option<u64>,
    /// Only entries written before this time.
    pub written_before_ms: Option<i64>,
}

impl Selection {
    fn into_filter(self) -> Result<Filter, Refusal> {
        let ids = self
            .ids
            .iter()
            .map(|i| i.parse::<EntryId>().map_err(Refusal::bad_request))
            .collect::<Result<Vec<_>, _>>()?;
        let filter = Filter {
            category: self.category.as_deref().map(category).transpose()?,
            written_before_ms: self.written_before_ms,
            ids,
            partition: self.partition,
            received_from_ms: self.received_from_ms,
            received_before_ms: self.received_before_ms,
        };
        match (self.all, filter == Filter::default()) {
            (true, true) => Ok(filter),
            (true, false) => Err(Refusal::bad_request(
                "\"all\": true selects everything; leave out the other fields",
            )),
            (false, true) => Err(Refusal::bad_request(
                "nothing selected: give \"ids\", filter fields (category, partition, \
                 received_from_ms, received_before_ms, written_before_ms) or \"all\": true",
            )),
            (false, false) => Ok(filter),
        }
    }
}

/// The keywords a read query may start with. ClickHouse's `readonly = 1` is the guard; this
/// check only answers the obvious mistakes with a clearer message, before a round trip.
pub const READ_KEYWORDS: [&str; 7] = [
    "SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXISTS", "EXPLAIN",
];

/// Whether `sql`'s first keyword (after blanks and comments) is one of [`READ_KEYWORDS`].
fn is_read_only(sql: &str) -> bool {
    let mut rest = sql.trim_start();
    loop {
        if let Some(r) = rest.strip_prefix("--") {
            rest = r
                .split_once('\n')
                .map_or("", |(_, after)| after)
                .trim_start();
        } else if let Some(r) = rest.strip_prefix("/*") {
            rest = r
                .split_once("*/")
                .map_or("", |(_, after)| after)
                .trim_start();
        } else {
            break;
        }
    }
    let word: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect();
    READ_KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(&word))
}

/// A ClickHouse identifier in backquotes.
fn quote_identifier(name: &str) -> String {
    format!("`{}`", name.replace('\\', "\\\\").replace('`', "\\`"))
}

/// A ClickHouse string literal.
fn quote_string(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// A live stream's body: the chunks its relay task sends.
struct ChannelBody(mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|b| Ok(Frame::data(b))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_read_statements_pass_the_first_check() {
        for sql in [
            "SELECT 1",
            "  select count() from sluice.events",
            "-- recent\nWITH 1 AS x SELECT x",
            "/* a */ SHOW TABLES",
            "DESCRIBE sluice.events",
        ] {
            assert!(is_read_only(sql), "{sql}");
        }
        for sql in [
            "INSERT INTO t VALUES (1)",
            "ALTER TABLE t DELETE WHERE 1",
            "DROP TABLE t",
            "KILL QUERY WHERE 1",
            "SYSTEM SHUTDOWN",
            "",
            "-- only a comment",
            "SELECTED",
        ] {
            assert!(!is_read_only(sql), "{sql}");
        }
    }

    #[test]
    fn quoting_escapes_what_would_end_the_literal() {
        assert_eq!(quote_string("a'b\\c"), "'a\\'b\\\\c'");
        assert_eq!(quote_identifier("a`b"), "`a\\`b`");
    }
}
