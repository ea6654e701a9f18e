"""End to end: bad requests get the right status and dead-letter entry; nothing else is lost.

Raw HTTP requests (not a tracker: trackers don't send these) break one rule each — malformed
base64, invalid JSON, wrong content type, non-string values, missing required fields, an unknown
event type, a body over the drop limit (413, never stored) and one over `max_payload_bytes`
(accepted, dead-lettered as `size_violation`) — interleaved with good events. Afterwards every
good event is in ClickHouse, `sluice dlq list --json` (run with the daemon stopped: the store
allows one process at a time) holds each accepted bad request under the right category, and the
daemon answered `/health` throughout.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from pathlib import Path

import requests

from pipeline import Pipeline
from sluice_e2e import TP2_ROUTE, wal_status

PAYLOAD_DATA = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4"
JSON_CT = "application/json; charset=utf-8"
# Small limits so the size cases stay small: above MAX_BODY → 413, above MAX_PAYLOAD → size_violation.
LIMITS = {
    "SLUICE_SERVER__MAX_BODY_BYTES": "256KiB",
    "SLUICE_COLLECTOR__MAX_PAYLOAD_BYTES": "64KiB",
    # One partition: the log is read in order, so "everything published" is one number.
    "SLUICE_WAL__PARTITIONS": "1",
}
TIMEOUT_S = 60.0


def good_event(marker: str) -> dict:
    return {"e": "se", "se_ca": "bad-input", "se_ac": "good", "se_la": marker, "eid": str(uuid.uuid4()),
            "tv": "e2e-0", "p": "srv", "dtm": str(int(time.time() * 1000))}


def tp2(events: list) -> str:
    return json.dumps({"schema": PAYLOAD_DATA, "data": events})


def b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def test_bad_requests_get_the_right_status_and_dead_letter_category(sluice_bin: Path, tmp_path: Path):
    run = uuid.uuid4().hex[:8]
    m = lambda name: f"{run}-{name}"  # noqa: E731  (a marker inside each request)
    pipe = Pipeline(sluice_bin, tmp_path, env=LIMITS)
    session = requests.Session()
    good_ids: set[str] = set()
    # marker → (expected HTTP status class, expected dead-letter category or None)
    cases: dict[str, tuple[str, str | None]] = {}
    try:
        d = pipe.daemon
        d.start()
        post = lambda body, ct=JSON_CT: session.post(d.url + TP2_ROUTE, data=body, headers={"Content-Type": ct}, timeout=10)  # noqa: E731
        get = lambda params: session.get(d.url + "/i", params=params, timeout=10)  # noqa: E731

        def send_good(tag: str) -> None:
            ev = good_event(m(f"good-{tag}"))
            r = post(tp2([ev]))
            assert r.status_code == 200, f"good request answered {r.status_code}: {r.text}"
            good_ids.add(ev["eid"])

        answers: dict[str, int] = {}
        send_good("first")

        # malformed base64 in ue_px (GET) and cx (POST)
        bad = {**good_event(m("b64-get")), "e": "ue", "ue_px": "%%%not*base64%%%"}
        answers[m("b64-get")] = get(bad).status_code
        cases[m("b64-get")] = ("2xx", "tracker_protocol_violation")
        bad = {**good_event(m("b64-post")), "cx": "@@@" + b64("{}")[:3] + "!!"}
        answers[m("b64-post")] = post(tp2([bad])).status_code
        cases[m("b64-post")] = ("2xx", "tracker_protocol_violation")
        send_good("after-b64")

        # invalid JSON body
        answers[m("json")] = post('{"schema": "' + PAYLOAD_DATA + '", "data": [{"se_la": "' + m("json") + '",').status_code
        cases[m("json")] = ("2xx", "tracker_protocol_violation")
        # wrong content type
        answers[m("ctype")] = post(tp2([good_event(m("ctype"))]), ct="text/plain").status_code
        cases[m("ctype")] = ("2xx", "tracker_protocol_violation")
        send_good("after-json")

        # non-string values
        bad = {**good_event(m("nonstring")), "se_va": 3.5, "dtm": 1700000000000}
        answers[m("nonstring")] = post(tp2([bad])).status_code
        cases[m("nonstring")] = ("2xx", "tracker_protocol_violation")
        # missing required fields (tv, p, e)
        bad = {k: v for k, v in good_event(m("missing")).items() if k not in ("tv", "p", "e")}
        answers[m("missing")] = post(tp2([bad])).status_code
        cases[m("missing")] = ("2xx", "tracker_protocol_violation")
        # unknown event type
        bad = {**good_event(m("etype")), "e": "no_such_type"}
        answers[m("etype")] = get(bad).status_code
        cases[m("etype")] = ("2xx", "schema_violation")
        send_good("after-fields")

        # over max_payload_bytes (64 KiB) but under the drop limit: accepted, dead-lettered whole
        big = {**good_event(m("payload")), "se_pr": "x" * (100 * 1024)}
        answers[m("payload")] = post(tp2([big])).status_code
        cases[m("payload")] = ("2xx", "size_violation")
        # over the drop limit (256 KiB): 413, nothing stored
        huge = {**good_event(m("dropped")), "se_pr": "y" * (300 * 1024)}
        answers[m("dropped")] = post(tp2([huge])).status_code
        cases[m("dropped")] = ("413", None)
        send_good("last")

        assert d.health() == 200, f"daemon not healthy after bad input\n{d.log_tail()}"
        wrong_status = {
            k: (answers[k], want) for k, (want, _) in cases.items()
            if not (200 <= answers[k] < 300 if want == "2xx" else str(answers[k]) == want)
        }
        assert not wrong_status, f"wrong answers (got, want): {wrong_status}"

        counts = pipe.wait_for_event_ids(good_ids, TIMEOUT_S)
        assert good_ids <= counts.keys(), f"good events missing from ClickHouse: {good_ids - counts.keys()}\n{d.log_tail()}"
        # Wait until the publisher has checkpointed everything (dead letters are flushed first).
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            st = wal_status(d)
            if st["unpublished"] == 0:
                break
            assert time.monotonic() < deadline, f"log not fully published: {st}\n{d.log_tail()}"
            time.sleep(0.2)
        assert d.terminate() == 0, d.log_tail()
    finally:
        pipe.close()

    r = pipe.cli("dlq", "list", "--json")
    assert r.returncode == 0, f"dlq list exited {r.returncode}: {r.stderr}"
    text = r.stdout.strip()
    entries = json.loads(text) if text.startswith("[") else [json.loads(line) for line in text.splitlines() if line.strip()]
    found: dict[str, set[str]] = {}
    for e in entries:
        env = e.get("envelope") or {}
        blob = (env.get("query") or "") + (env.get("body") or "") + json.dumps(e.get("event_payload") or "")
        for marker in cases:
            if marker in blob:
                found.setdefault(marker, set()).add(e["category"])
    wrong = {k: (found.get(k), cat) for k, (_, cat) in cases.items() if (found.get(k) or None) != ({cat} if cat else None)}
    print(f"{len(entries)} dead-letter entries: " + ", ".join(f"{k.split('-', 1)[1]}={sorted(v)}" for k, v in sorted(found.items())))
    assert not wrong, f"dead-letter categories (got, want) per request: {wrong}"
    # No good event was dead-lettered.
    assert not any("-good-" in json.dumps(e) for e in entries), "a good event was dead-lettered"
