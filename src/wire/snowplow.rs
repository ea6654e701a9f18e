//! Snowplow tracker-protocol adapters: a stored request becomes per-event parameter maps.
//!
//! This is the first half of publishing a Snowplow request (the second is
//! [`crate::publish::enrich`]). It follows Snowplow's enrich adapters
//! (`adapters/registry/snowplow/{Tp1,Tp2,Redirect}Adapter.scala` in snowplow/enrich):
//!
//! - `GET /i`, `GET /ice.png` and `GET /com.snowplowanalytics.snowplow/tp1`: the query string is
//!   one event.
//! - `/com.snowplowanalytics.snowplow/tp2`: a POST body is a `payload_data` self-describing JSON
//!   whose `data` array holds one object of string values per event; the URL's query parameters
//!   are merged into every event and win on conflict. A tp2 request without a body is one event
//!   from its query string (that is how trackers send tp2 GETs).
//! - `/r/tp2`: the redirect adapter (the target `u` becomes a `uri_redirect` event or entity).
//!
//! Query strings are decoded as `application/x-www-form-urlencoded` (`+` is a space); repeated
//! keys keep the last value. Base64 (`cx`, `ue_px`) is decoded leniently by [`decode_base64`]:
//! standard and URL-safe alphabets, padding optional.
//!
//! Every violation is a [`Failure`] with the category Snowplow's bad rows use (§5): a bad event
//! in a POST batch fails alone, the others go on.

use std::borrow::Cow;

use crate::envelope::Envelope;
use crate::event::{Failure, FailureCategory};
use crate::wire::route::Route;
use crate::wire::text::{decode_base64, form_decode};

/// One event's raw parameters, sorted by key (the order fingerprints and dead letters use),
/// each key once. Keys and values borrow from the stored request wherever they are its bytes
/// unchanged (JSON strings without escapes, query parts without `%` or `+`), so a typical event
/// allocates no text here.
///
/// A sorted vector rather than a map: an event has tens of parameters, gathered once and then
/// only read, so one allocation sorted once beats a B-tree's nodes built by as many searches.
/// Each parameter carries its key's first eight bytes as an integer ([`key_order`]), so
/// sorting and searching compare integers and look at the key's text only when those tie.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawEvent<'a>(Vec<Param<'a>>);

/// One parameter of a [`RawEvent`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param<'a> {
    /// [`key_order`] of `key`.
    order: u64,
    key: Cow<'a, str>,
    value: Cow<'a, str>,
}

impl<'a> Param<'a> {
    /// `key`'s parameter.
    pub fn new(key: Cow<'a, str>, value: Cow<'a, str>) -> Param<'a> {
        Param {
            order: key_order(&key),
            key,
            value,
        }
    }

    /// [`short_key`] of `key`, from the order already computed.
    fn short_key(&self) -> u64 {
        if self.key.len() > 7 {
            u64::MAX
        } else {
            self.order | self.key.len() as u64
        }
    }

    /// Orders parameters by key, bytewise (as `str`'s `Ord` does).
    fn cmp_key(&self, order: u64, key: &str) -> std::cmp::Ordering {
        self.order
            .cmp(&order)
            .then_with(|| self.key.as_ref().cmp(key))
    }
}

/// A key's first eight bytes, big-endian, zero-padded: integers in the keys' bytewise order
/// wherever they differ (a shorter key pads with the smallest byte), equal only for keys that
/// agree in their first eight bytes up to padding, which the key's text then decides.
pub const fn key_order(key: &str) -> u64 {
    let bytes = key.as_bytes();
    let mut word = [0u8; 8];
    let mut i = 0;
    while i < bytes.len() && i < 8 {
        word[i] = bytes[i];
        i += 1;
    }
    u64::from_be_bytes(word)
}

/// A parameter name of at most seven bytes as one integer: its [`key_order`] with its length in
/// the low byte, so distinct names give distinct integers, ordered as the names are (bytewise);
/// `u64::MAX` (no such name) for longer ones. Snowplow's parameter names are all this short, so
/// a set of them is a sorted array of integers.
pub const fn short_key(key: &str) -> u64 {
    if key.len() > 7 {
        return u64::MAX;
    }
    key_order(key) | key.len() as u64
}

impl<'a> RawEvent<'a> {
    /// No parameters.
    pub fn new() -> RawEvent<'a> {
        RawEvent(Vec::new())
    }

    /// The parameters of `pairs`, in any order; a key given more than once keeps its last
    /// value (as repeated query keys and JSON object keys do).
    pub fn from_pairs(pairs: Vec<(Cow<'a, str>, Cow<'a, str>)>) -> RawEvent<'a> {
        Self::from_params(pairs.into_iter().map(|(k, v)| Param::new(k, v)).collect())
    }

    /// [`RawEvent::from_pairs`] of parameters made with [`Param::new`].
    pub fn from_params(mut params: Vec<Param<'a>>) -> RawEvent<'a> {
        // Stable, so a repeated key's values stay in the order given.
        params.sort_by(|a, b| a.cmp_key(b.order, &b.key));
        // `dedup_by` keeps the first of a run: hand it the later value before dropping it.
        params.dedup_by(|later, kept| {
            let same = later.order == kept.order && later.key == kept.key;
            if same {
                std::mem::swap(&mut later.value, &mut kept.value);
            }
            same
        });
        RawEvent(params)
    }

    fn find(&self, key: &str) -> Result<usize, usize> {
        let order = key_order(key);
        self.0.binary_search_by(|p| p.cmp_key(order, key))
    }

    /// Sets `key` to `value`; the value it replaces, if any.
    pub fn insert(&mut self, key: Cow<'a, str>, value: Cow<'a, str>) -> Option<Cow<'a, str>> {
        match self.find(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].value, value)),
            Err(i) => {
                self.0.insert(i, Param::new(key, value));
                None
            }
        }
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&Cow<'a, str>> {
        self.find(key).ok().map(|i| &self.0[i].value)
    }

    /// Whether `key` has a value.
    pub fn contains_key(&self, key: &str) -> bool {
        self.find(key).is_ok()
    }

    /// Takes `key`'s value out.
    pub fn remove(&mut self, key: &str) -> Option<Cow<'a, str>> {
        self.find(key).ok().map(|i| self.0.remove(i).value)
    }

    /// The parameters, sorted by key.
    pub fn iter(&self) -> impl Iterator<Item = (&Cow<'a, str>, &Cow<'a, str>)> {
        self.0.iter().map(|p| (&p.key, &p.value))
    }

    /// The keys, sorted.
    pub fn keys(&self) -> impl Iterator<Item = &Cow<'a, str>> {
        self.0.iter().map(|p| &p.key)
    }

    /// The values, in key order.
    pub fn values(&self) -> impl Iterator<Item = &Cow<'a, str>> {
        self.0.iter().map(|p| &p.value)
    }

    /// How many parameters there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether every key is one of [`PAYLOAD_DATA_KEYS`] (by [`short_key`], no text compared).
    fn has_only_payload_data_keys(&self) -> bool {
        self.0
            .iter()
            .all(|p| PAYLOAD_DATA_ORDERS.binary_search(&p.short_key()).is_ok())
    }

    /// Each parameter with its name's [`short_key`] (`u64::MAX` for longer names).
    pub fn short_keys(&self) -> impl Iterator<Item = (u64, &Cow<'a, str>)> + '_ {
        self.0.iter().map(|p| (p.short_key(), &p.value))
    }
}

