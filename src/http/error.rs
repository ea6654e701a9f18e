//! Everything a collector request can fail with, and the answer each failure gets.
//!
//! A client's mistake gets a 4xx whose body says what to fix. A log that cannot take the
//! request gets a 503 (with `Retry-After` when waiting helps): trackers retry 5xx answers and
//! keep their events, which is what the product promises. Internal failures are logged once,
//! here or where they happen (a poisoned log is logged by its observer when it is poisoned),
//! never once per layer.

use std::time::Duration;

use http::header::{self, HeaderValue};
use http::{Method, Response, StatusCode};

use super::collector::RedirectRefusal;
use super::response::{message, with_body, Body};
use crate::ratelimit::retry_after_secs;
use crate::wire::route::Source;

/// Why a request was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// No route has this path.
    #[error("no route for {path}: send Snowplow events to /com.snowplowanalytics.snowplow/tp2 or /i, Segment to /v1/{{track,identify,page,screen,group,alias,batch,import}}, pycolytics to /v1.0/event(s), anything else to /collect/{{stream}}")]
    NotFound {
        /// The request's path.
        path: String,
    },
    /// The route exists but not for this method.
    #[error("{method} is not allowed on {route}; use {allow}")]
    MethodNotAllowed {
        /// The request's method.
        method: Method,
        /// The matched route template.
        route: &'static str,
        /// The methods the route accepts (the `Allow` header).
        allow: &'static str,
    },
    /// The body is larger than `server.max_body_bytes`.
    #[error("the request body exceeds the limit of {limit} bytes (server.max_body_bytes); send smaller batches")]
    BodyTooLarge {
        /// The configured limit.
        limit: u64,
    },
    /// The body did not arrive within `server.request_timeout`.
    #[error("the request body did not arrive within {}s (server.request_timeout); check the client's connection", .timeout.as_secs_f64())]
    BodyTimeout {
        /// The configured timeout.
        timeout: Duration,
    },
    /// The body could not be read (the client went away or sent bad framing).
    #[error("the request body could not be read: {0}")]
    BodyRead(String),
    /// The log's byte budget is used up by unpublished records.
    #[error("the event log is full (events are arriving faster than they are published); retry after {}s", .retry_after.as_secs())]
    LogFull {
        /// The `Retry-After` to send.
        retry_after: Duration,
    },
    /// The log's writer queue is full.
    #[error("the collector is overloaded; retry after {}s", .retry_after.as_secs())]
    LogBusy {
        /// The `Retry-After` to send.
        retry_after: Duration,
    },
    /// The log refuses every write until restarted: a write or sync of this request's batch, or of
    /// an earlier one, failed. The cause (which names paths) is logged, not sent.
    #[error("this request was not stored: the event log stopped accepting writes after a disk write or sync failed (it is poisoned); retry later or against another instance. Operators: check the disk and the collector's log, then restart sluice")]
    LogPoisoned {
        /// The `Retry-After` to send.
        retry_after: Duration,
    },
    /// The log cannot take writes (shutting down, or an unexpected I/O error).
    #[error("the event log cannot accept writes ({code}); the operator must check the collector's disk and logs")]
    LogUnavailable {
        /// The log error's code.
        code: &'static str,
        /// The `Retry-After` to send (another instance, or this one after a restart, may take it).
        retry_after: Duration,
    },
    /// `/r/{path}` while `collector.redirects.enabled` is false. Nothing is stored.
    #[error("redirects disabled")]
    RedirectsDisabled,
    /// A redirect request without a `u` parameter. Nothing is stored.
    #[error("the redirect has no target: add u=<absolute http(s) URL> to the query string")]
    RedirectMissing,
    /// A redirect target that is not an absolute `http`/`https` URL. Nothing is stored.
    #[error("the redirect target {target:?} is not an absolute http(s) URL with a host")]
    RedirectInvalid {
        /// The decoded `u` parameter.
        target: String,
    },
    /// A redirect target outside `collector.redirects.allowed_domains`. Nothing is stored.
    #[error("redirects to {host} are not allowed (collector.redirects.allowed_domains)")]
    RedirectDisallowed {
        /// The target's host.
        host: String,
    },
    /// A key is required on this route and the request carried none, or a wrong one.
    #[error("{}", unauthorized_message(*.protocol))]
    Unauthorized {
        /// The route's protocol (each has its own place for the key).
        protocol: Source,
    },
    /// The client's (IP's or key's) token bucket is empty. Nothing is stored.
    #[error("too many requests from this {scope} (limits.{setting}); retry after {}s", retry_after_secs(*.retry_after))]
    RateLimited {
        /// How long until a token is back.
        retry_after: Duration,
        /// `client IP` or `key`.
        scope: &'static str,
        /// `per_ip` or `per_key`.
        setting: &'static str,
    },
    /// The body is not JSON.
    #[error("the body is not valid JSON: {0}")]
    InvalidJson(String),
    /// The body is JSON of a shape the route does not take.
    #[error("{0}")]
    InvalidBody(String),
    /// A pycolytics body of the wrong shape (pycolytics answers these with 422).
    #[error("{0}")]
    Unprocessable(String),
    /// A Segment single call over `segment.max_event_bytes`.
    #[error("the message is {} over the limit of {limit} bytes (segment.max_event_bytes); send smaller messages", size_text(*.size))]
    EventTooLarge {
        /// The (decompressed) body's size, when known.
        size: Option<u64>,
        /// The configured limit.
        limit: u64,
    },
    /// A Segment batch over `segment.max_batch_bytes`.
    #[error("the batch is {} over the limit of {limit} bytes (segment.max_batch_bytes); send smaller batches", size_text(*.size))]
    BatchTooLarge {
        /// The (decompressed) body's size, when known.
        size: Option<u64>,
        /// The configured limit.
        limit: u64,
    },
    /// A Segment batch with more than `segment.max_batch_items` messages.
    #[error("the batch has {count} messages, more than {limit} (segment.max_batch_items); send smaller batches")]
    TooManyEvents {
        /// Messages in the batch.
        count: usize,
        /// The configured limit.
        limit: usize,
    },
    /// A gzip body that decompresses to more than `server.max_decompressed_bytes`.
    #[error("the gzip body decompresses to more than {limit} bytes (server.max_decompressed_bytes); send smaller batches")]
    DecompressedTooLarge {
        /// The configured cap.
        limit: u64,
    },
    /// `Content-Encoding: gzip` but the body is not gzip.
    #[error("the body is not valid gzip (Content-Encoding: gzip): {0}")]
    InvalidGzip(String),
    /// A `Content-Encoding` other than `gzip` or `identity`.
    #[error("Content-Encoding {encoding:?} is not supported; send gzip or an uncompressed body")]
    UnsupportedEncoding {
        /// The offending coding.
        encoding: String,
    },
    /// A `Content-Type` that is not JSON or text.
    #[error("Content-Type {content_type:?} is not supported; send JSON as application/json or text/plain")]
    UnsupportedMediaType {
        /// The request's content type (truncated).
        content_type: String,
    },
    /// The encoded envelope is larger than one log record may be.
    #[error(
        "the request is too large to store ({size} bytes, at most {max}); send smaller batches"
    )]
    RecordTooLarge {
        /// The envelope's size.
        size: u64,
        /// The log's record limit.
        max: u64,
    },
}

