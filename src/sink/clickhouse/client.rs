//! A small HTTP client for ClickHouse's HTTP interface (reqwest on hyper 1).
//!
//! Why not the official `clickhouse` crate: against 18.16 its typed inserts need validation
//! off, its errors are strings (no code), and its `Inserter` drops rows on failure. What the
//! sink needs is narrow: send a SQL string, or send pre-encoded RowBinary bytes with settings,
//! get the exception code back, and resend identical bytes on retry. That is below.
//!
//! - Compression: bodies are framed as ClickHouse compressed blocks (see [`super::compress`])
//!   with `decompress=1`, which every server version understands. (`Content-Encoding: lz4`
//!   does not exist on 18.16.)
//! - Errors: the code comes from the `X-ClickHouse-Exception-Code` header when present (newer
//!   servers; also checked on 200 answers, which can carry an error), else from the body's
//!   `Code: N.` prefix (18.16 sends no such header).
//! - Auth: HTTP basic auth with `user` and `password` (accepted by all versions).

use bytes::Bytes;
use std::time::Duration;

use super::compress;
use super::{ClickHouseConfig, Compression};

/// Why a call to ClickHouse failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// No connection (refused, reset, DNS, the connection dropped mid-request).
    Connect(String),
    /// No answer within the configured timeout.
    Timeout(String),
    /// The server answered with an error.
    Server {
        /// HTTP status.
        status: u16,
        /// ClickHouse exception code, when the answer had one.
        code: Option<u32>,
        /// The error text (trimmed, at most a few KiB).
        message: String,
    },
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Connect(m) => write!(f, "cannot reach ClickHouse: {m}"),
            CallError::Timeout(m) => write!(f, "ClickHouse did not answer in time: {m}"),
            CallError::Server {
                status,
                code: Some(c),
                message,
            } => write!(f, "ClickHouse error {c} (HTTP {status}): {message}"),
            CallError::Server {
                status, message, ..
            } => write!(f, "ClickHouse HTTP {status}: {message}"),
        }
    }
}

/// What to do about a failed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Retry the same bytes after a capped, jittered backoff, forever.
    Transient,
    /// The data is bad: split the batch to find the rows.
    BadData,
    /// The configuration or server setup is wrong (auth, unknown database/table/setting):
    /// pause, log loudly, keep retrying slowly; dead-letter nothing.
    Config,
    /// The table changed: re-read its columns, re-encode, retry.
    Schema,
}

impl ErrorClass {
    /// The `result` label of `metrics::publish::insert_attempt`.
    pub fn label(self) -> &'static str {
        match self {
            ErrorClass::Transient => "transient",
            ErrorClass::BadData => "bad_data",
            ErrorClass::Config => "config",
            ErrorClass::Schema => "schema",
        }
    }
}

/// Exception codes (ClickHouse `src/Common/ErrorCodes.cpp`) by what the sink does about them.
pub mod codes {
    /// Retry: the server is busy, overloaded, or the network failed.
    pub const TRANSIENT: &[u32] = &[
        159, // TIMEOUT_EXCEEDED (ambiguous: retried with the same token)
        202, // TOO_MANY_SIMULTANEOUS_QUERIES
        209, // SOCKET_TIMEOUT
        210, // NETWORK_ERROR
        241, // MEMORY_LIMIT_EXCEEDED
        242, // TABLE_IS_READ_ONLY
        252, // TOO_MANY_PARTS
        236, // ABORTED
        394, // QUERY_WAS_CANCELLED
        439, // CANNOT_SCHEDULE_TASK
        999, // KEEPER_EXCEPTION
        225, // NO_ZOOKEEPER
        319, // UNKNOWN_STATUS_OF_INSERT
        76,  // CANNOT_OPEN_FILE
        75,  // CANNOT_WRITE_TO_FILE_DESCRIPTOR
        243, // NOT_ENOUGH_SPACE
    ];
    /// Split the batch: a row's value is unacceptable.
    pub const BAD_DATA: &[u32] = &[
        6,   // CANNOT_PARSE_TEXT
        26,  // CANNOT_PARSE_QUOTED_STRING
        27,  // CANNOT_PARSE_INPUT_ASSERTION_FAILED
        32,  // ATTEMPT_TO_READ_AFTER_EOF
        33,  // CANNOT_READ_ALL_DATA
        38,  // CANNOT_PARSE_DATE
        41,  // CANNOT_PARSE_DATETIME
        53,  // TYPE_MISMATCH
        69,  // ARGUMENT_OUT_OF_BOUND
        70,  // CANNOT_CONVERT_TYPE
        72,  // CANNOT_PARSE_NUMBER
        117, // INCORRECT_DATA
        131, // TOO_LARGE_STRING_SIZE
        321, // VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
        376, // CANNOT_PARSE_UUID
        469, // VIOLATED_CONSTRAINT
        691, // UNKNOWN_ELEMENT_OF_ENUM
        36,  // BAD_ARGUMENTS (e.g. a DEFAULT/CHECK expression refusing a value)
    ];
    /// Pause and alert: only an operator can fix these.
    pub const CONFIG: &[u32] = &[
        60,  // UNKNOWN_TABLE
        81,  // UNKNOWN_DATABASE
        115, // UNKNOWN_SETTING
        62,  // SYNTAX_ERROR (our generated query: a bug or an unsupported server, never the rows)
        73,  // UNKNOWN_FORMAT
        164, // READONLY (the user may not write)
        192, // UNKNOWN_USER
        193, // WRONG_PASSWORD
        194, // REQUIRED_PASSWORD
        195, // IP_ADDRESS_NOT_ALLOWED
        497, // ACCESS_DENIED
        516, // AUTHENTICATION_FAILED
        40,  // CHECKSUM_DOESNT_MATCH (our compressed framing: not the rows' fault)
    ];
    /// Re-read the table: a column we send no longer exists.
    pub const SCHEMA: &[u32] = &[
        16, // NO_SUCH_COLUMN_IN_TABLE
        47, // UNKNOWN_IDENTIFIER
        10, // NOT_FOUND_COLUMN_IN_BLOCK
        8,  // THERE_IS_NO_COLUMN
    ];
}

