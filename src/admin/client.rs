//! A client of the admin API, for `sluice dlq …` while the daemon runs: it reaches the daemon
//! at `admin.listen` with the token the daemon uses (see [`super::token::for_client`]) and
//! rebuilds entries exactly from their `request_base64`, so the commands print what they
//! print when they open the store themselves.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{json, Value};

use super::token::{for_client, TokenError, TOKEN_FILE};
use crate::config::Config;
use crate::deadletter::{Entry, EntryId, Filter};
use crate::event::FailureCategory;
use crate::publish::replay::DlqSummary;

/// How long connecting to the daemon may take before it counts as not running.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Why the daemon could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The token could not be read.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// Neither `admin.token` nor the daemon's token file exists.
    #[error(
        "no admin token: set admin.token, or run this as a user who can read DATA_DIR/{TOKEN_FILE}"
    )]
    NoToken,
    /// Nothing answered at the address.
    #[error("no daemon answered on admin.listen {addr}: {reason}")]
    Unreachable {
        /// The address tried.
        addr: SocketAddr,
        /// What went wrong.
        reason: String,
    },
    /// The daemon refused or failed the request.
    #[error("the daemon answered {status}: {message}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The API's stable error code.
        code: String,
        /// The API's message.
        message: String,
    },
    /// The answer was not what the API documents.
    #[error("unexpected answer from the admin API: {0}")]
    BadAnswer(String),
    /// The client's runtime could not start.
    #[error("cannot start the HTTP client: {0}")]
    Runtime(std::io::Error),
}

impl ClientError {
    /// A stable label for this kind of error.
    pub fn code(&self) -> &'static str {
        match self {
            ClientError::Token(_) => "admin_token",
            ClientError::NoToken => "no_admin_token",
            ClientError::Unreachable { .. } => "daemon_unreachable",
            ClientError::Refused { .. } => "daemon_refused",
            ClientError::BadAnswer(_) => "bad_answer",
            ClientError::Runtime(_) => "runtime",
        }
    }
}

/// A connection to one daemon's admin API.
pub struct Client {
    addr: SocketAddr,
    base: String,
    token: String,
    http: reqwest::Client,
    runtime: tokio::runtime::Runtime,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client of the daemon `config` describes. An unspecified listen address (`0.0.0.0`)
    /// is reached on loopback.
    pub fn for_config(config: &Config) -> Result<Client, ClientError> {
        let token = for_client(&config.admin, &config.data_dir)?.ok_or(ClientError::NoToken)?;
        let mut addr = config.admin.listen;
        if addr.ip().is_unspecified() {
            addr.set_ip(if addr.is_ipv4() {
                std::net::Ipv4Addr::LOCALHOST.into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            });
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(ClientError::Runtime)?;
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .no_proxy()
            .build()
            .map_err(|e| ClientError::Unreachable {
                addr,
                reason: e.to_string(),
            })?;
        Ok(Client {
            addr,
            base: format!("http://{addr}"),
            token,
            http,
            runtime,
        })
    }

    fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, ClientError> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string());
        }
        let addr = self.addr;
        self.runtime.block_on(async move {
            let resp = req.send().await.map_err(|e| ClientError::Unreachable {
                addr,
                reason: error_chain(&e),
            })?;
            let status = resp.status();
            let text = resp
                .text()
                .await
                .map_err(|e| ClientError::BadAnswer(e.to_string()))?;
            let v: Value = serde_json::from_str(&text)
                .map_err(|e| ClientError::BadAnswer(format!("{e}: {text:.200}")))?;
            if status.is_success() {
                Ok(v)
            } else {
                Err(ClientError::Refused {
                    status: status.as_u16(),
                    code: v["code"].as_str().unwrap_or_default().to_string(),
                    message: v["error"].as_str().unwrap_or(&text).to_string(),
                })
            }
        })
    }

    /// `GET /api/v1/status`.
    pub fn status(&self) -> Result<Value, ClientError> {
        self.call(reqwest::Method::GET, "/api/v1/status", None)
    }

    /// Every entry `filter` covers, page by page, in id order.
    pub fn list(&self, filter: &Filter) -> Result<Vec<Entry>, ClientError> {
        let mut query = form_urlencoded::Serializer::new(String::new());
        if let Some(c) = filter.category {
            query.append_pair("category", c.as_str());
        }
        if let Some(p) = filter.partition {
            query.append_pair("partition", &p.to_string());
        }
        if let Some(t) = filter.received_from_ms {
            query.append_pair("received_from_ms", &t.to_string());
        }
        if let Some(t) = filter.received_before_ms {
            query.append_pair("received_before_ms", &t.to_string());
        }
        if let Some(t) = filter.written_before_ms {
            query.append_pair("written_before_ms", &t.max(0).to_string());
        }
        let query = query.finish();
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut path = format!("/api/v1/dead-letters?{query}");
            if let Some(a) = &after {
                path.push_str(&format!("&after={a}"));
            }
            let page = self.call(reqwest::Method::GET, &path, None)?;
            let entries = page["entries"]
                .as_array()
                .ok_or_else(|| ClientError::BadAnswer("a page without entries".into()))?;
            for v in entries {
                let entry = entry_of(v)?;
                if filter.matches(&entry) {
                    out.push(entry);
                }
            }
            match page["next_after"].as_str() {
                Some(next) => after = Some(next.to_string()),
                None => return Ok(out),
            }
        }
    }

    /// One entry.
    pub fn get(&self, id: EntryId) -> Result<Entry, ClientError> {
        let v = self.call(
            reqwest::Method::GET,
            &format!("/api/v1/dead-letters/{id}"),
            None,
        )?;
        entry_of(&v)
    }

    /// Removes what `filter` covers; how many entries went.
    pub fn purge(&self, filter: &Filter) -> Result<usize, ClientError> {
        let v = self.call(
            reqwest::Method::POST,
            "/api/v1/dead-letters/purge",
            Some(selection(filter)),
        )?;
        number(&v, "purged").map(|n| n as usize)
    }

    /// Replays what `filter` covers (everything when it is empty): the summary and one line per
    /// entry that failed again.
    pub fn replay(&self, filter: &Filter) -> Result<(DlqSummary, Vec<String>), ClientError> {
        let v = self.call(
            reqwest::Method::POST,
            "/api/v1/dead-letters/replay",
            Some(selection(filter)),
        )?;
        let summary = DlqSummary {
            tried: number(&v, "tried")?,
            loaded: number(&v, "loaded")?,
            failed_again: number(&v, "failed_again")?,
            rows: number(&v, "rows")?,
        };
        let failures = v["failures"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|l| l.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        Ok((summary, failures))
    }
}

