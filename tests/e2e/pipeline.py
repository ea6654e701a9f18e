"""Test support for the delivery tests: the daemon publishing into a real ClickHouse, a record of
what the collector acknowledged (seen on the wire), and the expected row of every tracker event.

- `Pipeline` = a `ClickHouse` (tests/e2e/clickhouse.py) + `sluice db init` + a `Daemon` started
  with `--clickhouse-url` and a short batch age, so rows appear fast. Always `close()` it.
- `AckLog` hooks a `requests.Session`: for every request that got a 2xx it records each event in
  it (POST tp2 `data` items, or the GET `/i` query) by event id, with the acknowledgement time and
  the `sp` cookie the collector answered with.
- `expected_row(params)` is what Snowplow's tracker protocol and enrich (`EnrichmentManager`,
  `EventEnrichments`) say one event's row holds; `check_row(row, ...)` compares a ClickHouse row with it and lists the differences.
"""

from __future__ import annotations

import base64
import json
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from clickhouse import ClickHouse
from sluice_e2e import Daemon, DaemonError, run_cli

# The table `sluice db init` creates.
EVENTS_TABLE = "sluice.events"
# Publisher settings for the tests: small batches flushed after 200 ms, so rows appear fast
# ([publish] batch_age, src/publish/mod.rs).
FAST_PUBLISH = {
    "SLUICE_PUBLISH__BATCH_AGE": "200ms",
    "SLUICE_LOG__LEVEL": "warn",
}

EVENT_TYPES = {
    "pv": "page_view",
    "pp": "page_ping",
    "se": "struct",
    "ue": "unstruct",
    "tr": "transaction",
    "ti": "transaction_item",
}
# event_vendor/name/format/version of the non-self-describing types (enrich's `EnrichmentManager`).
EVENT_SCHEMAS = {
    "page_view": ("com.snowplowanalytics.snowplow", "page_view"),
    "page_ping": ("com.snowplowanalytics.snowplow", "page_ping"),
    "transaction": ("com.snowplowanalytics.snowplow", "transaction"),
    "transaction_item": ("com.snowplowanalytics.snowplow", "transaction_item"),
    "struct": ("com.google.analytics", "event"),
}

# Tracker parameter → column, copied as text.
TEXT_FIELDS = {
    "aid": "app_id",
    "p": "platform",
    "tv": "v_tracker",
    "tna": "name_tracker",
    "uid": "user_id",
    "duid": "domain_userid",
    "sid": "domain_sessionid",
    "page": "page_title",
    "refr": "page_referrer",
    "se_ca": "se_category",
    "se_ac": "se_action",
    "se_la": "se_label",
    "se_pr": "se_property",
    "tr_id": "tr_orderid",
    "tr_af": "tr_affiliation",
    "tr_ci": "tr_city",
    "tr_st": "tr_state",
    "tr_co": "tr_country",
    "tr_cu": "tr_currency",
    "ti_id": "ti_orderid",
    "ti_sk": "ti_sku",
    "ti_nm": "ti_name",
    "ti_ca": "ti_category",
    "ti_cu": "ti_currency",
}
FLOAT_FIELDS = {
    "se_va": "se_value",
    "tr_tt": "tr_total",
    "tr_tx": "tr_tax",
    "tr_sh": "tr_shipping",
    "ti_pr": "ti_price",
}
INT_FIELDS = {
    "ti_qu": "ti_quantity",
    "vid": "domain_sessionidx",
    "pp_mix": "pp_xoffset_min",
    "pp_max": "pp_xoffset_max",
    "pp_miy": "pp_yoffset_min",
    "pp_may": "pp_yoffset_max",
}
TIMESTAMP_FIELDS = {"dtm": "dvce_created_tstamp", "stm": "dvce_sent_tstamp", "ttm": "true_tstamp"}


def b64decode_lenient(text: str) -> bytes:
    """Base64 in either alphabet, padding optional (as trackers send it)."""
    text = text.replace("-", "+").replace("_", "/")
    return base64.b64decode(text + "=" * (-len(text) % 4))


