//! The web console: plain HTML, CSS and JavaScript pages compiled into the binary and served by
//! the admin listener, talking only to the admin API. Nothing is fetched from elsewhere (no CDN,
//! no fonts), so it works offline and is the same version as the daemon serving it.
//!
//! # Routes
//!
//! | Route | What |
//! |---|---|
//! | `GET /` | `303` to `/console/` (the query kept, so `/?token=T` signs in too); serves nothing itself |
//! | `GET /console` | `303` to `/console/` |
//! | `GET /console/?token=T` | signs in: `303` to the same path without the query, setting the session cookie |
//! | `GET /console/`, `/console/{asset}` | an asset (`index.html`, `app.js`, `style.css`, `favicon.svg`) |
//!
//! # Signing in
//!
//! Every console page needs the admin token, like the API. A browser cannot add
//! `Authorization: Bearer` to a page load or an `EventSource`, so the console does what Jupyter
//! does: the token arrives once in the URL (`/console/?token=T`, the link `scripts/serve.sh`
//! prints, or the sign-in form), and the answer is a `303` to the same path without the query
//! carrying `Set-Cookie: sluice_admin=T; HttpOnly; SameSite=Strict; Path=/`. The token leaves
//! the address bar and the history at once; `HttpOnly` keeps it from the page's scripts.
//! From then on the API accepts that cookie as well as the bearer header. A request with
//! neither (or a cookie from before the token changed) gets a `401` page saying where the
//! token is, with a form that submits `?token=`.
//!
//! # Why cookie-authenticated writes need `X-Sluice-Console: 1`
//!
//! A cookie is sent by the browser whoever asked for the request, which is what cross-site
//! request forgery exploits. `SameSite=Strict` stops other *sites* from making the browser send
//! it, but a site is the registrable domain, not the origin: any other page served from
//! `127.0.0.1` or `localhost` on another port (a dev server, a notebook, the collector's own
//! port) is same-site and would still get the cookie attached to a form `POST` to the admin
//! API. So a request that changes something (any method but `GET`/`HEAD`) and is authenticated
//! by the cookie must also carry the header `X-Sluice-Console: 1`, which `app.js` sets. A form
//! cannot set headers, and a script on another origin can only send a custom header after a
//! CORS preflight, which the admin listener never grants, so only the console's own pages can
//! send it. Without it the answer is `403` and nothing changes. Requests with
//! `Authorization: Bearer` need no such header: a browser never adds that one on its own.
//!
//! Console pages are also sent with a `Content-Security-Policy` allowing only their own scripts
//! and styles (and `fetch` to the collector, for the test event), `frame-ancestors 'none'` (no
//! other page can frame the purge button) and `Referrer-Policy: no-referrer`.

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};

use super::AdminToken;

/// The session cookie's name.
pub const COOKIE: &str = "sluice_admin";
/// The header cookie-authenticated writes must carry (see the module docs).
pub const CONSOLE_HEADER: &str = "x-sluice-console";
/// Where the console lives on the admin listener.
pub const PREFIX: &str = "/console/";

/// One file of the console.
struct Asset {
    /// Its name under [`PREFIX`].
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

/// Every asset, compiled in.
const ASSETS: &[Asset] = &[
    Asset {
        name: "index.html",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("index.html"),
    },
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("app.js"),
    },
    Asset {
        name: "style.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("style.css"),
    },
    Asset {
        name: "favicon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("favicon.svg"),
    },
];

/// The pages' policy: their own scripts and styles only; `fetch` to any http(s) origin, since
/// the setup tab's test event goes to the collector's port.
const ASSET_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self' http: https:; frame-ancestors 'none'; \
     base-uri 'none'; form-action 'self'";
/// The sign-in page's policy: no script at all, its own inline style, a form to itself.
const SIGN_IN_POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'; \
     frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// Whether `path` is the console's (answered by [`answer`], not by the API).
pub fn is_console_path(path: &str) -> bool {
    path == "/" || path == "/console" || path.starts_with(PREFIX)
}

/// What a request's `sluice_admin` cookie says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CookieCheck {
    /// No such cookie.
    Absent,
    /// A cookie holding the token.
    Valid,
    /// A cookie holding something else (typically a token from before it was changed).
    Stale,
}

/// Checks the request's `sluice_admin` cookie against the token.
pub fn check_cookie(headers: &HeaderMap, token: &AdminToken) -> CookieCheck {
    let mut found = CookieCheck::Absent;
    for value in headers.get_all(header::COOKIE) {
        let Ok(text) = value.to_str() else { continue };
        for pair in text.split(';') {
            let Some((name, value)) = pair.trim().split_once('=') else {
                continue;
            };
            if name.trim() != COOKIE {
                continue;
            }
            if token.accepts(&decode_cookie_value(value.trim())) {
                return CookieCheck::Valid;
            }
            found = CookieCheck::Stale;
        }
    }
    found
}

/// Whether the request carries `X-Sluice-Console: 1`, which only the console's own pages send.
pub fn sent_by_console(headers: &HeaderMap) -> bool {
    headers
        .get(CONSOLE_HEADER)
        .is_some_and(|v| v.as_bytes() == b"1")
}