impl<'a, 'p> IntoIterator for &'p RawEvent<'a> {
    type Item = (&'p Cow<'a, str>, &'p Cow<'a, str>);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'p, Param<'a>>,
        fn(&'p Param<'a>) -> (&'p Cow<'a, str>, &'p Cow<'a, str>),
    >;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|p| (&p.key, &p.value))
    }
}

impl<'a> std::ops::Index<&str> for RawEvent<'a> {
    type Output = Cow<'a, str>;
    /// The value of `key`; panics when there is none (like a map's index).
    fn index(&self, key: &str) -> &Cow<'a, str> {
        self.get(key)
            .unwrap_or_else(|| panic!("no parameter `{key}`"))
    }
}

/// A JSON object, keys in order (dead letters show the parameters this way).
impl serde::Serialize for RawEvent<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

/// Room for this many parameters is reserved for each event of a POST body, so most need one
/// allocation (the JavaScript tracker sends 20–40).
const PAIRS_CAPACITY: usize = 32;

/// The schema family every POST body must carry (any `1-0-*` revision).
const PAYLOAD_DATA_PREFIX: &str =
    "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-";

/// The keys a POST body's events may carry: the properties of `payload_data` 1-0-4
/// (`additionalProperties: false`; so `cv` and the legacy `ev_*` keys are refused in bodies).
pub const PAYLOAD_DATA_KEYS: &[&str] = &[
    "tna", "aid", "p", "dtm", "tz", "e", "tid", "eid", "tv", "duid", "nuid", "uid", "vid", "ip",
    "res", "url", "page", "refr", "fp", "ctype", "cookie", "lang", "f_pdf", "f_qt", "f_realp",
    "f_wma", "f_dir", "f_fla", "f_java", "f_gears", "f_ag", "cd", "ds", "cs", "vp", "mac",
    "pp_mix", "pp_max", "pp_miy", "pp_may", "ad_ba", "ad_ca", "ad_ad", "ad_uid", "tr_id", "tr_af",
    "tr_tt", "tr_tx", "tr_sh", "tr_ci", "tr_st", "tr_co", "tr_cu", "ti_id", "ti_sk", "ti_nm",
    "ti_na", "ti_ca", "ti_pr", "ti_qu", "ti_cu", "sa", "sn", "st", "sp", "se_ca", "se_ac", "se_la",
    "se_pr", "se_va", "ue_na", "ue_pr", "ue_px", "co", "cx", "ua", "tnuid", "stm", "sid", "ttm",
];

/// [`short_key`] of each of [`PAYLOAD_DATA_KEYS`] (all of at most seven bytes), sorted.
static PAYLOAD_DATA_ORDERS: std::sync::LazyLock<Vec<u64>> = std::sync::LazyLock::new(|| {
    let mut orders: Vec<u64> = PAYLOAD_DATA_KEYS
        .iter()
        .map(|k| {
            assert!(
                k.len() <= 7,
                "payload_data key {k:?} is longer than seven bytes"
            );
            short_key(k)
        })
        .collect();
    orders.sort_unstable();
    orders
});

/// Every event must carry these (payload_data's `required`; sluice asks the same of GETs).
pub const REQUIRED_KEYS: [&str; 3] = ["tv", "p", "e"];

/// How strictly POST bodies are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeOptions {
    /// Refuse body keys outside [`PAYLOAD_DATA_KEYS`] (Snowplow's behaviour).
    pub strict_body_keys: bool,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions {
            strict_body_keys: true,
        }
    }
}

/// What a stored request decodes to.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded<'a> {
    /// The whole request is unusable: one failure, no events.
    Request(Failure),
    /// One entry per event, in request order: its parameters, or why it failed.
    Events(Vec<Result<RawEvent<'a>, Failure>>),
}

/// A failure of the whole request (no event index, no event payload).
pub fn request_failure(category: FailureCategory, message: impl Into<String>) -> Failure {
    Failure {
        category,
        messages: vec![message.into()],
        event_index: None,
        event_payload: None,
    }
}

/// A failure of one event, carrying its index and its raw parameters as JSON.
pub fn event_failure(
    category: FailureCategory,
    messages: Vec<String>,
    index: usize,
    params: &RawEvent<'_>,
) -> Failure {
    Failure {
        category,
        messages,
        event_index: Some(u32::try_from(index).unwrap_or(u32::MAX)),
        event_payload: Some(params_json(params)),
    }
}

/// The parameters as a JSON object (for dead letters).
pub fn params_json(params: &RawEvent<'_>) -> String {
    serde_json::to_string(params).unwrap_or_else(|_| "{}".to_owned())
}

/// Decodes a stored Snowplow request into per-event parameters.
///
/// Dispatches on the envelope's route (`/i`, `/ice.png`, tp1, tp2, `/r/tp2`); other
/// `/{vendor}/{version}` paths are adapter failures (no webhook adapters yet), anything else is a
/// collector payload format violation.
pub fn decode(envelope: &Envelope, options: DecodeOptions) -> Decoded<'_> {
    let route = envelope.route.as_str();
    let query = envelope.query.as_deref().unwrap_or("");
    match Route::of_template(route) {
        Some(Route::Pixel | Route::IcePixel | Route::Tp1) => return decode_get(query, route),
        Some(Route::Tp2) => {
            let content_type = envelope.header("content-type");
            return decode_tp2(content_type, &envelope.body, query, options);
        }
        Some(Route::Redirect) => return decode_redirect(query),
        _ => {}
    }
    let path = envelope.path.as_str();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if path.starts_with('/') && segments.len() == 2 && segments.iter().all(|s| !s.is_empty()) {
        return Decoded::Request(request_failure(
            FailureCategory::AdapterFailure,
            format!(
                "the vendor/version combination {}/{} is not supported (route {route})",
                segments[0], segments[1]
            ),
        ));
    }
    Decoded::Request(request_failure(
        FailureCategory::CollectorPayloadFormatViolation,
        format!(
            "path {path:?} (route {route:?}) is neither /vendor/version nor one of /i, /ice.png, /r/tp2"
        ),
    ))
}

/// A GET-style request: the query string is one event.
fn decode_get<'a>(query: &'a str, route: &str) -> Decoded<'a> {
    if query.is_empty() {
        return Decoded::Request(request_failure(
            FailureCategory::AdapterFailure,
            format!("{route} request has an empty query string: there is no event in it"),
        ));
    }
    match parse_query(query) {
        Ok(params) => Decoded::Events(vec![require_keys(params, 0)]),
        Err(message) => Decoded::Request(request_failure(
            FailureCategory::CollectorPayloadFormatViolation,
            message,
        )),
    }
}