def json_param(params: dict, plain: str, encoded: str):
    if plain in params:
        return json.loads(params[plain])
    if encoded in params:
        return json.loads(b64decode_lenient(params[encoded]))
    return None


@dataclass
class Ack:
    """One event of one acknowledged request."""

    params: dict
    acked_at: float  # time.time() when the 2xx arrived
    sent_at: float  # time.time() when the request went out (acked_at - elapsed)
    method: str
    sp_cookie: str | None  # the `sp` cookie the collector set in its answer


class AckLog:
    """Every event the collector acknowledged (2xx), by event id. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.events: dict[str, Ack] = {}
        self.acked_requests = 0
        self.failed_requests = 0
        self.statuses: dict[int, int] = {}

    def hook(self, session) -> None:
        session.hooks["response"].append(self.response_hook)

    def response_hook(self, response, *args, **kwargs):
        now = time.time()
        req = response.request
        with self._lock:
            self.statuses[response.status_code] = self.statuses.get(response.status_code, 0) + 1
        if not 200 <= response.status_code < 300:
            with self._lock:
                self.failed_requests += 1
            return response
        cookie = response.cookies.get("sp")
        sent = now - response.elapsed.total_seconds()
        self.record(req.method, req.url, req.body, now, sent, cookie)
        return response

    def record(self, method: str, url: str, body, acked_at: float, sent_at: float, cookie: str | None) -> None:
        if method == "GET":
            events = [{k: v[0] for k, v in parse_qs(urlsplit(url).query, keep_blank_values=True).items()}]
        else:
            text = body.decode() if isinstance(body, bytes) else body
            events = json.loads(text)["data"]
        with self._lock:
            self.acked_requests += 1
            for ev in events:
                if "eid" in ev:
                    self.events[ev["eid"]] = Ack(ev, acked_at, sent_at, method, cookie)

    def snapshot(self) -> dict[str, Ack]:
        with self._lock:
            return dict(self.events)


class Pipeline:
    """ClickHouse + `sluice db init` + `sluice serve --clickhouse-url`. Call `close()` in a finally."""

    def __init__(
        self,
        sluice_bin: Path,
        tmp_path: Path,
        env: dict[str, str] | None = None,
        own_clickhouse: bool = False,
        server: type[ClickHouse] = ClickHouse,
    ):
        self.tmp_path = tmp_path
        self.ch: ClickHouse | None = None
        self.daemon: Daemon | None = None
        # `own_clickhouse`: a server this pipeline starts (and may kill), whatever
        # SLUICE_TEST_CLICKHOUSE_URL says. `server`: which kind (e.g. chdb_front.ChdbFront).
        self.ch = server.start(tmp_path, own=own_clickhouse)
        self.env_extra = {**FAST_PUBLISH, **(env or {})}
        self.daemon = Daemon(
            sluice_bin,
            tmp_path / "data",
            tmp_path / "daemon.log",
            env=self.env_extra,
            extra_args=["--clickhouse-url", self.ch.url],
        )
        try:
            self.db_init()
        except BaseException:
            self.close()
            raise

    def db_init(self) -> None:
        assert self.daemon is not None and self.ch is not None
        r = run_cli(self.daemon.binary, "db", "init", "--clickhouse-url", self.ch.url, env=self.daemon.env)
        if r.returncode != 0:
            raise DaemonError(f"sluice db init exited {r.returncode}:\n{r.stdout}\n{r.stderr}")

    def close(self) -> None:
        try:
            if self.daemon is not None:
                self.daemon.kill()
        finally:
            if self.ch is not None:
                self.ch.stop()

    def cli(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
        """`sluice ARGS... --data-dir DIR` with the daemon's configuration."""
        assert self.daemon is not None
        return run_cli(self.daemon.binary, *args, "--data-dir", str(self.daemon.data_dir), env=self.daemon.env, timeout=timeout)

    def event_ids_in_clickhouse(self) -> dict[str, int]:
        """event_id → number of rows holding it."""
        assert self.ch is not None
        rows = self.ch.query_rows(f"SELECT toString(event_id) AS id, count() AS n FROM {EVENTS_TABLE} GROUP BY id")
        return {r["id"]: int(r["n"]) for r in rows}

    def wait_for_event_ids(self, ids: set[str], timeout: float) -> dict[str, int]:
        """Poll until every id in `ids` has a row (or `timeout` passes); returns the last counts."""
        deadline = time.monotonic() + timeout
        while True:
            counts = self.event_ids_in_clickhouse()
            if ids <= counts.keys() or time.monotonic() > deadline:
                return counts
            time.sleep(0.2)

    def rows(self, where: str = "1") -> list[dict]:
        """Every row matching the SQL condition `where`, timestamps as Unix milliseconds whatever
        the column type, UUIDs as text. Sets `timestamp_precision_ms` (1, or 1000 for DateTime)."""
        assert self.ch is not None
        cols = self.ch.columns(EVENTS_TABLE)
        select = []
        for name, typ in cols.items():
            if "DateTime64" in typ:
                select.append(f"toUnixTimestamp64Milli({name}) AS {name}")
            elif "DateTime" in typ:
                select.append(f"toUInt64(toUnixTimestamp({name})) * 1000 AS {name}")
            elif "UUID" in typ:
                select.append(f"toString({name}) AS {name}")
            else:
                select.append(name)
        self.timestamp_precision_ms = 1 if any("DateTime64" in t for t in cols.values()) else 1000
        return self.ch.query_rows(f"SELECT {', '.join(select)} FROM {EVENTS_TABLE} WHERE {where}")

    def rows_by_event_id(self, ids: set[str]) -> dict[str, dict]:
        """The rows of `ids`, timestamps as Unix milliseconds whatever the column type."""
        id_list = ",".join(f"'{i}'" for i in sorted(ids))
        rows = self.rows(f"toString(event_id) IN ({id_list})")
        return {r["event_id"]: r for r in rows}