/// The console's answer to a request for one of its paths (see [`is_console_path`]).
pub fn answer<B>(req: &Request<B>, token: &AdminToken) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    let query = req.uri().query();
    if path == "/" || path == "/console" {
        let target = match query {
            Some(q) => format!("{PREFIX}?{q}"),
            None => PREFIX.to_string(),
        };
        return see_other(&target);
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut resp = text(
            StatusCode::METHOD_NOT_ALLOWED,
            "use GET on the console's pages\n",
        );
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return resp;
    }
    if let Some(presented) = query.and_then(token_parameter) {
        if !token.accepts(&presented) {
            return sign_in_page(
                token,
                Some("That token does not match: check it and try again."),
            );
        }
        let mut resp = see_other(path);
        resp.headers_mut()
            .insert(header::SET_COOKIE, session_cookie(&presented));
        return resp;
    }
    match (
        bearer_accepted(req.headers(), token),
        check_cookie(req.headers(), token),
    ) {
        (true, _) | (_, CookieCheck::Valid) => {}
        (false, CookieCheck::Absent) => return sign_in_page(token, None),
        (false, CookieCheck::Stale) => {
            let mut resp = sign_in_page(
                token,
                Some("The token this browser signed in with is no longer the admin token."),
            );
            resp.headers_mut().insert(
                header::SET_COOKIE,
                HeaderValue::from_str(&format!(
                    "{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"
                ))
                .expect("a fixed cookie is a valid header value"),
            );
            return resp;
        }
    }
    let name = path.strip_prefix(PREFIX).unwrap_or_default();
    let name = if name.is_empty() { "index.html" } else { name };
    match ASSETS.iter().find(|a| a.name == name) {
        Some(asset) => {
            let mut resp = Response::new(Full::new(Bytes::from_static(asset.body)));
            let h = resp.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            );
            // The assets change with the binary; they are small, so they are never cached.
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            secure(h, ASSET_POLICY);
            resp
        }
        None => text(
            StatusCode::NOT_FOUND,
            &format!("the console has no file {name:?}; open {PREFIX}\n"),
        ),
    }
}

/// The `token` query parameter, if any.
fn token_parameter(query: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.trim().to_string())
}

/// Whether `Authorization: Bearer <token>` is present and right (scripts and tests fetch the
/// assets that way).
fn bearer_accepted(headers: &HeaderMap, token: &AdminToken) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| token.accepts(t.trim()))
}

/// The session cookie holding `token`: a session cookie (gone when the browser closes), sent to
/// every path of the admin listener (the API is outside `/console/`), never readable by scripts,
/// never sent with another site's requests.
fn session_cookie(token: &str) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{COOKIE}={}; HttpOnly; SameSite=Strict; Path=/",
        encode_cookie_value(token)
    ))
    .expect("an encoded cookie value is a valid header value")
}

/// Bytes [`encode_cookie_value`] escapes: everything but RFC 6265 `cookie-octet`s
/// (`%x21 / %x23-2B / %x2D-3A / %x3C-5B / %x5D-7E`), and `%` itself so decoding is exact.
/// Non-ASCII bytes are always escaped.
const NOT_COOKIE_OCTET: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'%')
    .add(b',')
    .add(b';')
    .add(b'\\');

/// `token` as a cookie value: RFC 6265 `cookie-octet`s as they are, anything else (and `%`)
/// percent-encoded, so a configured token with spaces, `;` or non-ASCII survives the round
/// trip. A generated token (hex) is unchanged.
fn encode_cookie_value(token: &str) -> String {
    utf8_percent_encode(token, NOT_COOKIE_OCTET).to_string()
}

/// The inverse of [`encode_cookie_value`] (a cookie is not form-encoded: `+` is itself); a
/// malformed escape is kept as it is.
fn decode_cookie_value(value: &str) -> String {
    crate::wire::text::percent_decode_lossy(value)
}