fn unauthorized_message(source: Source) -> &'static str {
    match source {
        // pycolytics' own answer, word for word (its clients may match on it).
        Source::Pycolytics => "Invalid or missing API Key",
        Source::Segment => {
            "missing or wrong write key: send a configured key (segment.write_keys) as the HTTP \
             Basic username, as `writeKey` in the body, or as ?writeKey="
        }
        Source::Collect => {
            "missing or wrong API key: send a configured key (collect.api_keys) in the auth.header \
             header (default X-API-Key)"
        }
        Source::Snowplow => {
            "missing or wrong API key: send a configured key (auth.snowplow_keys) in the \
             auth.header header (default X-API-Key)"
        }
    }
}

fn size_text(size: Option<u64>) -> String {
    match size {
        Some(n) => format!("{n} bytes,"),
        None => "(decompressed)".into(),
    }
}

impl From<RedirectRefusal> for HttpError {
    fn from(r: RedirectRefusal) -> HttpError {
        match r {
            RedirectRefusal::Missing => HttpError::RedirectMissing,
            RedirectRefusal::Invalid(target) => HttpError::RedirectInvalid { target },
            RedirectRefusal::Disallowed(host) => HttpError::RedirectDisallowed { host },
        }
    }
}

impl HttpError {
    /// Classifies a log error, logging the unexpected kinds once.
    pub fn from_wal(err: sluice_wal::Error, retry_after: Duration) -> HttpError {
        use sluice_wal::Error as W;
        match err {
            W::Full { .. } => HttpError::LogFull { retry_after },
            W::Busy { .. } => HttpError::LogBusy { retry_after },
            W::RecordTooLarge { size, max } => HttpError::RecordTooLarge { size, max },
            // Poisoning is logged by the partition's observer when it happens.
            W::Poisoned { .. } => HttpError::LogPoisoned { retry_after },
            W::Closed => {
                tracing::debug!("append refused: the log is closing");
                HttpError::LogUnavailable {
                    code: err.code(),
                    retry_after,
                }
            }
            other => {
                tracing::error!(error = %other, code = other.code(), "append failed");
                HttpError::LogUnavailable {
                    code: other.code(),
                    retry_after,
                }
            }
        }
    }

