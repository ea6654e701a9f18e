//! The answers each protocol's clients expect (CORS headers come from [`super::collector`]).
//!
//! Bodies and header values are static, so building an answer allocates only the response
//! itself and its header map.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
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
    /// `/r/tp2` redirects: 302, no body; the handler adds the validated `Location`.
    Found,
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
            Answer::Found => with_body(StatusCode::FOUND, Bytes::new()),
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

/// A `text/xml` response (`/crossdomain.xml`).
pub fn xml(body: Bytes) -> Response<Body> {
    let mut resp = with_body(StatusCode::OK, body);
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/xml"));
    resp
}

/// A file of `collector.static_dir`, cacheable for a few minutes.
pub fn static_file(content_type: &'static str, body: Bytes) -> Response<Body> {
    let mut resp = with_body(StatusCode::OK, body);
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    resp
}

/// The answer to a CORS preflight (`OPTIONS` on any path) before its CORS headers: 200, empty,
/// nothing stored.
pub fn preflight() -> Response<Body> {
    with_body(StatusCode::OK, Bytes::new())
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
}
