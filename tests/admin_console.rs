//! The web console on the admin listener: its assets come out of the binary with their content
//! types, signing in turns `?token=` into a cookie, the API takes that cookie for reads and,
//! with the console's header, for writes, and the collector port serves none of it. No
//! ClickHouse is needed: the daemon buffers meanwhile.

use std::path::Path;

use reqwest::blocking::{Client, Response};
use reqwest::header::{CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use serde_json::Value;
use sluice::config::Config;
use sluice::server::RunningServer;

mod admin_support;

use admin_support::{rt, token};

fn config(dir: &Path) -> Config {
    let mut config = admin_support::config(dir);
    // Nothing listens there: the console works without ClickHouse.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    config.clickhouse.url = format!("http://{}", closed.local_addr().unwrap());
    config
}

/// A client that shows redirects instead of following them, and keeps no cookies itself.
fn client() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

struct Console {
    base: String,
    collector: String,
    token: String,
    http: Client,
}

impl Console {
    fn of(server: &RunningServer, dir: &Path) -> Console {
        Console {
            base: format!("http://{}", server.admin_addr),
            collector: format!("http://{}", server.collector_addr),
            token: token(dir),
            http: client(),
        }
    }

    fn get(&self, path: &str, cookie: Option<&str>) -> Response {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(c) = cookie {
            req = req.header(COOKIE, c);
        }
        req.send().unwrap()
    }

    /// Signs in with `?token=` and returns the cookie pair the browser would send back.
    fn sign_in(&self) -> String {
        let resp = self.get(&format!("/console/?token={}", self.token), None);
        assert_eq!(resp.status(), 303);
        let set = resp.headers()[SET_COOKIE].to_str().unwrap().to_string();
        set.split(';').next().unwrap().to_string()
    }
}

fn header(resp: &Response, name: reqwest::header::HeaderName) -> String {
    resp.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

#[test]
fn the_console_signs_in_with_the_token_and_serves_its_assets_from_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = rt();
    let server = runtime
        .block_on(sluice::server::start(config(dir.path())))
        .unwrap();
    let c = Console::of(&server, dir.path());

    // The root and /console lead to the console, keeping the query (so /?token= signs in).
    let resp = c.get("/", None);
    assert_eq!(resp.status(), 303);
    assert_eq!(header(&resp, LOCATION), "/console/");
    let resp = c.get("/?token=abc", None);
    assert_eq!(header(&resp, LOCATION), "/console/?token=abc");
    assert_eq!(header(&c.get("/console", None), LOCATION), "/console/");

    // Without the token: a 401 page that says where the token is, with a form for it.
    for path in ["/console/", "/console/app.js", "/console/style.css"] {
        let resp = c.get(path, None);
        assert_eq!(resp.status(), 401, "{path}");
        assert_eq!(header(&resp, CONTENT_TYPE), "text/html; charset=utf-8");
        let page = resp.text().unwrap();
        assert!(
            page.contains(r#"<form method="get" action="/console/">"#),
            "{page}"
        );
        assert!(page.contains(r#"name="token""#));
        assert!(page.contains("admin.token"), "names the file: {page}");
        assert!(!page.contains(&c.token));
    }

    // A wrong token: the form again, no cookie.
    let resp = c.get("/console/?token=not-the-token", None);
    assert_eq!(resp.status(), 401);
    assert!(resp.headers().get(SET_COOKIE).is_none());
    assert!(resp.text().unwrap().contains("does not match"));

    // The right one: 303 to the console without the token, and the session cookie.
    let resp = c.get(&format!("/console/?token={}", c.token), None);
    assert_eq!(resp.status(), 303);
    assert_eq!(header(&resp, LOCATION), "/console/");
    assert_eq!(
        header(&resp, SET_COOKIE),
        format!(
            "sluice_admin={}; HttpOnly; SameSite=Strict; Path=/",
            c.token
        )
    );
    let cookie = c.sign_in();

    // The assets, byte for byte what was compiled in, with their content types.
    let assets: [(&str, &str, &[u8]); 5] = [
        (
            "/console/",
            "text/html; charset=utf-8",
            include_bytes!("../src/admin/console/index.html"),
        ),
        (
            "/console/index.html",
            "text/html; charset=utf-8",
            include_bytes!("../src/admin/console/index.html"),
        ),
        (
            "/console/app.js",
            "text/javascript; charset=utf-8",
            include_bytes!("../src/admin/console/app.js"),
        ),
        (
            "/console/style.css",
            "text/css; charset=utf-8",
            include_bytes!("../src/admin/console/style.css"),
        ),
        (
            "/console/favicon.svg",
            "image/svg+xml",
            include_bytes!("../src/admin/console/favicon.svg"),
        ),
    ];
    for (path, content_type, body) in assets {
        let resp = c.get(path, Some(&cookie));
        assert_eq!(resp.status(), 200, "{path}");
        assert_eq!(header(&resp, CONTENT_TYPE), content_type, "{path}");
        let policy = header(&resp, "content-security-policy".parse().unwrap());
        assert!(policy.contains("script-src 'self'"), "{path}: {policy}");
        assert!(policy.contains("frame-ancestors 'none'"));
        assert_eq!(
            header(&resp, "x-content-type-options".parse().unwrap()),
            "nosniff"
        );
        assert_eq!(resp.bytes().unwrap().as_ref(), body, "{path}");
    }
    // Nothing but the assets: no path leads out of the table.
    assert_eq!(c.get("/console/../Cargo.toml", Some(&cookie)).status(), 404);
    assert_eq!(c.get("/console/nothing.js", Some(&cookie)).status(), 404);
    // The bearer header opens the assets too (for scripts).
    let resp = c
        .http
        .get(format!("{}/console/app.js", c.base))
        .bearer_auth(&c.token)
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = c
        .http
        .post(format!("{}/console/", c.base))
        .header(COOKIE, &cookie)
        .send()
        .unwrap();
    assert_eq!(resp.status(), 405);

    // A cookie from before the token changed: signed out, told why, the cookie cleared.
    let resp = c.get("/console/", Some("sluice_admin=an-old-token"));
    assert_eq!(resp.status(), 401);
    assert!(header(&resp, SET_COOKIE).contains("Max-Age=0"));
    assert!(resp.text().unwrap().contains("no longer the admin token"));

    runtime.block_on(server.shutdown()).unwrap();
}

#[test]
fn the_api_takes_the_console_cookie_and_refuses_cookie_writes_without_the_console_header() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = rt();
    let server = runtime
        .block_on(sluice::server::start(config(dir.path())))
        .unwrap();
    let c = Console::of(&server, dir.path());
    let cookie = c.sign_in();

    // Reads: the cookie is as good as the bearer header.
    for path in [
        "/api/v1/status",
        "/api/v1/history",
        "/api/v1/dead-letters?limit=5",
    ] {
        let resp = c.get(path, Some(&format!("theme=dark; {cookie}")));
        assert_eq!(resp.status(), 200, "{path}");
        let _: Value = resp.json().unwrap();
    }
    let status: Value = c.get("/api/v1/status", Some(&cookie)).json().unwrap();
    assert_eq!(
        status["collector"]["listen"],
        server.collector_addr.to_string(),
        "the setup tab points at the collector's bound address"
    );
    let resp = c.get("/api/v1/status", Some("sluice_admin=an-old-token"));
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("sign in again"),
        "{body}"
    );

    // Writes: refused without the console's header, whatever the body.
    let purge = format!("{}/api/v1/dead-letters/purge", c.base);
    let resp = c
        .http
        .post(&purge)
        .header(COOKIE, &cookie)
        .header(CONTENT_TYPE, "application/json")
        .body(r#"{"all": true}"#)
        .send()
        .unwrap();
    assert_eq!(resp.status(), 403);
    let body: Value = resp.json().unwrap();
    assert_eq!(body["code"], "console_header_missing");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("X-Sluice-Console: 1"),
        "{body}"
    );
    let resp = c
        .http
        .post(&purge)
        .header(COOKIE, &cookie)
        .header("x-sluice-console", "yes")
        .body(r#"{"all": true}"#)
        .send()
        .unwrap();
    assert_eq!(resp.status(), 403, "only the value 1 counts");
    // With it, the write goes through; the bearer header needs no such thing.
    let resp = c
        .http
        .post(&purge)
        .header(COOKIE, &cookie)
        .header("x-sluice-console", "1")
        .body(r#"{"all": true}"#)
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().unwrap()["purged"], 0);
    let resp = c
        .http
        .post(&purge)
        .bearer_auth(&c.token)
        .body(r#"{"all": true}"#)
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    // No cookie and no token: 401 as before, JSON for the API.
    let resp = c.http.post(&purge).body(r#"{"all": true}"#).send().unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(header(&resp, CONTENT_TYPE), "application/json");

    // The collector port serves none of the console, with or without the cookie.
    for path in ["/", "/console/", "/console/app.js", "/console/?token=x"] {
        let resp = c
            .http
            .get(format!("{}{path}", c.collector))
            .header(COOKIE, &cookie)
            .send()
            .unwrap();
        assert_eq!(resp.status(), 404, "{path} on the collector port");
    }

    runtime.block_on(server.shutdown()).unwrap();
}