fn see_other(location: &str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // The sign-in URL holds the token: never pass it on as a referrer.
    resp.headers_mut().insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn secure(h: &mut HeaderMap, policy: &'static str) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(policy),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}

/// The `401` page: where the token is, and a form that signs in with it.
fn sign_in_page(token: &AdminToken, problem: Option<&str>) -> Response<Full<Bytes>> {
    let origin = escape_html(&token.origin);
    let where_ = if token.origin == "admin.token" {
        "It is the <code>admin.token</code> setting of this daemon's configuration (or \
         <code>SLUICE_ADMIN__TOKEN</code>)."
            .to_string()
    } else {
        format!(
            "This daemon generated it at first start, in <code>{origin}</code> on its machine \
             (<code>cat {origin}</code>); <code>scripts/serve.sh</code> prints a link with it. \
             Setting <code>admin.token</code> replaces it."
        )
    };
    let problem = problem
        .map(|p| format!("<p class=\"problem\">{}</p>", escape_html(p)))
        .unwrap_or_default();
    let body = format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>sluice console: sign in</title>
<style>
body {{ font: 15px/1.5 system-ui, sans-serif; background: #f4f5f7; color: #1d2330; margin: 0; }}
main {{ max-width: 34rem; margin: 12vh auto; background: #fff; padding: 2rem 2.2rem;
  border-radius: 10px; box-shadow: 0 2px 12px rgba(0,0,0,.08); }}
h1 {{ font-size: 1.3rem; margin: 0 0 1rem; }}
code {{ background: #eef0f4; padding: .05rem .3rem; border-radius: 4px; word-break: break-all; }}
.problem {{ background: #fdecec; color: #9b1c1c; padding: .6rem .8rem; border-radius: 6px; }}
form {{ display: flex; gap: .5rem; margin-top: 1.2rem; }}
input {{ flex: 1; font: inherit; padding: .45rem .6rem; border: 1px solid #c5cad3; border-radius: 6px; }}
button {{ font: inherit; padding: .45rem 1rem; border: 0; border-radius: 6px; background: #2f6fde; color: #fff; cursor: pointer; }}
</style>
</head>
<body>
<main>
<h1>sluice console: the admin token, please</h1>
{problem}
<p>The console shows and changes what this daemon holds, so it needs the admin token. {where_}</p>
<form method="get" action="{PREFIX}">
<input type="password" name="token" placeholder="admin token" autocomplete="current-password" required autofocus aria-label="admin token">
<button type="submit">Open the console</button>
</form>
<p><small>Signing in keeps the token in a cookie of this browser (HttpOnly, SameSite=Strict) and takes it out of the address bar.</small></p>
</main>
</body>
</html>
"#
    );
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = StatusCode::UNAUTHORIZED;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    secure(h, SIGN_IN_POLICY);
    resp
}

fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "a-configured-token; with spaces, ümlauts and %";

    fn token() -> AdminToken {
        AdminToken::new(TOKEN, "admin.token".into())
    }

    fn get(uri: &str, cookie: Option<&str>) -> Response<Full<Bytes>> {
        let mut req = Request::builder().uri(uri);
        if let Some(c) = cookie {
            req = req.header(header::COOKIE, c);
        }
        answer(&req.body(()).unwrap(), &token())
    }

    #[test]
    fn any_token_survives_the_cookie_round_trip() {
        let encoded = encode_cookie_value(TOKEN);
        assert!(encoded
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b',' | b';' | b'\\')));
        assert_eq!(decode_cookie_value(&encoded), TOKEN);
        let hex = "0123456789abcdef0123456789abcdef";
        assert_eq!(encode_cookie_value(hex), hex);
        assert_eq!(decode_cookie_value("%zz%4"), "%zz%4");
        assert_eq!(decode_cookie_value("a+b"), "a+b");
        // Every byte outside cookie-octet is escaped, `%` included.
        assert_eq!(
            encode_cookie_value("a b\"c,d;e\\f%g\u{7f}é+"),
            "a%20b%22c%2Cd%3Be%5Cf%25g%7F%C3%A9+"
        );
    }

    #[test]
    fn signing_in_sets_the_cookie_that_then_opens_the_console() {
        let q: String = form_urlencoded::byte_serialize(TOKEN.as_bytes()).collect();
        let resp = get(&format!("/console/?token={q}"), None);
        assert_eq!(resp.status(), StatusCode::SEE_OTHER);
        assert_eq!(resp.headers()[header::LOCATION], "/console/");
        let set = resp.headers()[header::SET_COOKIE].to_str().unwrap();
        assert!(
            set.ends_with("; HttpOnly; SameSite=Strict; Path=/"),
            "{set}"
        );
        let pair = set.split(';').next().unwrap();
        let resp = get("/console/app.js", Some(&format!("theme=dark; {pair}")));
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(
            resp.headers()[header::CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_str(pair).unwrap());
        assert_eq!(check_cookie(&headers, &token()), CookieCheck::Valid);
    }

    #[test]
    fn a_stale_cookie_is_cleared_and_a_wrong_token_gets_the_form_again() {
        let resp = get("/console/", Some("sluice_admin=old"));
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        assert!(resp.headers()[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0"));
        let resp = get("/console/?token=wrong", None);
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        assert!(resp.headers().get(header::SET_COOKIE).is_none());
    }

    #[test]
    fn the_root_redirects_to_the_console_keeping_the_query() {
        let resp = get("/?token=abc", None);
        assert_eq!(resp.status(), StatusCode::SEE_OTHER);
        assert_eq!(resp.headers()[header::LOCATION], "/console/?token=abc");
        assert_eq!(
            get("/console", None).headers()[header::LOCATION],
            "/console/"
        );
    }

    #[test]
    fn every_asset_is_compiled_in_with_a_content_type() {
        for a in ASSETS {
            assert!(!a.body.is_empty(), "{}", a.name);
            assert!(!a.content_type.is_empty());
        }
        let index = std::str::from_utf8(ASSETS[0].body).unwrap();
        for a in &ASSETS[1..] {
            assert!(index.contains(a.name), "index.html links {}", a.name);
        }
    }
}
