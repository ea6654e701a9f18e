"""Test support for the Segment / RudderStack / pycolytics / collect end-to-end tests.

- `Wire` records, from the client's side, every HTTP request an SDK sent through a
  `requests.Session` (both Python SDKs post through a module-level session) and the answer it
  got: the decompressed JSON body, the headers, the status and when it was sent and answered.
- `acked_segment_messages(wire)` lists the messages inside the requests that got a 2xx, each
  with the batch-level `context`/`integrations` merged in (as the Segment API does).
- `check_segment_row(row, ack, precision_ms)` compares one ClickHouse row with what the Segment
  field mapping (the module docs of src/publish/map/segment.rs) says a message becomes, and lists
  the differences; `check_pycolytics_row` does the same for a pycolytics event.
- `rows_by(pipe, column, where)` reads the events table keyed by one column (rows per key), so
  the tests can say "exactly one row per messageId".
- `post(...)` sends one raw request and times it; `rejections(metrics_text(pipe), reason,
  source)` reads `sluice_http_rejections_total`.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import re
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit

from pipeline import Pipeline
from sluice_e2e import require_node

# tests/e2e/js: the Node SDK drivers (npm ci there; scripts/test.sh does).
JS_DIR = Path(__file__).resolve().parent / "js"
# The client address every test request comes from (the daemon listens on loopback).
LOOPBACK = "127.0.0.1"
# How long rows may take to appear (the publisher flushes every 200 ms in these tests).
ROWS_TIMEOUT_S = 60.0


@dataclass
class WireRequest:
    """One HTTP request as the client sent it, and the answer it got."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes  # as sent (gzip bytes when Content-Encoding: gzip)
    status: int
    response_headers: dict[str, str]
    response_text: str
    sent_at: float  # time.time() when the request went out
    acked_at: float  # time.time() when the answer arrived

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def path(self) -> str:
        return urlsplit(self.url).path

    def json(self):
        """The body, decompressed when the request said gzip, parsed as JSON."""
        data = self.body
        if self.headers.get("content-encoding", "").lower() == "gzip":
            data = gzip.decompress(data)
        return json.loads(data)


