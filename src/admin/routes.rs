//! The admin routes (see the table in [`crate::admin`]): authentication (the bearer token, or
//! the console's cookie), then one handler per route, each answering JSON; the console's own
//! paths are answered by [`console`].

use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::{json, Value};

use super::console::{self, CookieCheck};
use super::{AdminConfig, AdminToken, Daemon, DEFAULT_PAGE_ENTRIES};
use crate::deadletter::{DeadLetterError, Entry, EntryId, Filter};
use crate::event::FailureCategory;
use crate::publish::replay::{replay_dead_letters, ReplayError};

/// The API's state: the daemon, the token and the limits.
pub(super) struct Api {
    pub daemon: Arc<Daemon>,
    pub token: AdminToken,
    pub config: AdminConfig,
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

type Answer = Result<Response<Full<Bytes>>, Refusal>;

fn json_response(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
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
    pub(super) async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = req.uri().path().to_string();
        let method = req.method().clone();
        let answer = if path == "/healthz" {
            if method == Method::GET || method == Method::HEAD {
                let mut resp = Response::new(Full::new(Bytes::from_static(b"ok\n")));
                resp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                );
                Ok(resp)
            } else {
                Err(method_not_allowed("GET"))
            }
        } else if console::is_console_path(&path) {
            Ok(console::answer(&req, &self.token))
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

    async fn selection(&self, req: Request<Incoming>) -> Result<Filter, Refusal> {
        let max = self.config.max_body_bytes.bytes() as usize;
        let body = match Limited::new(req.into_body(), max).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e)
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some() =>
            {
                return Err(Refusal::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    format!("the selection is larger than admin.max_body_bytes = {max} bytes"),
                ))
            }
            Err(e) => return Err(Refusal::bad_request(format!("cannot read the body: {e}"))),
        };
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
