//! The answers each protocol's clients expect, and the CORS headers browsers need.
//!
//! Bodies and header values are static, so building an answer allocates only the response
//! itself and its header map.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{HeaderMap, Response, StatusCode};
use http_body_util::Full;

/// The response body type of every collector answer.
pub type Body = Full<Bytes>;

/// The transparent 1×1 GIF89a the Snowplow collector answers pixel requests with (43 bytes;
/// base64 `R0lGODlhAQABAPAAAP///wAAACH5BAUAAAAALAAAAAABAAEAAAICRAEAOw==`).
pub const PIXEL: [u8; 43] = [
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0xf0, 0x00, 0x00, 0xff, 0xff, 0xff,
    0x00, 0x00, 0x00, 0x21, 0xf9, 0x04, 0x05, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
];

/// `Cache-Control` of pixel answers, so browsers fetch the pixel (and send the event) every time.
pub const NO_CACHE: &str = "no-cache, no-store, must-revalidate";
/// Headers a preflight allows (the Snowplow collector's fixed list).
pub const PREFLIGHT_ALLOW_HEADERS: &str = "Content-Type, SP-Anonymous";
/// How long browsers may cache a preflight answer, in seconds.
pub const PREFLIGHT_MAX_AGE: &str = "3600";

const TEXT_PLAIN: &str = "text/plain; charset=utf-8";

/// How a tracking route answers once its request is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Snowplow GET: 200, `image/gif`, the 43-byte pixel, no-cache.
    Pixel,
    /// Snowplow POST: 200, `text/plain`, `ok` (non-empty on purpose: an empty body trips an old
    /// JS tracker bug).
    TextOk,
    /// Segment: 200, `application/json`, `{"success":true}`.
    SegmentSuccess,
    /// pycolytics: 204, no body.
    NoContent,
    /// Generic collect: 202, no body.
    Accepted,
}

impl Answer {
    /// The response for an accepted request.
    pub fn response(self) -> Response<Body> {
        match self {
            Answer::Pixel => {
                let mut resp = with_body(StatusCode::OK, Bytes::from_static(&PIXEL));
                let h = resp.headers_mut();
                h.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/gif"));
                h.insert(header::CACHE_CONTROL, HeaderValue::from_static(NO_CACHE));
                resp
            }
            Answer::TextOk => text(StatusCode::OK, "ok"),
            Answer::SegmentSuccess => {
                let mut resp = with_body(StatusCode::OK, Bytes::from_static(b"{\"success\":true}"));
                resp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                resp
            }
            Answer::NoContent => with_body(StatusCode::NO_CONTENT, Bytes::new()),
            Answer::Accepted => with_body(StatusCode::ACCEPTED, Bytes::new()),
        }
    }
}

/// A response with a status and a body, no headers yet.
pub fn with_body(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    resp
}

/// A `text/plain` response with a static body.
pub fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut resp = with_body(status, Bytes::from_static(body.as_bytes()));
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(TEXT_PLAIN));
    resp
}

/// A `text/plain` response with a message built at run time (errors).
pub fn message(status: StatusCode, body: String) -> Response<Body> {
    let mut resp = with_body(status, Bytes::from(body));
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(TEXT_PLAIN));
    resp
}

/// Adds the CORS headers of tracking answers: the request's `Origin` echoed (`*` when there is
/// none, or it is `null`), credentials allowed, and `Vary: Origin` so caches keep answers for
/// different origins apart.
pub fn add_cors(headers: &mut HeaderMap, origin: Option<&HeaderValue>) {
    let allow = match origin {
        Some(o) if !o.is_empty() && o.as_bytes() != b"null" => o.clone(),
        _ => HeaderValue::from_static("*"),
    };
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow);
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
        HeaderValue::from_static("true"),
    );
    headers.insert(header::VARY, HeaderValue::from_static("Origin"));
}

/// The answer to a CORS preflight (`OPTIONS` on any path): 200, empty, nothing stored.
pub fn preflight(origin: Option<&HeaderValue>) -> Response<Body> {
    let mut resp = with_body(StatusCode::OK, Bytes::new());
    let h = resp.headers_mut();
    add_cors(h, origin);
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static(PREFLIGHT_ALLOW_HEADERS),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static(PREFLIGHT_MAX_AGE),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pixel_is_the_reference_gif() {
        // The reference collector's base64 constant, decoded by hand into PIXEL above.
        assert_eq!(PIXEL.len(), 43);
        assert_eq!(&PIXEL[..6], b"GIF89a");
        assert_eq!(PIXEL[42], 0x3b);
    }

    #[test]
    fn cors_echoes_the_origin_and_falls_back_to_a_wildcard() {
        let mut h = HeaderMap::new();
        add_cors(
            &mut h,
            Some(&HeaderValue::from_static("https://shop.example")),
        );
        assert_eq!(
            h[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://shop.example"
        );
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
        let mut h = HeaderMap::new();
        add_cors(&mut h, Some(&HeaderValue::from_static("null")));
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        let mut h = HeaderMap::new();
        add_cors(&mut h, None);
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    }
}
