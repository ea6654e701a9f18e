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
use super::response::{message, Body};

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
    /// The log cannot take writes (poisoned by a disk failure, shutting down, or an I/O error).
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
            W::Poisoned { .. } => HttpError::LogUnavailable {
                code: err.code(),
                retry_after,
            },
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
            HttpError::LogUnavailable { .. } => "log_unavailable",
            HttpError::RecordTooLarge { .. } => "record_too_large",
            HttpError::RedirectsDisabled => "redirects_disabled",
            HttpError::RedirectMissing => "redirect_missing",
            HttpError::RedirectInvalid { .. } => "redirect_invalid",
            HttpError::RedirectDisallowed { .. } => "redirect_disallowed",
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
            HttpError::BodyRead(_) => StatusCode::BAD_REQUEST,
            HttpError::LogFull { .. }
            | HttpError::LogBusy { .. }
            | HttpError::LogUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The answer: the status, a plain-text message saying what to do, and the headers the
    /// status calls for (`Allow`, `Retry-After`, `Connection: close` when the rest of the
    /// request was not read).
    pub fn into_response(self) -> Response<Body> {
        let status = self.status();
        let mut text = self.to_string();
        text.push('\n');
        let mut resp = message(status, text);
        let headers = resp.headers_mut();
        match self {
            HttpError::MethodNotAllowed { allow, .. } => {
                headers.insert(header::ALLOW, HeaderValue::from_static(allow));
            }
            HttpError::LogFull { retry_after }
            | HttpError::LogBusy { retry_after }
            | HttpError::LogUnavailable { retry_after, .. } => {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(retry_after.as_secs()),
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
        assert_eq!(poisoned.into_response().headers()[header::RETRY_AFTER], "1");
        let big = HttpError::from_wal(
            sluice_wal::Error::RecordTooLarge { size: 9, max: 8 },
            Duration::from_secs(1),
        );
        assert_eq!(big.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }
}