/// `/r/tp2`: builds the `uri_redirect` event (or entity) from `u`, as enrich's
/// `RedirectAdapter.scala` does.
fn decode_redirect(query: &str) -> Decoded<'_> {
    let mut params = match parse_query(query) {
        Ok(p) => p,
        Err(message) => {
            return Decoded::Request(request_failure(
                FailureCategory::CollectorPayloadFormatViolation,
                message,
            ))
        }
    };
    let Some(target) = params.remove("u") else {
        return Decoded::Request(request_failure(
            FailureCategory::TrackerProtocolViolation,
            "redirect request has no `u` parameter (the target URI)",
        ));
    };
    let redirect = serde_json::json!({
        "schema": "iglu:com.snowplowanalytics.snowplow/uri_redirect/jsonschema/1-0-0",
        "data": {"uri": target.as_ref()},
    });
    if params.contains_key("e") {
        // Prepend the redirect to the existing entities.
        let existing = if let Some(co) = params.get("co") {
            serde_json::from_str::<serde_json::Value>(co).ok()
        } else if let Some(cx) = params.get("cx") {
            decode_base64(cx)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
        } else {
            None
        };
        let mut items = vec![redirect];
        if let Some(serde_json::Value::Array(more)) = existing.as_ref().and_then(|v| v.get("data"))
        {
            items.extend(more.iter().cloned());
        }
        let contexts = serde_json::json!({
            "schema": "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-1",
            "data": items,
        })
        .to_string();
        params.remove("cx");
        params.insert("co".into(), contexts.into());
    } else {
        let event = serde_json::json!({
            "schema": "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0",
            "data": redirect,
        });
        params.insert("e".into(), "ue".into());
        params.insert("ue_pr".into(), event.to_string().into());
    }
    params.insert("tv".into(), "r-tp2".into());
    if !params.contains_key("p") {
        params.insert("p".into(), "web".into());
    }
    Decoded::Events(vec![require_keys(params, 0)])
}

/// tp2: a POST body of `payload_data`, or (no body) the query string as one event.
fn decode_tp2<'a>(
    content_type: Option<&str>,
    body: &'a [u8],
    query: &'a str,
    options: DecodeOptions,
) -> Decoded<'a> {
    let query_params = match parse_query(query) {
        Ok(p) => p,
        Err(message) => {
            return Decoded::Request(request_failure(
                FailureCategory::CollectorPayloadFormatViolation,
                message,
            ))
        }
    };
    if body.is_empty() {
        if query_params.is_empty() {
            return Decoded::Request(request_failure(
                FailureCategory::TrackerProtocolViolation,
                "tp2 request has an empty body and an empty query string: there is no event in it",
            ));
        }
        return Decoded::Events(vec![require_keys(query_params, 0)]);
    }
    let items = match decode_tp2_body(content_type, body, options) {
        Ok(items) => items,
        Err(failure) => return Decoded::Request(failure),
    };
    let events = items
        .into_iter()
        .enumerate()
        .map(|(index, item)| {
            let mut params = item?;
            for (k, v) in &query_params {
                params.insert(k.clone(), v.clone());
            }
            require_keys(params, index)
        })
        .collect();
    Decoded::Events(events)
}

/// Decodes a tp2 POST body: checks the content type, parses the `payload_data` JSON and turns
/// each element of `data` into parameters. A failure of the whole body is `Err`; an element
/// that breaks the rules is an `Err` entry of its own (index = its position in `data`).
/// Required keys are not checked here (query parameters may still supply them).
pub fn decode_tp2_body<'a>(
    content_type: Option<&str>,
    body: &'a [u8],
    options: DecodeOptions,
) -> Result<Vec<Result<RawEvent<'a>, Failure>>, Failure> {
    let tpv = |m: String| request_failure(FailureCategory::TrackerProtocolViolation, m);
    match content_type {
        None => {
            return Err(tpv(
                "tp2 request has a body but no Content-Type; expected application/json".into(),
            ))
        }
        Some(ct) if !is_json_content_type(ct) => {
            return Err(tpv(format!(
                "tp2 Content-Type {ct:?} is not supported; expected application/json (optionally with charset=utf-8)"
            )))
        }
        Some(_) => {}
    }
    if let Some(items) = decode_tp2_body_fast(body, options) {
        return Ok(items);
    }
    decode_tp2_body_general(body, options)
}

/// [`decode_tp2_body`] after the content type, without the fast path: through a
/// `serde_json::Value`, for any body (and the failure messages of bad ones).
fn decode_tp2_body_general(
    body: &[u8],
    options: DecodeOptions,
) -> Result<Vec<Result<RawEvent<'_>, Failure>>, Failure> {
    let tpv = |m: String| request_failure(FailureCategory::TrackerProtocolViolation, m);
    let json: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| tpv(format!("tp2 body is not valid JSON: {e}")))?;
    let obj = json.as_object().ok_or_else(|| {
        tpv(
            "tp2 body is not a self-describing JSON: expected an object with `schema` and `data`"
                .into(),
        )
    })?;
    let schema = obj
        .get("schema")
        .and_then(|s| s.as_str())
        .ok_or_else(|| tpv("tp2 body is not a self-describing JSON: no `schema` string".into()))?;
    if !schema.starts_with(PAYLOAD_DATA_PREFIX) || !is_iglu_uri(schema) {
        return Err(tpv(format!(
            "tp2 body schema {schema:?} is not iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-*"
        )));
    }
    let data = obj
        .get("data")
        .ok_or_else(|| tpv("tp2 body has no `data` array".into()))?;
    let items = data
        .as_array()
        .ok_or_else(|| tpv("tp2 body `data` is not an array".into()))?;
    if items.is_empty() {
        return Err(tpv(
            "tp2 body `data` is empty: payload_data needs at least one event".into(),
        ));
    }
    Ok(items
        .iter()
        .enumerate()
        .map(|(index, item)| decode_item(index, item, options))
        .collect())
}

/// A JSON string borrowed from the input when it has no escapes, else a copy.
#[derive(serde::Deserialize)]
pub(crate) struct BorrowedText<'a>(#[serde(borrow)] pub(crate) Cow<'a, str>);