    /// A stable, short identifier for metric labels and logs.
    pub fn code(&self) -> &'static str {
        match self {
            HttpError::NotFound { .. } => "not_found",
            HttpError::MethodNotAllowed { .. } => "method_not_allowed",
            HttpError::BodyTooLarge { .. } => "body_too_large",
            HttpError::BodyTimeout { .. } => "body_timeout",
            HttpError::BodyRead(_) => "body_read",
            HttpError::LogFull { .. } => "log_full",
            HttpError::LogBusy { .. } => "log_busy",
            HttpError::LogPoisoned { .. } => "log_poisoned",
            HttpError::LogUnavailable { .. } => "log_unavailable",
            HttpError::RecordTooLarge { .. } => "record_too_large",
            HttpError::RedirectsDisabled => "redirects_disabled",
            HttpError::RedirectMissing => "redirect_missing",
            HttpError::RedirectInvalid { .. } => "redirect_invalid",
            HttpError::RedirectDisallowed { .. } => "redirect_disallowed",
            HttpError::Unauthorized { .. } => "unauthorized",
            HttpError::RateLimited { .. } => "rate_limited",
            HttpError::InvalidJson(_) => "invalid_request",
            HttpError::InvalidBody(_) => "invalid_body",
            HttpError::Unprocessable(_) => "invalid_shape",
            HttpError::EventTooLarge { .. } => "event_too_large",
            HttpError::BatchTooLarge { .. } => "batch_too_large",
            HttpError::TooManyEvents { .. } => "too_many_events",
            HttpError::DecompressedTooLarge { .. } => "decompressed_too_large",
            HttpError::InvalidGzip(_) => "invalid_gzip",
            HttpError::UnsupportedEncoding { .. } => "unsupported_encoding",
            HttpError::UnsupportedMediaType { .. } => "unsupported_media_type",
        }
    }

    /// The `reason` label of `sluice_http_rejections_total` for a refused request: `auth`,
    /// `rate`, `size` or `invalid`; `None` for errors that are not the client's request being
    /// refused (routing, the log's state, timeouts).
    pub fn rejection(&self) -> Option<&'static str> {
        match self {
            HttpError::Unauthorized { .. } => Some("auth"),
            HttpError::RateLimited { .. } => Some("rate"),
            HttpError::BodyTooLarge { .. }
            | HttpError::RecordTooLarge { .. }
            | HttpError::EventTooLarge { .. }
            | HttpError::BatchTooLarge { .. }
            | HttpError::TooManyEvents { .. }
            | HttpError::DecompressedTooLarge { .. } => Some("size"),
            HttpError::InvalidJson(_)
            | HttpError::InvalidBody(_)
            | HttpError::Unprocessable(_)
            | HttpError::InvalidGzip(_)
            | HttpError::UnsupportedEncoding { .. }
            | HttpError::UnsupportedMediaType { .. }
            | HttpError::BodyRead(_) => Some("invalid"),
            _ => None,
        }
    }

    /// The HTTP status this error answers with. Trackers never retry 400, 401, 403, 410 and
    /// 422 and retry everything else, so only requests that can never succeed get 400 (a bad
    /// redirect, bad framing), and every transient refusal is a 503 with `Retry-After`.
    pub fn status(&self) -> StatusCode {
        match self {
            HttpError::NotFound { .. } | HttpError::RedirectsDisabled => StatusCode::NOT_FOUND,
            HttpError::RedirectMissing
            | HttpError::RedirectInvalid { .. }
            | HttpError::RedirectDisallowed { .. } => StatusCode::BAD_REQUEST,
            HttpError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            HttpError::BodyTooLarge { .. } | HttpError::RecordTooLarge { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            HttpError::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            HttpError::BodyRead(_)
            | HttpError::InvalidJson(_)
            | HttpError::InvalidBody(_)
            | HttpError::InvalidGzip(_)
            | HttpError::TooManyEvents { .. } => StatusCode::BAD_REQUEST,
            HttpError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            HttpError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            HttpError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            HttpError::EventTooLarge { .. }
            | HttpError::BatchTooLarge { .. }
            | HttpError::DecompressedTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            HttpError::UnsupportedEncoding { .. } | HttpError::UnsupportedMediaType { .. } => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            HttpError::LogFull { .. }
            | HttpError::LogBusy { .. }
            | HttpError::LogPoisoned { .. }
            | HttpError::LogUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The answer: the status, a plain-text message saying what to do, and the headers the
    /// status calls for (`Allow`, `Retry-After`, `Connection: close` when the rest of the
    /// request was not read).
    pub fn into_response(self) -> Response<Body> {
        self.into_response_for(Source::Snowplow)
    }

    /// [`HttpError::into_response`] in the error format of `source`'s clients: Segment's
    /// `{"code":"…","message":"…"}` (analytics-python 2.3.4 reads `code` to decide whether to
    /// retry), also for the generic JSON routes; pycolytics' (FastAPI's) `{"detail":"…"}`;
    /// plain text for Snowplow trackers.
    pub fn into_response_for(self, source: Source) -> Response<Body> {
        let status = self.status();
        let mut resp = match source {
            Source::Segment | Source::Collect => json(
                status,
                &serde_json::json!({"code": self.code(), "message": self.to_string()}),
            ),
            Source::Pycolytics => json(status, &serde_json::json!({"detail": self.to_string()})),
            Source::Snowplow => {
                let mut text = self.to_string();
                text.push('\n');
                message(status, text)
            }
        };
        let headers = resp.headers_mut();
        match self {
            HttpError::MethodNotAllowed { allow, .. } => {
                headers.insert(header::ALLOW, HeaderValue::from_static(allow));
            }
            HttpError::LogFull { retry_after }
            | HttpError::LogBusy { retry_after }
            | HttpError::LogPoisoned { retry_after }
            | HttpError::LogUnavailable { retry_after, .. } => {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(retry_after.as_secs()),
                );
            }
            HttpError::RateLimited { retry_after, .. } => {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(retry_after_secs(retry_after)),
                );
            }
            // The body was not (fully) read: the connection cannot carry another request.
            HttpError::BodyTooLarge { .. }
            | HttpError::BodyTimeout { .. }
            | HttpError::BodyRead(_) => {
                headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        resp
    }
}

/// A JSON error body.
fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut resp = with_body(status, bytes::Bytes::from(value.to_string()));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_log_answers_503_with_retry_after() {
        let err = HttpError::from_wal(
            sluice_wal::Error::Full { capacity_bytes: 1 },
            Duration::from_secs(7),
        );
        let resp = err.into_response();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "7");
    }

    #[test]
    fn a_poisoned_log_answers_503_and_a_too_large_record_413() {
        let poisoned = HttpError::from_wal(
            sluice_wal::Error::Poisoned { cause: "x".into() },
            Duration::from_secs(1),
        );
        assert_eq!(poisoned.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(poisoned.code(), "log_poisoned");
        assert_eq!(poisoned.into_response().headers()[header::RETRY_AFTER], "1");
        let big = HttpError::from_wal(
            sluice_wal::Error::RecordTooLarge { size: 9, max: 8 },
            Duration::from_secs(1),
        );
        assert_eq!(big.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[test]
    fn segment_errors_are_json_with_code_and_message() {
        let resp = HttpError::InvalidJson("EOF".into()).into_response_for(Source::Segment);
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/json");
        let body = resp.into_body();
        let bytes = futures_body(body);
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["code"], "invalid_request");
        assert!(v["message"].as_str().unwrap().contains("EOF"));
    }

    #[test]
    fn pycolytics_401_is_its_own_detail_and_429_carries_retry_after() {
        let resp = HttpError::Unauthorized {
            protocol: Source::Pycolytics,
        }
        .into_response_for(Source::Pycolytics);
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            futures_body(resp.into_body()),
            br#"{"detail":"Invalid or missing API Key"}"#
        );
        let limited = HttpError::RateLimited {
            retry_after: Duration::from_millis(1200),
            scope: "client IP",
            setting: "per_ip",
        };
        assert_eq!(limited.rejection(), Some("rate"));
        let resp = limited.into_response();
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "2");
    }

    fn futures_body(body: Body) -> Vec<u8> {
        use http_body_util::BodyExt;
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(body.collect()).unwrap().to_bytes().to_vec()
    }
}