def _num(v):
    return None if v is None else float(v)


def _url_parts(url: str) -> dict:
    u = urlsplit(url)
    port = u.port if u.port is not None else (443 if u.scheme == "https" else 80)
    return {
        "scheme": u.scheme,
        "host": u.hostname,
        "port": port,
        "path": u.path,
        "query": u.query or None,
        "fragment": u.fragment or None,
    }


def expected_row(ack: Ack) -> dict:
    """The values a row must hold for one acknowledged tracker event (None = no value)."""
    p = ack.params
    exp: dict = {"event_id": p["eid"], "source": "snowplow"}
    for param, col in TEXT_FIELDS.items():
        if param in p:
            exp[col] = p[param]
    for param, col in FLOAT_FIELDS.items():
        if param in p:
            exp[col] = float(p[param])
    for param, col in INT_FIELDS.items():
        if param in p:
            exp[col] = int(p[param])
    for param, col in TIMESTAMP_FIELDS.items():
        if param in p:
            exp[col] = int(p[param])
    event = EVENT_TYPES[p["e"]]
    exp["event"] = event
    if event == "unstruct":
        ue = json_param(p, "ue_pr", "ue_px")
        # iglu:vendor/name/format/version
        vendor, name, fmt, version = ue["data"]["schema"][len("iglu:") :].split("/")
        exp.update(event_vendor=vendor, event_name=name, event_format=fmt, event_version=version)
        exp["unstruct_event"] = ue
    else:
        vendor, name = EVENT_SCHEMAS[event]
        exp.update(event_vendor=vendor, event_name=name, event_format="jsonschema", event_version="1-0-0")
    contexts = json_param(p, "co", "cx")
    if contexts is not None:
        exp["contexts"] = contexts
    if "url" in p:
        exp["page_url"] = p["url"]
        parts = _url_parts(p["url"])
        for k, v in parts.items():
            exp[f"page_url{k}"] = v
        q = {k: v[0] for k, v in parse_qs(urlsplit(p["url"]).query).items()}
        for utm, col in (("utm_source", "mkt_source"), ("utm_medium", "mkt_medium"), ("utm_campaign", "mkt_campaign"),
                         ("utm_term", "mkt_term"), ("utm_content", "mkt_content")):
            if utm in q:
                exp[col] = q[utm]
    if "refr" in p:
        parts = _url_parts(p["refr"])
        exp["refr_urlhost"] = parts["host"]
        exp["refr_urlpath"] = parts["path"]
    # network_userid: tnuid beats nuid beats the collector's cookie (enrich's `CollectorPayload` → `nuid`).
    nuid = p.get("tnuid") or p.get("nuid") or ack.sp_cookie
    if nuid:
        exp["network_userid"] = nuid
    return exp