/// The common case of [`decode_tp2_body`] without the intermediate `serde_json::Value`: a valid
/// `payload_data` body whose every event is an object of string values under allowed keys
/// parses straight into the parameter maps, in one pass. `None` whenever anything is off (the
/// body, any event, any key): the caller then takes the general path, which gives the same
/// results for good bodies and the failures and messages for bad ones. Every value of a body
/// taken here is a string, so the general path would parse it too (no number out of range, no
/// deep nesting), and a key given twice keeps its last value on both paths.
///
/// A hand-written scanner for exactly this shape ([`Tp2Scanner`]) rather than a serde
/// `Deserialize`: it checks the body's UTF-8 once, finds each string's end eight bytes at a
/// time and borrows it, and hands the rare string with escapes to `serde_json` itself, so what
/// it accepts it reads as `serde_json` does. It accepts a subset of what `serde_json` accepts.
fn decode_tp2_body_fast(
    body: &[u8],
    options: DecodeOptions,
) -> Option<Vec<Result<RawEvent<'_>, Failure>>> {
    let mut scan = Tp2Scanner {
        text: std::str::from_utf8(body).ok()?,
        at: 0,
    };
    let (mut schema, mut data) = (None, None);
    scan.skip_ws();
    scan.eat(b'{')?;
    loop {
        scan.skip_ws();
        let key = scan.string()?;
        scan.skip_ws();
        scan.eat(b':')?;
        scan.skip_ws();
        match &*key {
            "schema" if schema.is_none() => schema = Some(scan.string()?),
            "data" if data.is_none() => data = Some(scan.events()?),
            _ => return None,
        }
        scan.skip_ws();
        match scan.next()? {
            b',' => {}
            b'}' => break,
            _ => return None,
        }
    }
    scan.skip_ws();
    let (schema, data) = (schema?, data?);
    if scan.at != body.len()
        || data.is_empty()
        || !schema.starts_with(PAYLOAD_DATA_PREFIX)
        || !is_iglu_uri(&schema)
    {
        return None;
    }
    if options.strict_body_keys && !data.iter().all(RawEvent::has_only_payload_data_keys) {
        return None;
    }
    Some(data.into_iter().map(Ok).collect())
}

/// For the fuzz target: panics unless the fast path, wherever it takes `body`, gives exactly
/// what the general path gives (in both key modes).
#[doc(hidden)]
pub fn assert_tp2_fast_path_agrees(body: &[u8]) {
    for strict_body_keys in [false, true] {
        let options = DecodeOptions { strict_body_keys };
        if let Some(fast) = decode_tp2_body_fast(body, options) {
            assert_eq!(Ok(fast), decode_tp2_body_general(body, options));
        }
    }
}

/// The reader of [`decode_tp2_body_fast`]: a position in a body known to be UTF-8. Each method
/// returns `None` on anything it does not take (the fast path then steps aside).
struct Tp2Scanner<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Tp2Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.at += 1;
        Some(b)
    }

    fn eat(&mut self, want: u8) -> Option<()> {
        (self.next()? == want).then_some(())
    }

    /// JSON's whitespace (RFC 8259: space, tab, line feed, carriage return).
    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    /// The `data` array: objects of strings.
    fn events(&mut self) -> Option<Vec<RawEvent<'a>>> {
        self.eat(b'[')?;
        let mut events = Vec::new();
        self.skip_ws();
        if self.peek()? == b']' {
            self.at += 1;
            return Some(events);
        }
        loop {
            self.skip_ws();
            events.push(self.event()?);
            self.skip_ws();
            match self.next()? {
                b',' => {}
                b']' => return Some(events),
                _ => return None,
            }
        }
    }

    /// One event: an object whose values are all strings; a repeated key keeps its last value.
    fn event(&mut self) -> Option<RawEvent<'a>> {
        self.eat(b'{')?;
        // Tracker events carry tens of parameters: one allocation for most.
        let mut pairs = Vec::with_capacity(PAIRS_CAPACITY);
        self.skip_ws();
        if self.peek()? == b'}' {
            self.at += 1;
            return Some(RawEvent::from_params(pairs));
        }
        loop {
            self.skip_ws();
            let key = self.string()?;
            self.skip_ws();
            self.eat(b':')?;
            self.skip_ws();
            let value = self.string()?;
            pairs.push(Param::new(key, value));
            self.skip_ws();
            match self.next()? {
                b',' => {}
                b'}' => return Some(RawEvent::from_params(pairs)),
                _ => return None,
            }
        }
    }

    /// A JSON string: borrowed from the body when it has no escapes, else decoded by
    /// `serde_json` (which refuses what it would refuse in the general path: bad escapes, lone
    /// surrogates, control characters). A raw control character is refused here too.
    fn string(&mut self) -> Option<Cow<'a, str>> {
        self.eat(b'"')?;
        let start = self.at;
        let bytes = self.text.as_bytes();
        let end = start + find_quote_backslash_or_control(&bytes[start..])?;
        match bytes[end] {
            b'"' => {
                self.at = end + 1;
                Some(Cow::Borrowed(&self.text[start..end]))
            }
            b'\\' => {
                // The closing quote: the first one not escaped (a backslash escapes one byte).
                let mut i = end;
                loop {
                    match *bytes.get(i)? {
                        b'\\' => i += 2,
                        b'"' => break,
                        _ => i += 1,
                    }
                }
                self.at = i + 1;
                let decoded: String = serde_json::from_str(&self.text[start - 1..=i]).ok()?;
                Some(Cow::Owned(decoded))
            }
            _ => None,
        }
    }
}

/// The index of the first `"`, `\` or control character (below 0x20) of `bytes`, eight bytes
/// at a time: a byte's high bit in `found` marks a match, and the lowest marked byte is always a
/// true one (a borrow only carries upwards from a byte that matched).
fn find_quote_backslash_or_control(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::MAX / 255;
    const HIGHS: u64 = ONES << 7;
    let has_zero = |x: u64| x.wrapping_sub(ONES) & !x;
    let mut chunks = bytes.chunks_exact(8);
    let mut offset = 0;
    for chunk in &mut chunks {
        let word = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        let found = (word.wrapping_sub(ONES * 0x20) & !word
            | has_zero(word ^ (ONES * u64::from(b'"')))
            | has_zero(word ^ (ONES * u64::from(b'\\'))))
            & HIGHS;
        if found != 0 {
            return Some(offset + found.trailing_zeros() as usize / 8);
        }
        offset += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
        .map(|i| offset + i)
}

/// True for the keys of [`PAYLOAD_DATA_KEYS`] (a `match` rather than a scan of the list).
pub fn is_payload_data_key(key: &str) -> bool {
    matches!(
        key,
        "tna"
            | "aid"
            | "p"
            | "dtm"
            | "tz"
            | "e"
            | "tid"
            | "eid"
            | "tv"
            | "duid"
            | "nuid"
            | "uid"
            | "vid"
            | "ip"
            | "res"
            | "url"
            | "page"
            | "refr"
            | "fp"
            | "ctype"
            | "cookie"
            | "lang"
            | "f_pdf"
            | "f_qt"
            | "f_realp"
            | "f_wma"
            | "f_dir"
            | "f_fla"
            | "f_java"
            | "f_gears"
            | "f_ag"
            | "cd"
            | "ds"
            | "cs"
            | "vp"
            | "mac"
            | "pp_mix"
            | "pp_max"
            | "pp_miy"
            | "pp_may"
            | "ad_ba"
            | "ad_ca"
            | "ad_ad"
            | "ad_uid"
            | "tr_id"
            | "tr_af"
            | "tr_tt"
            | "tr_tx"
            | "tr_sh"
            | "tr_ci"
            | "tr_st"
            | "tr_co"
            | "tr_cu"
            | "ti_id"
            | "ti_sk"
            | "ti_nm"
            | "ti_na"
            | "ti_ca"
            | "ti_pr"
            | "ti_qu"
            | "ti_cu"
            | "sa"
            | "sn"
            | "st"
            | "sp"
            | "se_ca"
            | "se_ac"
            | "se_la"
            | "se_pr"
            | "se_va"
            | "ue_na"
            | "ue_pr"
            | "ue_px"
            | "co"
            | "cx"
            | "ua"
            | "tnuid"
            | "stm"
            | "sid"
            | "ttm"
    )
}

fn decode_item(
    index: usize,
    item: &serde_json::Value,
    options: DecodeOptions,
) -> Result<RawEvent<'static>, Failure> {
    let Some(obj) = item.as_object() else {
        return Err(Failure {
            category: FailureCategory::TrackerProtocolViolation,
            messages: vec![format!(
                "event {index} of the tp2 body is not a JSON object"
            )],
            event_index: Some(u32::try_from(index).unwrap_or(u32::MAX)),
            event_payload: Some(item.to_string()),
        });
    };
    let mut messages = Vec::new();
    let mut pairs = Vec::with_capacity(obj.len());
    for (key, value) in obj {
        if options.strict_body_keys && !is_payload_data_key(key) {
            messages.push(format!(
                "event {index}: key `{key}` is not allowed by payload_data (additionalProperties: false)"
            ));
        }
        match value {
            serde_json::Value::String(s) => {
                pairs.push((key.clone().into(), s.clone().into()));
            }
            serde_json::Value::Null => {
                messages.push(format!("event {index}: value of `{key}` cannot be null"));
            }
            other => {
                messages.push(format!(
                    "event {index}: value of `{key}` is not a string (found {other})"
                ));
            }
        }
    }
    if messages.is_empty() {
        Ok(RawEvent::from_pairs(pairs))
    } else {
        Err(Failure {
            category: FailureCategory::TrackerProtocolViolation,
            messages,
            event_index: Some(u32::try_from(index).unwrap_or(u32::MAX)),
            event_payload: Some(item.to_string()),
        })
    }
}

