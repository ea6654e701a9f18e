//! Collector behaviour against a real listener, as Snowplow's stream collector 3.x has it: CORS,
//! the network-user-id cookie and its precedence, `SP-Anonymous`, the do-not-track cookie,
//! redirects, path aliases, `/robots.txt`, `/crossdomain.xml`, `/static/`, and what ends up
//! stored.

mod http_support;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use http_support::{fetch, start, stored, test_config, Answer, IO_BOUND};
use reqwest::{redirect, Client, Method, StatusCode};
use sluice::config::{Config, HumanDuration};
use sluice::envelope::{Envelope, ENVELOPE_VERSION};
use sluice::http::collector::{Pattern, SameSite, ANONYMOUS_NUID};
use sluice::http::PIXEL;
use sluice::ingest::{partition_count, partition_dir, wal_config};

const TP2: &str = "/com.snowplowanalytics.snowplow/tp2";
const ORIGIN: &str = "https://shop.example";

fn client() -> Client {
    Client::builder()
        .timeout(IO_BOUND)
        .redirect(redirect::Policy::none())
        .build()
        .unwrap()
}

impl Answer {
    fn cookie(&self) -> Option<SetCookie> {
        self.header("set-cookie").map(SetCookie::parse)
    }
}

/// A `Set-Cookie` value split into its `name=value` pair and attributes.
#[derive(Debug)]
struct SetCookie {
    name: String,
    value: String,
    attributes: BTreeMap<String, String>,
}

impl SetCookie {
    fn parse(header: &str) -> SetCookie {
        let mut parts = header.split("; ");
        let (name, value) = parts.next().unwrap().split_once('=').unwrap();
        let attributes = parts
            .map(|a| match a.split_once('=') {
                Some((k, v)) => (k.to_owned(), v.to_owned()),
                None => (a.to_owned(), String::new()),
            })
            .collect();
        SetCookie {
            name: name.into(),
            value: value.into(),
            attributes,
        }
    }

    fn has(&self, attribute: &str) -> bool {
        self.attributes.contains_key(attribute)
    }

    fn expires(&self) -> SystemTime {
        httpdate::parse_http_date(&self.attributes["Expires"]).unwrap()
    }
}

fn is_v4_uuid(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok_and(|u| u.get_version_num() == 4)
}