class Wire:
    """Every request sent through the hooked sessions, in order. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: list[WireRequest] = []
        self._hooked: list = []

    def hook(self, session) -> None:
        session.hooks["response"].append(self._response_hook)
        self._hooked.append(session)

    def unhook(self) -> None:
        """Take the hook off every session (the SDKs' sessions are module-level and shared by tests)."""
        for s in self._hooked:
            if self._response_hook in s.hooks["response"]:
                s.hooks["response"].remove(self._response_hook)
        self._hooked.clear()

    def _response_hook(self, response, *args, **kwargs):
        now = time.time()
        req = response.request
        body = req.body or b""
        if isinstance(body, str):
            body = body.encode()
        self.add(
            WireRequest(
                method=req.method,
                url=req.url,
                headers={k.lower(): v for k, v in req.headers.items()},
                body=body,
                status=response.status_code,
                response_headers={k.lower(): v for k, v in response.headers.items()},
                response_text=response.text,
                sent_at=now - response.elapsed.total_seconds(),
                acked_at=now,
            )
        )
        return response

    def add(self, r: WireRequest) -> None:
        with self._lock:
            self.requests.append(r)

    def snapshot(self) -> list[WireRequest]:
        with self._lock:
            return list(self.requests)

    def statuses(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for r in self.snapshot():
            out[r.status] = out.get(r.status, 0) + 1
        return out


@dataclass
class SegmentAck:
    """One message of an acknowledged Segment/RudderStack request."""

    message: dict  # the item, with the batch's context/integrations merged in
    body: dict  # the whole request body (sentAt, writeKey, ...)
    request: WireRequest


# Single-message routes and their Segment type (analytics.js' short aliases included).
SINGLE_ROUTES = {
    "identify": "identify", "track": "track", "page": "page", "screen": "screen", "group": "group",
    "alias": "alias", "i": "identify", "t": "track", "p": "page", "s": "screen", "g": "group", "a": "alias",
}
BATCH_ROUTES = {"batch", "import", "b"}


def segment_messages(body: dict, path: str) -> list[dict]:
    """The messages one Segment request carries: the batch's items with the top-level `context`
    and `integrations` merged in (the item's own keys win), or the single message (whose type
    comes from the route when the body has none)."""
    route = path.rstrip("/").rsplit("/", 1)[-1]
    if route in BATCH_ROUTES:
        out = []
        for item in body.get("batch", []):
            msg = dict(item)
            for key in ("context", "integrations"):
                if isinstance(body.get(key), dict):
                    msg[key] = {**body[key], **(item.get(key) or {})}
            out.append(msg)
        return out
    msg = dict(body)
    msg["type"] = SINGLE_ROUTES[route]  # the route decides, as Segment does
    return [msg]


def acked_segment_messages(wire: Wire) -> dict[str, SegmentAck]:
    """messageId → the message, for every message inside a request that got a 2xx. A message
    acknowledged twice (a retry after a lost answer) keeps its first acknowledgement."""
    out: dict[str, SegmentAck] = {}
    for r in wire.snapshot():
        if not r.ok:
            continue
        body = r.json()
        for msg in segment_messages(body, r.path):
            out.setdefault(msg["messageId"], SegmentAck(msg, body, r))
    return out


# ----- reading rows -----


def rows_by(pipe: Pipeline, column: str, where: str = "1") -> dict[str, list[dict]]:
    """The rows matching `where`, grouped by the text value of `column`."""
    out: dict[str, list[dict]] = {}
    for row in pipe.rows(where):
        out.setdefault(str(row.get(column)), []).append(row)
    return out


def wait_for_rows(pipe: Pipeline, column: str, keys: set[str], timeout: float = ROWS_TIMEOUT_S,
                  where: str = "1") -> dict[str, list[dict]]:
    """Poll until every key in `keys` has a row (or `timeout` passes); returns the last read."""
    deadline = time.monotonic() + timeout
    while True:
        rows = rows_by(pipe, column, where)
        if keys <= rows.keys() or time.monotonic() > deadline:
            return rows
        time.sleep(0.25)


def wait_published(pipe: Pipeline, timeout: float = ROWS_TIMEOUT_S) -> None:
    """Wait until the publisher has checkpointed every record in the log (`sluice wal status`)."""
    from sluice_e2e import wal_status

    deadline = time.monotonic() + timeout
    while True:
        st = wal_status(pipe.daemon)
        if st["unpublished"] == 0:
            return
        assert time.monotonic() < deadline, f"log not fully published: {st}\n{pipe.daemon.log_tail()}"
        time.sleep(0.2)


def wal_record_count(pipe: Pipeline) -> int:
    """Records ever appended to the log (published or not), from `sluice wal inspect`."""
    from sluice_e2e import wal_records

    return len(wal_records(pipe.daemon).records)


# ----- expected values -----


def iso_ms(text: str) -> int:
    """An ISO 8601 timestamp (as the SDKs send it) as Unix milliseconds."""
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(round(dt.timestamp() * 1000))


def _url_parts(url: str) -> dict:
    u = urlsplit(url)
    port = u.port if u.port is not None else (443 if u.scheme == "https" else 80)
    return {"scheme": u.scheme, "host": u.hostname, "port": port, "path": u.path,
            "query": u.query or None, "fragment": u.fragment or None}


def json_value(text):
    """A JSON column's value parsed; None and "" read as None."""
    if text is None or text == "":
        return None
    return json.loads(text) if isinstance(text, str) else text


def same_json(actual_text, expected) -> bool:
    """A JSON column holds `expected` (an absent or empty object equals no value)."""
    got = json_value(actual_text)
    empty = (None, {}, [])
    if expected in empty:
        return got in empty
    return got == expected


def same_text(actual, expected) -> bool:
    if expected is None or expected == "":
        return actual in (None, "")
    return actual == expected


def same_int(actual, expected) -> bool:
    if expected is None:
        return actual in (None, 0, "0")
    return actual is not None and int(actual) == int(expected)


def is_uuid(text) -> bool:
    try:
        uuid.UUID(str(text))
        return True
    except ValueError:
        return False


def secret_leaks(row: dict, secrets: list[str]) -> list[str]:
    """Columns whose value contains one of `secrets` (write keys, API keys)."""
    out = []
    for col, v in row.items():
        if isinstance(v, str):
            for s in secrets:
                if s and s in v:
                    out.append(f"{col} contains the key {s!r}")
    return out


# How Segment's page/screen `name` is stored: set by the tests from the mapping B documented.
PAGE_NAME_COLUMN = "event_name"


def expected_segment_columns(msg: dict, source: str = "segment") -> dict:
    """Text/int/JSON columns one Segment message must produce (None = no value)."""
    ctx = msg.get("context") or {}
    page = ctx.get("page") or {}
    campaign = ctx.get("campaign") or {}
    library = ctx.get("library") or {}
    app = ctx.get("app") or {}
    typ = msg["type"]
    exp: dict = {
        "source": source,
        "event": typ,
        "message_id": msg["messageId"],
        "user_id": msg.get("userId"),
        "anonymous_id": msg.get("anonymousId"),
        "useragent": ctx.get("userAgent"),
        "user_ipaddress": ctx.get("ip") or LOOPBACK,
        "app_id": app.get("name"),
        "app_version": app.get("version"),
        "br_lang": ctx.get("locale"),
        "platform": CHANNEL_PLATFORMS.get(msg.get("channel")),
        "name_tracker": library.get("name"),
        "v_tracker": library.get("version"),
        "page_title": page.get("title"),
        "page_referrer": page.get("referrer"),
        "mkt_source": campaign.get("source"),
        "mkt_medium": campaign.get("medium"),
        "mkt_campaign": campaign.get("name"),
        "mkt_term": campaign.get("term"),
        "mkt_content": campaign.get("content"),
    }
    if typ == "track":
        exp["event_name"] = msg.get("event")
    elif typ in ("page", "screen"):
        exp[PAGE_NAME_COLUMN] = msg.get("name")
    if page.get("url"):
        exp["page_url"] = page["url"]
        for k, v in _url_parts(page["url"]).items():
            exp[f"page_url{k}"] = v
    if page.get("referrer"):
        parts = _url_parts(page["referrer"])
        exp["refr_urlhost"] = parts["host"]
        exp["refr_urlpath"] = parts["path"]
    return exp


JSON_COLUMNS = ("properties", "traits", "context")
# RudderStack's `channel` → platform (src/publish/segment.rs).
CHANNEL_PLATFORMS = {"browser": "web", "web": "web", "server": "srv", "mobile": "mob"}


def expected_properties(msg: dict):
    """`properties`, plus group's `groupId` and alias' `previousId` (which have no column)."""
    props = dict(msg.get("properties") or {})
    if msg["type"] == "group":
        props["groupId"] = msg.get("groupId")
    elif msg["type"] == "alias":
        props["previousId"] = msg.get("previousId")
    return props


def expected_traits(msg: dict):
    """`traits`, else a non-empty `context.traits` (where RudderStack's SDKs put them)."""
    if msg.get("traits") is not None:
        return msg["traits"]
    ctx_traits = (msg.get("context") or {}).get("traits")
    return ctx_traits if isinstance(ctx_traits, dict) and ctx_traits else None


INT_COLUMNS = {"page_urlport", "refr_urlport"}


def check_segment_row(row: dict, ack: SegmentAck, precision_ms: int, source: str = "segment",
                      secrets: list[str] | None = None) -> list[str]:
    """Differences between `row` and what the acknowledged message must produce."""
    msg = ack.message
    problems = []
    for col, want in expected_segment_columns(msg, source).items():
        if col not in row:
            problems.append(f"column {col} missing from the table")
            continue
        ok = same_int(row[col], want) if col in INT_COLUMNS else same_text(row[col], want)
        if not ok:
            problems.append(f"{col}: got {row[col]!r}, want {want!r}")
    # A user agent in the context is parsed like Snowplow's.
    if (msg.get("context") or {}).get("userAgent") and not row.get("br_family"):
        problems.append(f"br_family empty for userAgent {msg['context']['userAgent']!r}")
    for col in JSON_COLUMNS:
        want = {"properties": expected_properties, "traits": expected_traits}.get(col, lambda m: m.get(col))(msg)
        if col not in row:
            problems.append(f"column {col} missing from the table")
        elif not same_json(row[col], want):
            problems.append(f"{col}: got {row[col]!r}, want {json.dumps(want)}")
    # event_id: the messageId itself when it is a UUID, else some UUID derived from it.
    eid = row.get("event_id")
    if not is_uuid(eid):
        problems.append(f"event_id {eid!r} is not a UUID")
    elif is_uuid(msg["messageId"]) and str(uuid.UUID(msg["messageId"])) != str(uuid.UUID(eid)):
        problems.append(f"event_id {eid} is not the messageId {msg['messageId']}")
    # collector_tstamp = receivedAt: between send and acknowledgement.
    req = ack.request
    ct = row.get("collector_tstamp")
    lo = int(req.sent_at * 1000) // precision_ms * precision_ms - 1000
    hi = int(req.acked_at * 1000) + 1000
    if ct is None or not lo <= int(ct) <= hi:
        problems.append(f"collector_tstamp {ct!r} not within [{lo}, {hi}]")
    created_text = msg.get("originalTimestamp") or msg.get("timestamp")
    sent_text = msg.get("sentAt") or ack.body.get("sentAt")
    created = iso_ms(created_text) if created_text else None
    sent = iso_ms(sent_text) if sent_text else None
    for col, want in (("dvce_created_tstamp", created), ("dvce_sent_tstamp", sent)):
        got = row.get(col)
        want_t = None if want is None else want // precision_ms * precision_ms
        if want_t is None and got not in (None, 0):
            problems.append(f"{col}: got {got!r}, want no value")
        elif want_t is not None and (got is None or int(got) != want_t):
            problems.append(f"{col}: got {got!r}, want {want_t!r} ({created_text if col.startswith('dvce_c') else sent_text})")
    # derived_tstamp = receivedAt − (sentAt − originalTimestamp), the skew-corrected timestamp.
    if ct is not None and created is not None and sent is not None:
        want = int(ct) - (sent - created)
        got = row.get("derived_tstamp")
        if got is None or abs(int(got) - want) > precision_ms + 1000 * (precision_ms > 1):
            problems.append(f"derived_tstamp: got {got!r}, want about {want!r}")
    problems += secret_leaks(row, secrets or [])
    return problems


def check_segment_rows(pipe: Pipeline, acks: dict[str, SegmentAck], source: str = "segment",
                       secrets: list[str] | None = None, timeout: float = ROWS_TIMEOUT_S) -> str:
    """Every acknowledged message has exactly one row with the right values: '' or a report."""
    rows = wait_for_rows(pipe, "message_id", set(acks), timeout)
    lines = []
    missing = sorted(set(acks) - rows.keys())
    if missing:
        lines.append(f"{len(missing)} of {len(acks)} acknowledged messages have no row, e.g. {missing[:4]}")
    for mid, ack in sorted(acks.items()):
        rs = rows.get(mid, [])
        if len(rs) > 1:
            lines.append(f"{ack.message['type']} {mid}: {len(rs)} rows")
        if rs:
            probs = check_segment_row(rs[0], ack, pipe.timestamp_precision_ms, source, secrets)
            if probs:
                lines.append(f"{ack.message['type']} {mid} ({ack.request.path}): " + "; ".join(probs))
    return "\n".join(lines)


def expected_pycolytics_columns(ev: dict) -> dict:
    """Text columns one pycolytics event must produce (the contract's mapping)."""
    return {
        "source": "pycolytics",
        "event": "pycolytics",
        "event_name": ev["event_type"],
        "app_id": ev["application"],
        "app_version": ev["version"],
        "platform": ev["platform"],
        "user_id": ev["user_id"],
        "domain_sessionid": ev["session_id"],
        "user_ipaddress": LOOPBACK,
    }


def check_pycolytics_row(row: dict, ev: dict, sent_at: float, acked_at: float, precision_ms: int,
                         secrets: list[str]) -> list[str]:
    problems = []
    for col, want in expected_pycolytics_columns(ev).items():
        if col not in row:
            problems.append(f"column {col} missing from the table")
        elif not same_text(row[col], want):
            problems.append(f"{col}: got {row[col]!r}, want {want!r}")
    if "properties" not in row:
        problems.append("column properties missing from the table")
    elif not same_json(row["properties"], ev.get("value") or {}):
        problems.append(f"properties: got {row['properties']!r}, want {json.dumps(ev.get('value'))}")
    if not is_uuid(row.get("event_id")):
        problems.append(f"event_id {row.get('event_id')!r} is not a UUID")
    ct = row.get("collector_tstamp")
    lo = int(sent_at * 1000) // precision_ms * precision_ms - 1000
    hi = int(acked_at * 1000) + 1000
    if ct is None or not lo <= int(ct) <= hi:
        problems.append(f"collector_tstamp {ct!r} not within [{lo}, {hi}]")
    # pycolytics clients send no time: the derived time is the received time.
    if row.get("derived_tstamp") != ct:
        problems.append(f"derived_tstamp {row.get('derived_tstamp')!r} != collector_tstamp {ct!r}")
    if row.get("dvce_created_tstamp") not in (None, 0, "0"):
        problems.append(f"dvce_created_tstamp {row.get('dvce_created_tstamp')!r}, want none")
    problems += secret_leaks(row, secrets)
    return problems


def basic_auth(key: str) -> str:
    """`Authorization` value for a write key: Basic base64("key:")."""
    return "Basic " + base64.b64encode(f"{key}:".encode()).decode()


@dataclass
class Sent:
    """A raw request a test sent (not through an SDK), with its answer."""

    path: str
    status: int
    text: str
    headers: dict = field(default_factory=dict)
    sent_at: float = 0.0
    acked_at: float = 0.0


def post(session, base_url: str, path: str, body=None, *, raw: bytes | None = None,
         headers: dict | None = None, params: dict | None = None, timeout: float = 10.0) -> Sent:
    """POST JSON (or `raw` bytes) and return the answer with its timing."""
    data = raw if raw is not None else json.dumps(body).encode()
    hdrs = {"Content-Type": "application/json", **(headers or {})}
    t0 = time.time()
    r = session.post(base_url + path, data=data, headers=hdrs, params=params, timeout=timeout)
    return Sent(path, r.status_code, r.text, {k.lower(): v for k, v in r.headers.items()}, t0, time.time())


# ----- metrics -----


def metrics_text(pipe: Pipeline) -> str:
    """The daemon's Prometheus exposition (its separate metrics listener)."""
    return pipe.daemon.metrics_text()


def rejections(text: str, reason: str, source: str) -> float:
    """The value of sluice_http_rejections_total{reason, source} (0 when absent)."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith("sluice_http_rejections_total{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
        if labels.get("reason") == reason and labels.get("source") == source:
            total += float(line.rsplit(" ", 1)[1])
    return total


# ----- the Node SDK -----


def run_node_segment(url: str, key: str, run: str, burst: int | None = None, timeout: float = 90) -> tuple[Wire, list]:
    """Run tests/e2e/js/segment.mjs (@segment/analytics-node): every call type, or `burst`
    track calls one per request. Returns what it sent and got (as a `Wire`) and the SDK's own
    delivery errors."""
    require_node()
    assert (JS_DIR / "node_modules" / "@segment" / "analytics-node").is_dir(), (
        "run `npm ci` in tests/e2e/js (scripts/test.sh does)"
    )
    args = ["node", "segment.mjs", url, key, run] + ([str(burst)] if burst else [])
    out = subprocess.run(args, cwd=JS_DIR, capture_output=True, text=True, timeout=timeout,
                         env={k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")})
    assert out.returncode == 0, f"segment.mjs exited {out.returncode}:\n{out.stderr}"
    lines = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    wire = Wire()
    for r in lines[:-1]:
        wire.add(WireRequest(r["method"], r["url"], {k.lower(): v for k, v in r["headers"].items()},
                             r["body"].encode(), r["status"], r["response_headers"], r["response_text"],
                             r["sent_at"], r["acked_at"]))
    return wire, lines[-1]["errors"]