/// Checks the required keys (`tv`, `p`, `e`).
fn require_keys(params: RawEvent<'_>, index: usize) -> Result<RawEvent<'_>, Failure> {
    let missing: Vec<String> = REQUIRED_KEYS
        .iter()
        .filter(|k| !params.contains_key(k))
        .map(|k| format!("event {index}: required parameter `{k}` is missing"))
        .collect();
    if missing.is_empty() {
        Ok(params)
    } else {
        Err(event_failure(
            FailureCategory::TrackerProtocolViolation,
            missing,
            index,
            &params,
        ))
    }
}

/// True for `application/json` with at most a `charset=utf-8` parameter (any case).
pub fn is_json_content_type(content_type: &str) -> bool {
    let mut parts = content_type.split(';').map(str::trim);
    let media = parts.next().unwrap_or("");
    if !media.eq_ignore_ascii_case("application/json") {
        return false;
    }
    parts.all(|p| {
        p.is_empty()
            || p.split_once('=').is_some_and(|(k, v)| {
                k.trim().eq_ignore_ascii_case("charset")
                    && v.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
            })
    })
}

/// Decodes an `application/x-www-form-urlencoded` query string (`+` is a space, `%XX` escapes;
/// a `%` not followed by two hex digits stays as it is). Repeated keys keep the last value;
/// empty keys are skipped. Refuses a string whose decoded bytes are not UTF-8.
pub fn parse_query(query: &str) -> Result<RawEvent<'_>, String> {
    let mut pairs = Vec::new();
    for pair in query.split('&') {
        if pair.is_empty() {
            continue;
        }
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let key = form_decode(k)
            .map_err(|_| format!("query string key {k:?} is not UTF-8 once percent-decoded"))?;
        if key.is_empty() {
            continue;
        }
        let value = form_decode(v).map_err(|_| {
            format!("query string value of `{key}` is not UTF-8 once percent-decoded")
        })?;
        pairs.push((key, value));
    }
    Ok(RawEvent::from_pairs(pairs))
}

/// An Iglu URI: `iglu:vendor/name/format/model-revision-addition`.
pub fn is_iglu_uri(s: &str) -> bool {
    parse_iglu_uri(s).is_some()
}