/// The API's selection for `filter` (`{"all": true}` for an empty one).
fn selection(filter: &Filter) -> Value {
    if filter == &Filter::default() {
        return json!({ "all": true });
    }
    json!({
        "ids": filter.ids.iter().map(|i| i.to_string()).collect::<Vec<_>>(),
        "category": filter.category.map(|c| c.as_str()),
        "partition": filter.partition,
        "received_from_ms": filter.received_from_ms,
        "received_before_ms": filter.received_before_ms,
        "written_before_ms": filter.written_before_ms,
    })
}

fn number(v: &Value, key: &str) -> Result<u64, ClientError> {
    v[key]
        .as_u64()
        .ok_or_else(|| ClientError::BadAnswer(format!("no number `{key}` in {v}")))
}

/// Rebuilds an entry from its API view.
fn entry_of(v: &Value) -> Result<Entry, ClientError> {
    use base64::Engine as _;
    let bad = |what: &str| ClientError::BadAnswer(format!("an entry without a valid `{what}`"));
    let text = |key: &str| v[key].as_str().ok_or_else(|| bad(key));
    Ok(Entry {
        id: text("id")?.parse().map_err(|_| bad("id"))?,
        time_ms: v["time_ms"].as_i64().ok_or_else(|| bad("time_ms"))?,
        category: FailureCategory::parse(text("category")?).ok_or_else(|| bad("category"))?,
        messages: v["messages"]
            .as_array()
            .ok_or_else(|| bad("messages"))?
            .iter()
            .map(|m| m.as_str().map(String::from).ok_or_else(|| bad("messages")))
            .collect::<Result<_, _>>()?,
        attempts: v["attempts"]
            .as_u64()
            .and_then(|a| u32::try_from(a).ok())
            .ok_or_else(|| bad("attempts"))?,
        event_payload: v["event_payload"].as_str().map(String::from),
        envelope: base64::engine::general_purpose::STANDARD
            .decode(text("request_base64")?)
            .map_err(|_| bad("request_base64"))?,
    })
}

/// An error with its causes, as one line (reqwest's own message omits them).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