impl CallError {
    /// What the sink should do about it.
    pub fn class(&self) -> ErrorClass {
        match self {
            CallError::Connect(_) | CallError::Timeout(_) => ErrorClass::Transient,
            CallError::Server { status, code, .. } => {
                if let Some(c) = code {
                    if codes::CONFIG.contains(c) {
                        return ErrorClass::Config;
                    }
                    if codes::SCHEMA.contains(c) {
                        return ErrorClass::Schema;
                    }
                    if codes::BAD_DATA.contains(c) {
                        return ErrorClass::BadData;
                    }
                    if codes::TRANSIENT.contains(c) {
                        return ErrorClass::Transient;
                    }
                }
                match status {
                    // Parse errors of codes not listed, and QUERY_IS_TOO_LARGE: split.
                    400 | 413 => ErrorClass::BadData,
                    401 | 403 | 404 => ErrorClass::Config,
                    _ => ErrorClass::Transient,
                }
            }
        }
    }

    /// The `code` metric label: the exception code, `connect`, `timeout`, or `0`.
    pub fn code_label(&self) -> String {
        match self {
            CallError::Connect(_) => "connect".into(),
            CallError::Timeout(_) => "timeout".into(),
            CallError::Server { code: Some(c), .. } => c.to_string(),
            CallError::Server { .. } => "0".into(),
        }
    }

    /// The server's message, or the transport error.
    pub fn message(&self) -> &str {
        match self {
            CallError::Connect(m) | CallError::Timeout(m) => m,
            CallError::Server { message, .. } => message,
        }
    }
}

/// A connection pool to one ClickHouse server.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    url: String,
    user: String,
    password: String,
    lz4: bool,
}

/// Longest error text kept.
const MAX_MESSAGE: usize = 4096;