def _same(actual, expected) -> bool:
    if isinstance(expected, (dict, list)):
        if actual is None:
            return False
        return (json.loads(actual) if isinstance(actual, str) else actual) == expected
    if isinstance(expected, float):
        return actual is not None and abs(float(actual) - expected) < 1e-6 * max(1.0, abs(expected))
    if isinstance(expected, int) and not isinstance(expected, bool):
        return actual is not None and int(actual) == expected
    if expected is None:
        return actual in (None, "", 0, "0")
    return actual == expected


def check_row(row: dict, ack: Ack, precision_ms: int) -> list[str]:
    """Differences between `row` and what the event must produce ([] when all is right)."""
    problems = []
    exp = expected_row(ack)
    for col, want in exp.items():
        if col not in row:
            continue  # an optional column the table does not have
        got = row[col]
        if col in TIMESTAMP_FIELDS.values():
            want = want // precision_ms * precision_ms
        if not _same(got, want):
            problems.append(f"{col}: got {got!r}, want {want!r}")
    # collector_tstamp: when the request reached the collector, between send and acknowledgement.
    ct = row.get("collector_tstamp")
    lo = int(ack.sent_at * 1000) // precision_ms * precision_ms - 1000
    hi = int(ack.acked_at * 1000) + 1000
    if ct is None or not lo <= int(ct) <= hi:
        problems.append(f"collector_tstamp {ct!r} not within [{lo}, {hi}]")
    # derived_tstamp (enrich's `EventEnrichments.getDerivedTimestamp`): true_tstamp, else collector − (sent − created), else collector.
    if "derived_tstamp" in row and ct is not None:
        p = ack.params
        if "ttm" in p:
            want = int(p["ttm"])
        elif "dtm" in p and "stm" in p and int(p["dtm"]) < int(p["stm"]):
            want = int(ct) - (int(p["stm"]) - int(p["dtm"]))
        else:
            want = int(ct)
        got = row["derived_tstamp"]
        # ct is already truncated to the column's precision: allow one unit either side.
        if got is None or abs(int(got) - want) > precision_ms + 1000 * (precision_ms > 1):
            problems.append(f"derived_tstamp: got {got!r}, want about {want!r}")
    if "v_collector" in row and not row["v_collector"]:
        problems.append("v_collector is empty")
    return problems


@dataclass
class Comparison:
    missing: list[str] = field(default_factory=list)
    wrong: dict[str, list[str]] = field(default_factory=dict)

    def describe(self, acks: dict[str, Ack], limit: int = 8) -> str:
        lines = [f"{len(self.missing)} acknowledged events missing from ClickHouse, e.g. {self.missing[:5]}"]
        for eid, probs in list(self.wrong.items())[:limit]:
            lines.append(f"event {eid} (e={acks[eid].params.get('e')}, {acks[eid].method}): " + "; ".join(probs))
        return "\n".join(lines)


def compare(pipeline: Pipeline, acks: dict[str, Ack]) -> Comparison:
    rows = pipeline.rows_by_event_id(set(acks))
    out = Comparison()
    for eid, ack in sorted(acks.items()):
        row = rows.get(eid)
        if row is None:
            out.missing.append(eid)
            continue
        probs = check_row(row, ack, pipeline.timestamp_precision_ms)
        if probs:
            out.wrong[eid] = probs
    return out
