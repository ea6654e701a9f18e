//! The separate Prometheus listener: `GET /metrics` and nothing else, never on the collector
//! port, and the periodic housekeeping of the exporter.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

use super::{handle, Gauges};
use crate::shutdown::Shutdown;

/// The Prometheus listener.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address of the separate `/metrics` listener. Default `0.0.0.0:9090`.
    /// Flag `--metrics-listen`.
    pub listen: SocketAddr,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 9090)),
        }
    }
}

/// Renders the Prometheus text after refreshing the gauges.
pub fn render(gauges: &dyn Gauges) -> String {
    gauges.refresh_gauges();
    handle().render()
}

/// The periodic housekeeping: refreshes the gauges and runs the exporter's upkeep (which keeps
/// histogram storage bounded) every `every`, until `shutdown` fires.
pub async fn refresh_loop(gauges: Arc<dyn Gauges>, every: Duration, mut shutdown: Shutdown) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                gauges.refresh_gauges();
                handle().run_upkeep();
            }
            _ = shutdown.stopped() => return,
        }
    }
}

/// Serves `GET /metrics` on `listener` until `shutdown` fires (see [`crate::listener`]).
pub async fn serve(listener: TcpListener, gauges: Arc<dyn Gauges>, shutdown: Shutdown) {
    let handle = move |req: Request<Incoming>| {
        let answered = answer(&req, &*gauges);
        async move { answered }
    };
    crate::listener::serve(listener, "metrics", handle, shutdown).await;
}

fn answer(req: &Request<Incoming>, gauges: &dyn Gauges) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => (
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            Bytes::from(render(gauges)),
        ),
        (_, "/metrics") => (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            Bytes::from_static(b"use GET /metrics\n"),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            Bytes::from_static(b"this listener serves only GET /metrics\n"),
        ),
    };
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    resp
}