fn envelopes(config: &Config) -> Vec<Envelope> {
    stored(config).into_iter().map(|(_, e)| e).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_echoes_the_origin_and_preflights_allow_the_configured_extra_headers() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = test_config(tmp.path());
    config.collector.cors.extra_allowed_headers = vec!["traceparent".into(), "X-Acme".into()];
    config.collector.cors.max_age = HumanDuration(Duration::from_secs(600));
    let (srv, base) = start(&config).await;
    let http = client();

    let pixel = fetch(http.get(format!("{base}/i?e=pv")).header("origin", ORIGIN)).await;
    assert_eq!(pixel.status, StatusCode::OK);
    assert_eq!(pixel.header("access-control-allow-origin"), Some(ORIGIN));
    assert_eq!(
        pixel.header("access-control-allow-credentials"),
        Some("true")
    );
    assert_eq!(pixel.header("vary"), Some("Origin"));
    assert_eq!(pixel.header("access-control-allow-headers"), None);

    for origin in [None, Some("null")] {
        let mut req = http.post(format!("{base}{TP2}")).body("{}");
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        let post = fetch(req).await;
        assert_eq!(post.status, StatusCode::OK);
        assert_eq!(
            post.header("access-control-allow-origin"),
            Some("*"),
            "{origin:?}"
        );
    }

    let preflight = fetch(
        http.request(Method::OPTIONS, format!("{base}{TP2}"))
            .header("origin", ORIGIN)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type,traceparent"),
    )
    .await;
    assert_eq!(preflight.status, StatusCode::OK);
    assert_eq!(
        preflight.header("access-control-allow-origin"),
        Some(ORIGIN)
    );
    assert_eq!(
        preflight.header("access-control-allow-credentials"),
        Some("true")
    );
    assert_eq!(
        preflight.header("access-control-allow-headers"),
        Some("Content-Type, SP-Anonymous, Authorization, X-API-Key, traceparent, X-Acme")
    );
    assert_eq!(preflight.header("access-control-max-age"), Some("600"));
    assert_eq!(preflight.header("vary"), Some("Origin"));
    assert!(preflight.body.is_empty());
    assert!(preflight.header("set-cookie").is_none());

    srv.shutdown().await.unwrap();
    assert_eq!(envelopes(&config).len(), 3, "preflights store nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_outside_the_allow_list_gets_no_allow_origin_but_its_event_is_stored() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = test_config(tmp.path());
    config.collector.cors.allowed_origins = vec!["https://shop.example".into(), "acme.test".into()];
    let (srv, base) = start(&config).await;
    let http = client();

    for (origin, allowed) in [
        ("https://shop.example", true),
        ("https://www.acme.test", true),
        ("http://acme.test:8080", true),
        ("https://evil.example", false),
        ("http://shop.example", false),
        ("https://notacme.test", false),
    ] {
        let answer = fetch(http.get(format!("{base}/i?e=pv")).header("origin", origin)).await;
        assert_eq!(answer.status, StatusCode::OK, "{origin}");
        assert_eq!(answer.body, PIXEL, "{origin}");
        let expected = allowed.then_some(origin);
        assert_eq!(
            answer.header("access-control-allow-origin"),
            expected,
            "{origin}"
        );
        assert_eq!(
            answer.header("access-control-allow-credentials").is_some(),
            allowed,
            "{origin}"
        );
        assert_eq!(answer.header("vary"), Some("Origin"), "{origin}");

        let preflight = fetch(
            http.request(Method::OPTIONS, format!("{base}{TP2}"))
                .header("origin", origin),
        )
        .await;
        assert_eq!(
            preflight.header("access-control-allow-origin"),
            expected,
            "preflight {origin}"
        );
    }
    srv.shutdown().await.unwrap();
    assert_eq!(
        envelopes(&config).len(),
        6,
        "disallowed origins are still stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_network_user_id_comes_from_sp_anonymous_then_the_nuid_parameter_then_the_cookie_then_a_new_uuid(
) {
    let tmp = tempfile::tempdir().unwrap();
    let config = test_config(tmp.path());
    let (srv, base) = start(&config).await;
    let http = client();
    let url = |q: &str| format!("{base}/i?e=pv{q}");

    // 1. SP-Anonymous beats everything; no new cookie (the request had none).
    let anon = fetch(
        http.get(url("&nuid=from-param"))
            .header("sp-anonymous", "*")
            .header("cookie", "other=1"),
    )
    .await;
    assert_eq!(anon.status, StatusCode::OK);
    assert!(anon.cookie().is_none(), "{:?}", anon.header("set-cookie"));
    // 2. The nuid parameter beats the cookie.
    let param = fetch(
        http.get(url("&nuid=from-param"))
            .header("cookie", "sp=from-cookie"),
    )
    .await;
    assert_eq!(param.cookie().unwrap().value, "from-param");
    // 3. The cookie.
    let cookie = fetch(
        http.get(url(""))
            .header("cookie", "a=1; sp=from-cookie; b=2"),
    )
    .await;
    assert_eq!(cookie.cookie().unwrap().value, "from-cookie");
    // 4. A new v4 UUID, different each time.
    let fresh = fetch(http.get(url(""))).await.cookie().unwrap().value;
    let fresh2 = fetch(http.get(url(""))).await.cookie().unwrap().value;
    assert!(is_v4_uuid(&fresh), "{fresh}");
    assert!(is_v4_uuid(&fresh2), "{fresh2}");
    assert_ne!(fresh, fresh2);
    // A value that cannot be a cookie value is ignored, not echoed into Set-Cookie.
    let injected = fetch(
        http.get(url("&nuid=x%3B%20Domain%3Devil.example"))
            .header("cookie", "sp=from-cookie"),
    )
    .await;
    assert_eq!(injected.cookie().unwrap().value, "from-cookie");

    srv.shutdown().await.unwrap();
    let mut got: Vec<String> = envelopes(&config)
        .into_iter()
        .map(|e| e.nuid.unwrap())
        .collect();
    got.sort();
    let mut want = vec![
        ANONYMOUS_NUID.to_owned(),
        "from-param".into(),
        "from-cookie".into(),
        fresh,
        fresh2,
        "from-cookie".into(),
    ];
    want.sort();
    assert_eq!(got, want, "the stored nuid is the one in Set-Cookie");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cookie_has_the_configured_name_domain_same_site_security_and_sliding_expiry() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = test_config(tmp.path());
    let c = &mut config.collector.cookie;
    c.name = "nuid_cookie".into();
    c.domains = vec!["acme.test".into(), "shop.example".into()];
    c.fallback_domain = Some("fallback.example".into());
    c.expiration = HumanDuration(Duration::from_secs(30 * 86_400));
    let (srv, base) = start(&config).await;
    let http = client();

    // Default attributes, domain chosen by the Origin's host (a subdomain of the second entry).
    let before = SystemTime::now();
    let a = fetch(
        http.post(format!("{base}{TP2}"))
            .header("origin", "https://www.shop.example")
            .header("cookie", "sp=ignored; nuid_cookie=abc")
            .body("{}"),
    )
    .await
    .cookie()
    .unwrap();
    assert_eq!((a.name.as_str(), a.value.as_str()), ("nuid_cookie", "abc"));
    assert_eq!(a.attributes["Domain"], "shop.example");
    assert_eq!(a.attributes["Path"], "/");
    assert_eq!(a.attributes["SameSite"], "None");
    assert!(a.has("Secure") && a.has("HttpOnly"), "{a:?}");
    let expires = a.expires();
    let lifetime = Duration::from_secs(30 * 86_400);
    // HTTP dates have whole seconds; allow for that and for the request's own duration.
    assert!(
        expires + Duration::from_secs(1) >= before + lifetime,
        "{a:?}"
    );
    assert!(expires <= SystemTime::now() + lifetime, "{a:?}");

    // The first matching entry wins; an exact host match counts.
    let b = fetch(
        http.get(format!("{base}/i"))
            .header("origin", "http://acme.test:8080"),
    )
    .await
    .cookie()
    .unwrap();
    assert_eq!(b.attributes["Domain"], "acme.test");
    // No Origin, or an unrelated one: the fallback domain.
    for origin in [
        None,
        Some("https://elsewhere.example"),
        Some("https://xacme.test"),
    ] {
        let mut req = http.get(format!("{base}/i"));
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        let c = fetch(req).await.cookie().unwrap();
        assert_eq!(c.attributes["Domain"], "fallback.example", "{origin:?}");
    }
    srv.shutdown().await.unwrap();

    // Lax, not Secure, not HttpOnly, no domain at all.
    let tmp = tempfile::tempdir().unwrap();
    let mut config = test_config(tmp.path());
    let c = &mut config.collector.cookie;
    c.same_site = SameSite::Lax;
    c.secure = false;
    c.http_only = false;
    let (srv, base) = start(&config).await;
    let d = fetch(http.get(format!("{base}/i")).header("origin", ORIGIN))
        .await
        .cookie()
        .unwrap();
    assert_eq!(d.name, "sp");
    assert_eq!(d.attributes["SameSite"], "Lax");
    assert!(
        !d.has("Secure") && !d.has("HttpOnly") && !d.has("Domain"),
        "{d:?}"
    );
    srv.shutdown().await.unwrap();

    // Disabled: no cookie, and no nuid stored.
    let tmp = tempfile::tempdir().unwrap();
    let mut config = test_config(tmp.path());
    config.collector.cookie.enabled = false;
    let (srv, base) = start(&config).await;
    let e = fetch(
        http.get(format!("{base}/i?nuid=p"))
            .header("cookie", "sp=c"),
    )
    .await;
    assert_eq!(e.status, StatusCode::OK);
    assert!(e.cookie().is_none());
    srv.shutdown().await.unwrap();
    let stored = envelopes(&config);
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].nuid, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sp_anonymous_stores_the_zero_nuid_clears_the_cookie_and_strips_identifying_headers() {
    let tmp = tempfile::tempdir().unwrap();
    let config = test_config(tmp.path());
    let (srv, base) = start(&config).await;
    let http = client();

    let answer = fetch(
        http.post(format!("{base}{TP2}?nuid=param"))
            .header("sp-anonymous", "*")
            .header("origin", ORIGIN)
            .header("user-agent", "ua/1")
            .header("cookie", "sp=known-visitor; other=1")
            .header("x-forwarded-for", "203.0.113.9")
            .header("x-real-ip", "203.0.113.9")
            .header("forwarded", "for=203.0.113.9")
            .body(r#"{"data":[]}"#),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body, b"ok");
    assert_eq!(answer.header("access-control-allow-origin"), Some(ORIGIN));
    let cleared = answer.cookie().expect("the carried cookie is cleared");
    assert_eq!((cleared.name.as_str(), cleared.value.as_str()), ("sp", ""));
    assert!(cleared.expires() < SystemTime::now(), "{cleared:?}");
    assert_eq!(cleared.attributes["Path"], "/");
    srv.shutdown().await.unwrap();

    let stored = envelopes(&config);
    assert_eq!(stored.len(), 1);
    let e = &stored[0];
    assert_eq!(e.nuid.as_deref(), Some(ANONYMOUS_NUID));
    assert_eq!(e.peer, None, "the address is not recorded");
    let names: Vec<&str> = e.headers.iter().map(|(k, _)| k.as_str()).collect();
    for stripped in ["cookie", "x-forwarded-for", "x-real-ip", "forwarded"] {
        assert!(!names.contains(&stripped), "{stripped} stored: {names:?}");
    }
    assert_eq!(e.header("user-agent"), Some("ua/1"));
    assert_eq!(e.header("sp-anonymous"), Some("*"));
    assert_eq!(e.body, br#"{"data":[]}"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_with_the_do_not_track_cookie_is_answered_normally_but_not_stored() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = test_config(tmp.path());
    let dnt = &mut config.collector.do_not_track_cookie;
    dnt.enabled = true;
    dnt.name = "opt_out".into();
    dnt.value = Pattern::new("1|true").unwrap();
    let (srv, base) = start(&config).await;
    let http = client();

    for cookie in ["opt_out=1", "sp=abc; opt_out=true"] {
        let pixel = fetch(
            http.get(format!("{base}/i?e=pv"))
                .header("cookie", cookie)
                .header("origin", ORIGIN),
        )
        .await;
        assert_eq!(pixel.status, StatusCode::OK, "{cookie}");
        assert_eq!(pixel.body, PIXEL, "{cookie}");
        assert_eq!(pixel.header("content-type"), Some("image/gif"));
        assert!(pixel.cookie().is_none(), "{cookie}");
        assert_eq!(pixel.header("access-control-allow-origin"), Some(ORIGIN));
        let post = fetch(
            http.post(format!("{base}{TP2}"))
                .header("cookie", cookie)
                .body("{}"),
        )
        .await;
        assert_eq!((post.status, post.text().as_str()), (StatusCode::OK, "ok"));
        assert!(post.cookie().is_none());
    }
    // The pattern must match the whole value; other values are tracked.
    for cookie in ["opt_out=10", "opt_out=0", "other=1"] {
        let pixel = fetch(http.get(format!("{base}/i?e=pv")).header("cookie", cookie)).await;
        assert_eq!(pixel.status, StatusCode::OK);
        assert!(pixel.cookie().is_some(), "{cookie}");
    }
    srv.shutdown().await.unwrap();
    assert_eq!(envelopes(&config).len(), 3, "only the tracked requests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_disabled_by_default_and_store_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let config = test_config(tmp.path());
    let (srv, base) = start(&config).await;
    let http = client();
    for (method, path) in [
        (Method::GET, "/r/tp2?u=https%3A%2F%2Fshop.example%2F"),
        (Method::POST, "/r/tp2"),
        (Method::GET, "/r/other"),
    ] {
        let answer = fetch(http.request(method.clone(), format!("{base}{path}"))).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{method} {path}");
        assert_eq!(answer.text().trim(), "redirects disabled");
        assert!(answer.header("location").is_none());
    }
    srv.shutdown().await.unwrap();
    assert!(envelopes(&config).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enabled_redirect_stores_the_event_and_answers_302_only_to_allowed_targets() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = test_config(tmp.path());
    config.collector.redirects.enabled = true;
    config.collector.redirects.allowed_domains = vec!["shop.example".into()];
    let (srv, base) = start(&config).await;
    let http = client();

    let target = "https://www.shop.example/landing?x=1&y=2";
    let ok = fetch(
        http.get(format!(
            "{base}/r/tp2?e=se&se_ca=c&u=https%3A%2F%2Fwww.shop.example%2Flanding%3Fx%3D1%26y%3D2"
        ))
        .header("origin", ORIGIN),
    )
    .await;
    assert_eq!(ok.status, StatusCode::FOUND);
    assert_eq!(ok.header("location"), Some(target));
    assert_eq!(ok.header("access-control-allow-origin"), Some(ORIGIN));
    assert!(ok.cookie().is_some(), "redirects carry the cookie");
    let exact = fetch(http.get(format!("{base}/r/tp2?u=http://shop.example"))).await;
    assert_eq!(exact.status, StatusCode::FOUND);
    assert_eq!(exact.header("location"), Some("http://shop.example"));

    for (query, what) in [
        ("u=https%3A%2F%2Fevil.example%2F", "disallowed host"),
        (
            "u=https%3A%2F%2Fshop.example%40evil.example%2F",
            "userinfo trick",
        ),
        ("u=https%3A%2F%2Fnotshop.example%2F", "suffix without a dot"),
        ("e=pv", "missing u"),
        ("u=", "empty u"),
        ("u=javascript%3Aalert(1)", "not http(s)"),
        ("u=%2Fpath", "relative"),
        (
            "u=https%3A%2F%2Fshop.example%2F%0D%0AX%3A1",
            "header injection",
        ),
    ] {
        let bad = fetch(http.get(format!("{base}/r/tp2?{query}"))).await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{what}");
        assert!(bad.header("location").is_none(), "{what}");
        assert!(!bad.text().is_empty(), "{what}: the 400 says why");
    }
    let other = fetch(http.get(format!("{base}/r/anything?u=https://shop.example/"))).await;
    assert_eq!(other.status, StatusCode::FOUND);
    let put = fetch(http.put(format!("{base}/r/tp2?u=https://shop.example/"))).await;
    assert_eq!(put.status, StatusCode::METHOD_NOT_ALLOWED);
    srv.shutdown().await.unwrap();

    let stored = envelopes(&config);
    let mut routes: Vec<(&str, &str)> = stored
        .iter()
        .map(|e| (e.route.as_str(), e.path.as_str()))
        .collect();
    routes.sort();
    assert_eq!(
        routes,
        vec![
            ("/r/tp2", "/r/tp2"),
            ("/r/tp2", "/r/tp2"),
            ("/r/{path}", "/r/anything")
        ]
    );
    assert_eq!(stored.len(), 3, "refused redirects store nothing");
    assert!(stored.iter().all(|e| e.nuid.is_some()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_alias_stores_the_mapped_route_and_path() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = test_config(tmp.path());
    config.collector.paths = [
        ("/com.acme/track", TP2),
        ("/com.acme/pixel", "/i"),
        ("/com.acme/redirect", "/r/tp2"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let (srv, base) = start(&config).await;
    let http = client();

    let post = fetch(http.post(format!("{base}/com.acme/track")).body("{}")).await;
    assert_eq!((post.status, post.text().as_str()), (StatusCode::OK, "ok"));
    let get = fetch(http.get(format!("{base}/com.acme/track?e=pv"))).await;
    assert_eq!(get.body, PIXEL);
    let pixel = fetch(http.get(format!("{base}/com.acme/pixel?e=pv"))).await;
    assert_eq!(pixel.body, PIXEL);
    let wrong = fetch(http.post(format!("{base}/com.acme/pixel")).body("{}")).await;
    assert_eq!(wrong.status, StatusCode::METHOD_NOT_ALLOWED);
    // An alias of /r/tp2 redirects although the default redirect route is off.
    let redirect = fetch(http.get(format!(
        "{base}/com.acme/redirect?u=https%3A%2F%2Fshop.example%2F"
    )))
    .await;
    assert_eq!(redirect.status, StatusCode::FOUND);
    assert_eq!(redirect.header("location"), Some("https://shop.example/"));
    let unknown = fetch(http.get(format!("{base}/com.acme/other"))).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    srv.shutdown().await.unwrap();

    let mut got: Vec<(String, String, String)> = envelopes(&config)
        .into_iter()
        .map(|e| (e.method, e.route, e.path))
        .collect();
    got.sort();
    let mut want: Vec<(String, String, String)> = [
        ("GET", "/i", "/i"),
        ("GET", "/r/tp2", "/r/tp2"),
        ("GET", TP2, TP2),
        ("POST", TP2, TP2),
    ]
    .into_iter()
    .map(|(m, r, p)| (m.into(), r.into(), p.into()))
    .collect();
    want.sort();
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn robots_txt_disallows_every_crawler_and_crossdomain_xml_is_served_only_when_enabled() {
    let tmp = tempfile::tempdir().unwrap();
    let config = test_config(tmp.path());
    let (srv, base) = start(&config).await;
    let http = client();
    let robots = fetch(http.get(format!("{base}/robots.txt"))).await;
    assert_eq!(robots.status, StatusCode::OK);
    assert!(robots
        .header("content-type")
        .unwrap()
        .starts_with("text/plain"));
    let text = robots.text();
    for agent in ["*", "Googlebot", "AdsBot-Google"] {
        assert!(
            text.contains(&format!("User-agent: {agent}\nDisallow: /\n")),
            "{text}"
        );
    }
    let cross = fetch(http.get(format!("{base}/crossdomain.xml"))).await;
    assert_eq!(cross.status, StatusCode::NOT_FOUND);
    srv.shutdown().await.unwrap();

    let tmp = tempfile::tempdir().unwrap();
    let mut config2 = test_config(tmp.path());
    config2.collector.cross_domain.enabled = true;
    config2.collector.cross_domain.domains = vec!["*.acme.test".into(), "shop.example".into()];
    config2.collector.cross_domain.secure = false;
    let (srv, base) = start(&config2).await;
    let cross = fetch(http.get(format!("{base}/crossdomain.xml"))).await;
    assert_eq!(cross.status, StatusCode::OK);
    assert_eq!(cross.header("content-type"), Some("text/xml"));
    assert_eq!(
        cross.text(),
        "<?xml version=\"1.0\"?>\n<cross-domain-policy>\n  \
         <allow-access-from domain=\"*.acme.test\" secure=\"false\" />\n  \
         <allow-access-from domain=\"shop.example\" secure=\"false\" />\n\
         </cross-domain-policy>\n"
    );
    srv.shutdown().await.unwrap();
    assert!(envelopes(&config).is_empty() && envelopes(&config2).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_dir_files_are_served_at_static_and_nothing_else_is() {
    let tmp = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let tracker = "window.snowplow = function () {};\n";
    std::fs::write(files.path().join("sp.js"), tracker).unwrap();
    std::fs::write(files.path().join(".secret"), "no").unwrap();
    std::fs::write(files.path().join("big.js"), vec![b'x'; 2048]).unwrap();
    std::fs::create_dir(files.path().join("sub")).unwrap();
    std::fs::write(files.path().join("sub").join("x.js"), "no").unwrap();
    let mut config = test_config(tmp.path());
    config.collector.static_dir = files.path().to_path_buf();
    config.collector.static_max_file_bytes = sluice::config::ByteSize(1024);
    let (srv, base) = start(&config).await;
    let http = client();

    let js = fetch(http.get(format!("{base}/static/sp.js"))).await;
    assert_eq!(js.status, StatusCode::OK);
    assert_eq!(
        js.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert_eq!(js.header("cache-control"), Some("public, max-age=300"));
    assert_eq!(js.text(), tracker);
    let head = fetch(http.head(format!("{base}/static/sp.js"))).await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(
        head.header("content-length"),
        Some(tracker.len().to_string().as_str())
    );
    let post = fetch(http.post(format!("{base}/static/sp.js"))).await;
    assert_eq!(post.status, StatusCode::METHOD_NOT_ALLOWED);
    for path in [
        "/static/missing.js",
        "/static/.secret",
        "/static/big.js",
        "/static/sub",
        "/static/sub/x.js",
        "/static/..%2FCargo.toml",
        "/static/",
    ] {
        let a = fetch(http.get(format!("{base}{path}"))).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{path}");
    }
    srv.shutdown().await.unwrap();
    assert!(envelopes(&config).is_empty(), "static files store nothing");

    // Not configured: not served.
    let tmp = tempfile::tempdir().unwrap();
    let config = test_config(tmp.path());
    let (srv, base) = start(&config).await;
    let a = fetch(http.get(format!("{base}/static/sp.js"))).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    srv.shutdown().await.unwrap();

    // A directory that does not exist is refused at start-up, naming the key.
    let mut config = test_config(tmp.path());
    config.collector.static_dir = tmp.path().join("nope");
    let keys: Vec<_> = config.violations().iter().map(|v| v.key).collect();
    assert!(keys.contains(&"collector.static_dir"), "{keys:?}");
}

#[test]
fn an_envelope_written_before_nuid_existed_still_decodes_from_the_log() {
    // The version-1 layout before `nuid` was added: the same named fields without it.
    #[derive(serde::Serialize)]
    struct EnvelopeWithoutNuid<'a> {
        received_at_ms: i64,
        route: &'a str,
        method: &'a str,
        path: &'a str,
        query: Option<&'a str>,
        headers: Vec<(&'a str, &'a str)>,
        #[serde(with = "serde_bytes")]
        body: &'a [u8],
        peer: Option<&'a str>,
    }
    let tmp = tempfile::tempdir().unwrap();
    let config = test_config(tmp.path());
    let old = EnvelopeWithoutNuid {
        received_at_ms: 1_700_000_000_000,
        route: "/i",
        method: "GET",
        path: "/i",
        query: Some("e=pv"),
        headers: vec![("cookie", "sp=abc")],
        body: b"",
        peer: Some("127.0.0.1:1"),
    };
    let mut bytes = vec![ENVELOPE_VERSION];
    rmp_serde::encode::write_named(&mut bytes, &old).unwrap();
    let wal = sluice_wal::Wal::open(
        partition_dir(&config.data_dir, 0),
        wal_config(
            &config.wal,
            config.max_record_bytes(),
            partition_count(&config.wal),
        ),
    )
    .unwrap();
    wal.append(bytes).unwrap();
    wal.close().unwrap();

    let stored = envelopes(&config);
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].nuid, None);
    assert_eq!(stored[0].query.as_deref(), Some("e=pv"));
    assert_eq!(stored[0].header("cookie"), Some("sp=abc"));
}

#[test]
fn the_collector_section_loads_from_toml_and_bad_values_name_their_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sluice.toml");
    std::fs::write(
        &file,
        r#"
[collector]
max_payload_bytes = "512KiB"
paths = { "/com.acme/track" = "/com.snowplowanalytics.snowplow/tp2" }

[collector.cookie]
name = "nuid"
expiration = "30days"
domains = ["acme.test"]
same_site = "Strict"

[collector.do_not_track_cookie]
enabled = true
name = "dnt"
value = "1|yes"

[collector.cors]
allowed_origins = ["https://shop.example"]
max_age = "10m"
"#,
    )
    .unwrap();
    let loaded = sluice::config::load::load(Some(&file), &Default::default()).unwrap();
    let c = &loaded.config.collector;
    assert_eq!(c.max_payload_bytes.bytes(), 512 << 10);
    assert_eq!(c.paths["/com.acme/track"], TP2);
    assert_eq!(c.cookie.name, "nuid");
    assert_eq!(c.cookie.same_site, SameSite::Strict);
    assert_eq!(c.cookie.expiration.get(), Duration::from_secs(30 * 86_400));
    assert!(c.do_not_track_cookie.value.matches("yes"));
    assert!(!c.do_not_track_cookie.value.matches("yes!"));
    assert_eq!(c.cors.max_age.get(), Duration::from_secs(600));
    loaded.config.validate().unwrap();

    std::fs::write(
        &file,
        "[collector.do_not_track_cookie]\nenabled = true\nname = \"dnt\"\nvalue = \"(\"\n",
    )
    .unwrap();
    let err = sluice::config::load::load(Some(&file), &Default::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("not a regular expression") && err.contains("value"),
        "{err}"
    );

    let mut bad = Config::default();
    bad.collector.cookie.name = "bad name".into();
    bad.collector.paths.insert("/one".into(), TP2.into());
    bad.collector
        .paths
        .insert("/a/b".into(), "/v1/track".into());
    bad.collector.paths.insert("/v1/track".into(), TP2.into());
    bad.collector.redirects.allowed_domains = vec!["https://x".into()];
    bad.collector.cors.allowed_origins = vec!["https://x/path".into()];
    bad.collector.cors.extra_allowed_headers = vec!["bad header".into()];
    bad.collector.max_payload_bytes = sluice::config::ByteSize(128 << 20);
    let keys: Vec<&str> = bad.collector.violations().iter().map(|v| v.key).collect();
    for key in [
        "collector.cookie.name",
        "collector.paths",
        "collector.redirects.allowed_domains",
        "collector.cors.allowed_origins",
        "collector.cors.extra_allowed_headers",
        "collector.max_payload_bytes",
    ] {
        assert!(keys.contains(&key), "{key} not in {keys:?}");
    }
    assert_eq!(
        keys.iter().filter(|k| **k == "collector.paths").count(),
        3,
        "{keys:?}"
    );
    assert!(Config::default().collector.violations().is_empty());
}