impl Client {
    /// A client for `config` (no connection is made yet).
    pub fn new(config: &ClickHouseConfig) -> Result<Client, String> {
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout.0)
            .timeout(config.request_timeout.0)
            // Old servers close idle keep-alive connections after 3 s: never reuse one that
            // old, or the next request races the server's close.
            .pool_idle_timeout(Duration::from_secs(2))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Client {
            http,
            url: config.url.trim_end_matches('/').to_string() + "/",
            user: config.user.clone(),
            password: config.password.clone(),
            lz4: config.compression == Compression::Lz4,
        })
    }

    /// Runs `sql` (sent as the body) and returns the answer's text.
    pub async fn query(&self, sql: &str) -> Result<String, CallError> {
        let req = self.request(&[]).body(sql.to_string());
        self.send(req).await
    }

    /// Runs `sql` with `settings` as URL parameters and returns the answer's text, waiting at
    /// most `timeout` for it.
    pub async fn query_with(
        &self,
        sql: &str,
        settings: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<String, CallError> {
        let req = self
            .request(settings)
            .timeout(timeout)
            .body(sql.to_string());
        self.send(req).await
    }

    /// Runs the INSERT `query` (e.g. `INSERT INTO t (a) FORMAT RowBinary`) with `data` as its
    /// input, compressed per the configuration, plus `settings` as URL parameters.
    pub async fn insert(
        &self,
        query: &str,
        settings: &[(&str, &str)],
        data: &[u8],
    ) -> Result<(), CallError> {
        let body = if self.lz4 {
            Bytes::from(compress::compress(data, true))
        } else {
            Bytes::copy_from_slice(data)
        };
        self.insert_body(query, settings, body).await
    }

    /// Whether insert bodies are ClickHouse LZ4 blocks (`clickhouse.compression = "lz4"`).
    pub fn lz4(&self) -> bool {
        self.lz4
    }

    /// Sends `body` as it is: ClickHouse compressed blocks when [`Client::lz4`], else raw
    /// RowBinary (what [`Client::insert`] would make of the rows).
    pub async fn insert_body(
        &self,
        query: &str,
        settings: &[(&str, &str)],
        body: Bytes,
    ) -> Result<(), CallError> {
        let mut params: Vec<(&str, &str)> = vec![("query", query)];
        if self.lz4 {
            params.push(("decompress", "1"));
        }
        params.extend_from_slice(settings);
        let req = self.request(&params).body(body);
        self.send(req).await.map(|_| ())
    }

    fn request(&self, params: &[(&str, &str)]) -> reqwest::RequestBuilder {
        self.http
            .post(&self.url)
            .query(params)
            .basic_auth(&self.user, Some(&self.password))
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<String, CallError> {
        let resp = req.send().await.map_err(transport)?;
        let status = resp.status().as_u16();
        let header_code = resp
            .headers()
            .get("x-clickhouse-exception-code")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u32>().ok());
        let text = resp.text().await.map_err(transport)?;
        if status == 200 && header_code.is_none() {
            return Ok(text);
        }
        let code = header_code.or_else(|| body_code(&text));
        Err(CallError::Server {
            status,
            code,
            message: truncate(text.trim(), MAX_MESSAGE),
        })
    }
}

fn transport(e: reqwest::Error) -> CallError {
    let msg = error_chain(&e);
    if e.is_timeout() {
        CallError::Timeout(msg)
    } else {
        CallError::Connect(msg)
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// `Code: 60, e.displayText() = …` (18.x) or `Code: 60. DB::Exception: …` (newer) → 60.
pub fn body_code(text: &str) -> Option<u32> {
    let rest = &text[text.find("Code: ")? + 6..];
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(status: u16, code: Option<u32>) -> CallError {
        CallError::Server {
            status,
            code,
            message: String::new(),
        }
    }

    #[test]
    fn codes_are_read_from_old_and_new_bodies() {
        assert_eq!(
            body_code("Code: 60, e.displayText() = DB::Exception: Table x doesn't exist."),
            Some(60)
        );
        assert_eq!(
            body_code("Code: 252. DB::Exception: Too many parts"),
            Some(252)
        );
        assert_eq!(body_code("nothing"), None);
    }

    #[test]
    fn errors_are_classified_by_code_before_status() {
        assert_eq!(server(500, Some(252)).class(), ErrorClass::Transient);
        assert_eq!(server(500, Some(241)).class(), ErrorClass::Transient);
        assert_eq!(server(400, Some(27)).class(), ErrorClass::BadData);
        assert_eq!(server(404, Some(60)).class(), ErrorClass::Config);
        assert_eq!(server(401, Some(193)).class(), ErrorClass::Config);
        assert_eq!(server(400, Some(16)).class(), ErrorClass::Schema);
        assert_eq!(server(503, None).class(), ErrorClass::Transient);
        assert_eq!(server(500, None).class(), ErrorClass::Transient);
        assert_eq!(server(413, None).class(), ErrorClass::BadData);
        assert_eq!(
            CallError::Connect("x".into()).class(),
            ErrorClass::Transient
        );
        assert_eq!(CallError::Timeout("x".into()).code_label(), "timeout");
    }

    #[test]
    fn no_code_is_in_two_classes() {
        let lists = [
            codes::TRANSIENT,
            codes::BAD_DATA,
            codes::CONFIG,
            codes::SCHEMA,
        ];
        for (i, a) in lists.iter().enumerate() {
            for b in &lists[i + 1..] {
                for c in a.iter() {
                    assert!(!b.contains(c), "{c}");
                }
            }
        }
    }
}