/// The parts of an Iglu URI: (vendor, name, format, version).
pub fn parse_iglu_uri(s: &str) -> Option<(&str, &str, &str, &str)> {
    let rest = s.strip_prefix("iglu:")?;
    let mut parts = rest.split('/');
    let (vendor, name, format, version) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let word = |w: &str, dots: bool| {
        !w.is_empty()
            && w.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || (dots && c == '.'))
    };
    let mut nums = version.split('-');
    let version_ok = (0..3).all(|_| {
        nums.next()
            .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
    }) && nums.next().is_none();
    (word(vendor, true) && word(name, false) && word(format, false) && version_ok)
        .then_some((vendor, name, format, version))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(
        route: &str,
        method: &str,
        query: Option<&str>,
        ct: Option<&str>,
        body: &str,
    ) -> Envelope {
        let mut headers = Vec::new();
        if let Some(ct) = ct {
            headers.push(("content-type".to_owned(), ct.to_owned()));
        }
        Envelope {
            received_at_ms: 1_700_000_000_000,
            route: route.into(),
            method: method.into(),
            path: route.into(),
            query: query.map(str::to_owned),
            headers,
            body: body.as_bytes().to_vec(),
            peer: Some("127.0.0.1:1".into()),
            nuid: None,
        }
    }

    fn events(d: Decoded<'_>) -> Vec<Result<RawEvent<'_>, Failure>> {
        match d {
            Decoded::Events(e) => e,
            Decoded::Request(f) => panic!("whole request failed: {f:?}"),
        }
    }

    fn request(d: Decoded<'_>) -> Failure {
        match d {
            Decoded::Request(f) => f,
            Decoded::Events(e) => panic!("expected a request failure, got {e:?}"),
        }
    }

    const JSON: Option<&str> = Some("application/json; charset=utf-8");

    #[test]
    fn a_pixel_query_string_is_one_event_with_plus_as_space_and_percent_escapes() {
        let env = envelope(
            "/i",
            "GET",
            Some("e=pv&tv=js-4&p=web&page=Hello+World%21&url=https%3A%2F%2Fa.example%2F"),
            None,
            "",
        );
        let e = events(decode(&env, DecodeOptions::default()));
        let p = e[0].as_ref().unwrap();
        assert_eq!(p["page"], "Hello World!");
        assert_eq!(p["url"], "https://a.example/");
    }

    proptest::proptest! {
        /// `RawEvent` behaves as the sorted map it replaced: built from pairs in any order, or
        /// by inserts and removes, it holds what a `BTreeMap` holds, in the same order. Keys
        /// from a small alphabet with NUL, up to ten bytes, so many share their first eight
        /// bytes (up to padding) and the text decides.
        #[test]
        fn raw_event_is_a_sorted_map_keeping_each_keys_last_value(
            pairs in proptest::collection::vec(("[ab\\x00]{0,10}", "[x-z]{0,2}"), 0..40),
            edits in proptest::collection::vec(("[ab\\x00]{0,10}", proptest::option::of("[x-z]{0,2}")), 0..10),
        ) {
            let mut model = std::collections::BTreeMap::new();
            for (k, v) in &pairs {
                model.insert(k.clone(), v.clone());
            }
            let mut raw = RawEvent::from_pairs(
                pairs.iter().map(|(k, v)| (Cow::from(k.as_str()), Cow::from(v.as_str()))).collect(),
            );
            for (k, v) in &edits {
                match v {
                    Some(v) => proptest::prop_assert_eq!(
                        raw.insert(Cow::from(k.clone()), Cow::from(v.clone())).map(Cow::into_owned),
                        model.insert(k.clone(), v.clone())
                    ),
                    None => proptest::prop_assert_eq!(
                        raw.remove(k).map(Cow::into_owned),
                        model.remove(k)
                    ),
                }
            }
            let got: Vec<(&str, &str)> = raw.iter().map(|(k, v)| (k.as_ref(), v.as_ref())).collect();
            let want: Vec<(&str, &str)> = model.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            proptest::prop_assert_eq!(got, want);
            proptest::prop_assert_eq!(raw.len(), model.len());
            for k in ["", "a", "b", "ab", "dd"] {
                proptest::prop_assert_eq!(raw.get(k).map(|v| v.as_ref()), model.get(k).map(String::as_str));
            }
            proptest::prop_assert_eq!(params_json(&raw), serde_json::to_string(&model).unwrap());
        }
    }

    #[test]
    fn repeated_query_keys_keep_the_last_value_and_stray_percents_stay() {
        let p = parse_query("a=1&a=2&b=50%&&=x&c").unwrap();
        assert_eq!(p["a"], "2");
        assert_eq!(p["b"], "50%");
        assert_eq!(p["c"], "");
        assert!(!p.contains_key(""));
    }

    #[test]
    fn a_query_string_that_is_not_utf8_is_a_collector_payload_format_violation() {
        assert!(parse_query("a=%ff%fe").is_err());
        let env = envelope("/i", "GET", Some("e=pv&x=%C3%28"), None, "");
        assert_eq!(
            request(decode(&env, DecodeOptions::default())).category,
            FailureCategory::CollectorPayloadFormatViolation
        );
    }

    #[test]
    fn an_empty_pixel_or_tp1_query_is_an_adapter_failure() {
        for route in ["/i", "/ice.png", Route::Tp1.template()] {
            let f = request(decode(
                &envelope(route, "GET", None, None, ""),
                DecodeOptions::default(),
            ));
            assert_eq!(f.category, FailureCategory::AdapterFailure, "{route}");
        }
    }

    #[test]
    fn a_get_without_tv_p_or_e_is_a_tracker_protocol_violation_naming_each_missing_key() {
        let env = envelope("/i", "GET", Some("e=pv"), None, "");
        let f = events(decode(&env, DecodeOptions::default()))
            .remove(0)
            .unwrap_err();
        assert_eq!(f.category, FailureCategory::TrackerProtocolViolation);
        assert_eq!(f.messages.len(), 2);
        assert!(f.messages[0].contains("`tv`"));
        assert_eq!(f.event_index, Some(0));
        assert_eq!(f.event_payload.as_deref(), Some(r#"{"e":"pv"}"#));
    }

    #[test]
    fn a_post_batch_gives_one_entry_per_event_and_bad_events_fail_alone() {
        let body = r#"{"schema":"iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4","data":[
            {"e":"pv","tv":"py-1.1.0","p":"pc"},
            {"e":"pv","tv":"py-1.1.0","p":"pc","vid":3},
            {"e":"pv","tv":"py-1.1.0","p":"pc","uid":null},
            {"e":"pv","tv":"py-1.1.0"},
            "not an object",
            {"e":"se","tv":"py-1.1.0","p":"pc","cv":"x"}]}"#;
        let env = envelope(Route::Tp2.template(), "POST", None, JSON, body);
        let e = events(decode(&env, DecodeOptions::default()));
        assert_eq!(e.len(), 6);
        assert!(e[0].is_ok());
        for (i, needle) in [
            (1, "not a string"),
            (2, "cannot be null"),
            (3, "`p`"),
            (4, "not a JSON object"),
            (5, "`cv` is not allowed"),
        ] {
            let f = e[i].as_ref().unwrap_err();
            assert_eq!(f.category, FailureCategory::TrackerProtocolViolation, "{i}");
            assert_eq!(f.event_index, Some(i as u32));
            assert!(
                f.messages.iter().any(|m| m.contains(needle)),
                "{i}: {:?}",
                f.messages
            );
        }
        let relaxed = events(decode(
            &env,
            DecodeOptions {
                strict_body_keys: false,
            },
        ));
        assert!(relaxed[5].is_ok());
    }

    #[test]
    fn query_parameters_are_merged_into_each_post_event_and_win() {
        let body = r#"{"schema":"iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-3","data":[{"e":"pv","tv":"js","p":"web","aid":"body"},{"e":"pp","tv":"js","aid":"body"}]}"#;
        let env = envelope(
            Route::Tp2.template(),
            "POST",
            Some("aid=query&p=mob"),
            JSON,
            body,
        );
        let e = events(decode(&env, DecodeOptions::default()));
        for ev in &e {
            let p = ev.as_ref().unwrap();
            assert_eq!(p["aid"], "query");
            assert_eq!(p["p"], "mob");
        }
    }

    #[test]
    fn only_json_content_types_are_accepted_for_post_bodies() {
        for ok in [
            "application/json",
            "application/json; charset=utf-8",
            "application/json; charset=UTF-8",
            "Application/JSON;charset=\"utf-8\"",
        ] {
            assert!(is_json_content_type(ok), "{ok}");
        }
        for bad in [
            "text/plain",
            "application/json; charset=latin1",
            "application/jsonx",
            "",
            "application/x-www-form-urlencoded",
        ] {
            assert!(!is_json_content_type(bad), "{bad}");
        }
        let body = r#"{"schema":"iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4","data":[{"e":"pv","tv":"js","p":"web"}]}"#;
        for ct in [Some("text/plain"), None] {
            let f = request(decode(
                &envelope(Route::Tp2.template(), "POST", None, ct, body),
                DecodeOptions::default(),
            ));
            assert_eq!(f.category, FailureCategory::TrackerProtocolViolation);
        }
    }

    #[test]
    fn bodies_that_are_not_payload_data_are_tracker_protocol_violations() {
        for body in [
            "{not json",
            "[1,2]",
            r#"{"data":[]}"#,
            r#"{"schema":"iglu:com.acme/other/jsonschema/1-0-0","data":[{"e":"pv","tv":"js","p":"web"}]}"#,
            r#"{"schema":"iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4","data":{}}"#,
            r#"{"schema":"iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4","data":[]}"#,
            r#"{"schema":"iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4"}"#,
        ] {
            let f = request(decode(
                &envelope(Route::Tp2.template(), "POST", None, JSON, body),
                DecodeOptions::default(),
            ));
            assert_eq!(
                f.category,
                FailureCategory::TrackerProtocolViolation,
                "{body}"
            );
            assert_eq!(f.event_index, None);
        }
    }

    #[test]
    fn a_tp2_request_without_a_body_is_one_event_from_its_query_or_a_violation_when_both_are_empty()
    {
        let env = envelope(
            Route::Tp2.template(),
            "GET",
            Some("e=pv&tv=js&p=web"),
            None,
            "",
        );
        let e = events(decode(&env, DecodeOptions::default()));
        assert_eq!(e[0].as_ref().unwrap()["e"], "pv");
        let f = request(decode(
            &envelope(Route::Tp2.template(), "POST", None, JSON, ""),
            DecodeOptions::default(),
        ));
        assert_eq!(f.category, FailureCategory::TrackerProtocolViolation);
    }

    #[test]
    fn unknown_vendor_versions_are_adapter_failures_and_odd_paths_format_violations() {
        let f = request(decode(
            &envelope("/com.acme/v9", "POST", None, JSON, "{}"),
            DecodeOptions::default(),
        ));
        assert_eq!(f.category, FailureCategory::AdapterFailure);
        assert!(f.messages[0].contains("com.acme/v9"));
        let f = request(decode(
            &envelope("/a/b/c", "GET", None, None, ""),
            DecodeOptions::default(),
        ));
        assert_eq!(f.category, FailureCategory::CollectorPayloadFormatViolation);
    }

    #[test]
    fn a_redirect_becomes_a_uri_redirect_event_or_entity() {
        let env = envelope(
            Route::Redirect.template(),
            "GET",
            Some("u=https%3A%2F%2Fdest.example%2F&aid=a"),
            None,
            "",
        );
        let e = events(decode(&env, DecodeOptions::default()));
        let p = e[0].as_ref().unwrap();
        assert_eq!(p["e"], "ue");
        assert_eq!(p["tv"], "r-tp2");
        assert_eq!(p["p"], "web");
        assert!(
            p["ue_pr"].contains("uri_redirect") && p["ue_pr"].contains("https://dest.example/")
        );
        assert!(!p.contains_key("u"));
        let env = envelope(
            Route::Redirect.template(),
            "GET",
            Some("u=https%3A%2F%2Fd.example%2F&e=pv"),
            None,
            "",
        );
        let e = events(decode(&env, DecodeOptions::default()));
        assert!(e[0].as_ref().unwrap()["co"].contains("uri_redirect"));
        let f = request(decode(
            &envelope(Route::Redirect.template(), "GET", Some("e=pv"), None, ""),
            DecodeOptions::default(),
        ));
        assert_eq!(f.category, FailureCategory::TrackerProtocolViolation);
    }

    #[test]
    fn the_payload_data_key_match_agrees_with_the_key_list() {
        for key in PAYLOAD_DATA_KEYS {
            assert!(is_payload_data_key(key), "{key}");
        }
        let listed = |k: &str| PAYLOAD_DATA_KEYS.contains(&k);
        for key in ["cv", "ev_ca", "", "E", "tv ", "url2", "se_val", "u"] {
            assert!(!listed(key), "{key}");
            assert!(!is_payload_data_key(key), "{key}");
        }
        let mut unique = PAYLOAD_DATA_KEYS.to_vec();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), PAYLOAD_DATA_KEYS.len());
    }

    #[test]
    fn the_payload_data_key_check_by_integer_agrees_with_the_match() {
        let one = |k: &str| RawEvent::from_pairs(vec![(k.to_owned().into(), "v".into())]);
        let mut keys: Vec<String> = PAYLOAD_DATA_KEYS.iter().map(|k| k.to_string()).collect();
        for k in PAYLOAD_DATA_KEYS {
            // Padded with NUL, cut short, grown, changed in case: none of them is a key.
            keys.extend([
                format!("{k}\0"),
                format!("{k}\0\0"),
                k[..k.len() - 1].to_owned(),
            ]);
            keys.extend([
                format!("{k}x"),
                format!("{k}_longer_than_8"),
                k.to_uppercase(),
            ]);
        }
        keys.extend(["", "\0", "cv", "f_gearsx"].map(String::from));
        for k in &keys {
            assert_eq!(
                one(k).has_only_payload_data_keys(),
                is_payload_data_key(k),
                "{k:?}"
            );
        }
        let all = RawEvent::from_pairs(
            PAYLOAD_DATA_KEYS
                .iter()
                .map(|k| (Cow::from(*k), "v".into()))
                .collect(),
        );
        assert!(all.has_only_payload_data_keys());
        let mut with_one_more = all.clone();
        with_one_more.insert("cv".into(), "v".into());
        assert!(!with_one_more.has_only_payload_data_keys());
    }

    /// The general path alone (what the fast path must agree with).
    fn general_path(
        body: &str,
        options: DecodeOptions,
    ) -> Result<Vec<Result<RawEvent<'static>, Failure>>, Failure> {
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        let items = json["data"].as_array().unwrap();
        Ok(items
            .iter()
            .enumerate()
            .map(|(i, item)| decode_item(i, item, options))
            .collect())
    }

    #[test]
    fn body_and_query_text_is_borrowed_unless_it_had_to_be_decoded() {
        let body = r#"{"schema":"iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4","data":[{"e":"pv","tv":"js","p":"web","page":"say \"hi\""}]}"#;
        let items = decode_tp2_body(JSON, body.as_bytes(), DecodeOptions::default()).unwrap();
        let params = items[0].as_ref().unwrap();
        assert!(matches!(params["e"], Cow::Borrowed("pv")));
        assert!(matches!(&params["page"], Cow::Owned(s) if s == "say \"hi\""));
        let query = parse_query("aid=app&page=a+b%21").unwrap();
        assert!(matches!(query["aid"], Cow::Borrowed("app")));
        assert!(matches!(&query["page"], Cow::Owned(s) if s == "a b!"));
    }

    #[test]
    fn the_fast_path_gives_what_the_general_path_gives_and_steps_aside_for_anything_else() {
        let strict = DecodeOptions::default();
        let relaxed = DecodeOptions {
            strict_body_keys: false,
        };
        let schema = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4";
        let good = format!(
            r#"{{"schema":"{schema}","data":[{{"e":"pv","tv":"js","p":"web","url":"https://a.example/\u00e9\t","e":"se"}},{{"e":"pp","tv":"js","p":"web","cv":"x"}}]}}"#
        );
        assert_eq!(
            decode_tp2_body_fast(good.as_bytes(), relaxed),
            Some(general_path(&good, relaxed).unwrap())
        );
        assert_eq!(
            decode_tp2_body(JSON, good.as_bytes(), relaxed).unwrap(),
            general_path(&good, relaxed).unwrap()
        );
        // `cv` is refused in strict mode: the general path names it.
        assert_eq!(decode_tp2_body_fast(good.as_bytes(), strict), None);
        let strict_items = decode_tp2_body(JSON, good.as_bytes(), strict).unwrap();
        assert_eq!(strict_items, general_path(&good, strict).unwrap());
        assert!(strict_items[1].is_err());
        for off in [
            format!(r#"{{"schema":"{schema}","data":[{{"e":"pv","vid":3}}]}}"#),
            format!(r#"{{"schema":"{schema}","data":[{{"e":"pv","uid":null}}]}}"#),
            format!(r#"{{"schema":"{schema}","data":["x"]}}"#),
            format!(r#"{{"schema":"{schema}","data":[]}}"#),
            format!(r#"{{"schema":"{schema}","data":[{{"e":"pv"}}],"other":1e999}}"#),
            format!(r#"{{"schema":"{schema}","data":[{{"e":"pv"}}],"data":[{{"e":"pp"}}]}}"#),
            r#"{"schema":"iglu:com.acme/other/jsonschema/1-0-0","data":[{"e":"pv"}]}"#.to_owned(),
            r#"{"data":[{"e":"pv"}]}"#.to_owned(),
        ] {
            assert_eq!(decode_tp2_body_fast(off.as_bytes(), relaxed), None, "{off}");
        }
    }

    /// The fast path on `body`: `None`, or what the general path gives.
    fn fast_agrees_or_declines(body: &[u8]) -> bool {
        let relaxed = DecodeOptions {
            strict_body_keys: false,
        };
        assert_tp2_fast_path_agrees(body);
        decode_tp2_body_fast(body, relaxed).is_some()
    }

    #[test]
    fn the_fast_path_reads_strings_as_serde_json_does_or_steps_aside() {
        let schema = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4";
        let body = |event: &[u8]| {
            let mut b = format!(r#"{{"schema":"{schema}","data":[{{"e":"pv"}},"#).into_bytes();
            b.extend_from_slice(event);
            b.extend_from_slice(b"]}");
            b
        };
        // Taken (and equal to the general path's reading).
        for event in [
            &br#"{"page":"say \"hi\"","url":"a\\b\/c\\","refr":"\\\"","tz":"\\"}"#[..],
            br#"{"page":"\u00e9\u2013\ud83d\ude00 \t\n","\u0065":"se"}"#,
            "{\"page\":\"caf\u{e9} \u{2013} \u{1f600} \u{7f}\"}".as_bytes(),
            br#"{"e":"pv","e":"pp","aid":"a","e":"se"}"#,
            br#"{}"#,
            b" { \"e\" :\t\"pv\" ,\r\n\"aid\": \"\" } ",
        ] {
            let b = body(event);
            assert!(
                fast_agrees_or_declines(&b),
                "{}",
                String::from_utf8_lossy(&b)
            );
        }
        let dup = body(br#"{"e":"pv","e":"pp","aid":"a","e":"se"}"#);
        let items = decode_tp2_body_fast(&dup, DecodeOptions::default()).unwrap();
        assert_eq!(items[1].as_ref().unwrap()["e"], "se");
        let spaced =
            format!(" \n{{ \"data\" : [ {{\"e\":\"pv\"}} ] ,\t\"schema\" : \"{schema}\" }}\r\n");
        assert!(fast_agrees_or_declines(spaced.as_bytes()));
        // Declined (the general path has failures, or refuses the body, for each).
        for event in [
            &br#"{"page":"\ud800"}"#[..],
            br#"{"page":"\udc00x"}"#,
            br#"{"page":"\ud800\u0041"}"#,
            br#"{"page":"\x"}"#,
            br#"{"page":"\u12"}"#,
            b"{\"page\":\"a\xffb\"}",
            b"{\"page\":\"a\xc3\"}",
            b"{\"page\":\"\xc0\xaf\"}",
            b"{\"page\":\"\xed\xa0\x80\"}",
            b"{\"page\":\"a\x01b\"}",
            b"{\"page\":\"a\nb\"}",
            b"{\"page\":\"a\\\"\tb\"}",
            b"{\"page\":\"\x1f\"}",
            br#"{"page":1}"#,
            br#"{"page":null}"#,
            br#"{"page":true}"#,
            br#"{"page":{}}"#,
            br#"{"page":["x"]}"#,
            br#"{"page":"x",}"#,
            br#"{"page":"x" "e":"pv"}"#,
            br#"{"page" "x"}"#,
            br#"{page:"x"}"#,
            br#"{'page':'x'}"#,
            br#""x""#,
            br#"{"e":"pv"},"#,
            br#"{"e":"pv"}}"#,
            b"{\"e\":\"pv\"\x0b}",
            b"{\"e\":\"pv\"\xc2\xa0}",
        ] {
            let b = body(event);
            assert!(
                !fast_agrees_or_declines(&b),
                "{}",
                String::from_utf8_lossy(&b)
            );
        }
        let good = body(br#"{"e":"pv"}"#);
        for tail in [&b"x"[..], b"}", b",", b"\x00", b" ]", b"\xef\xbb\xbf"] {
            let mut b = good.clone();
            b.extend_from_slice(tail);
            assert!(
                !fast_agrees_or_declines(&b),
                "{}",
                String::from_utf8_lossy(&b)
            );
        }
        let mut bom = b"\xef\xbb\xbf".to_vec();
        bom.extend_from_slice(&good);
        assert!(!fast_agrees_or_declines(&bom));
    }

    #[test]
    fn the_fast_path_agrees_or_steps_aside_on_every_cut_and_one_byte_change_of_a_body() {
        let schema = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4";
        let good = format!(
            r#"{{"schema":"{schema}","data":[{{"e":"pv","tv":"js","page":"a \"b\" \u00e9\ud83d\ude00 c\\","url":"x"}},{{"e":"pp","aid":"s","e":"se"}}]}}"#
        );
        let good = good.as_bytes();
        assert!(fast_agrees_or_declines(good));
        for cut in 0..good.len() {
            assert!(!fast_agrees_or_declines(&good[..cut]), "cut at {cut}");
        }
        let bytes = [
            b'"', b'\\', b',', b':', b'{', b'}', b'[', b']', b' ', b'\n', 0, 0x1f, 0x7f, 0xc3,
            0xff, b'u', b'd', b'8', b'0', b'a',
        ];
        for i in 0..good.len() {
            for &b in &bytes {
                let mut changed = good.to_vec();
                changed[i] = b;
                fast_agrees_or_declines(&changed);
                let mut inserted = good.to_vec();
                inserted.insert(i, b);
                fast_agrees_or_declines(&inserted);
            }
            let mut removed = good.to_vec();
            removed.remove(i);
            fast_agrees_or_declines(&removed);
        }
    }

    #[test]
    fn iglu_uris_need_four_parts_and_a_three_number_version() {
        assert_eq!(
            parse_iglu_uri("iglu:com.acme/ev_1/jsonschema/1-0-2"),
            Some(("com.acme", "ev_1", "jsonschema", "1-0-2"))
        );
        for bad in [
            "iglu:com.acme/ev/jsonschema/1-0",
            "com.acme/ev/jsonschema/1-0-0",
            "iglu:com.acme/ev/jsonschema/1-0-0/x",
            "iglu:/ev/jsonschema/1-0-0",
            "iglu:a/b.c/jsonschema/1-0-0",
        ] {
            assert!(parse_iglu_uri(bad).is_none(), "{bad}");
        }
    }
}
