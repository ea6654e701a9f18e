"""End to end into ClickHouse: pycolytics clients and the generic /collect routes.

pycolytics: requests shaped exactly as its clients (e.g. the Godot plugin) send them — one event
to `POST /v1.0/event`, a JSON array to `POST /v1.0/events`, `api_key` in the body — with keys
configured through `SLUICE_PYCOLYTICS__API_KEYS`. Accepted requests get 204 and every event
lands once with `event_type` → event_name, `application` → app_id, `version` → app_version,
`platform`, `user_id`, `session_id` → domain_sessionid, `value` → properties; the key is in no
column. An empty batch is 204 (pycolytics answers 500); a missing or wrong key is 401 (a missing
key never passes; one bad key fails the whole batch); a wrong shape is 422 with a message.

collect: any JSON object or array of objects → 202, one row per object, `stream` = the last
path segment percent-decoded (empty for plain /collect); an object that is a Segment message is
mapped like Segment; invalid JSON → 400; a configured key is required in the `X-API-Key` header
(`auth.header`, which can be renamed, and which also carries `auth.snowplow_keys`).
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import requests

from pipeline import Pipeline
from sources import (
    SegmentAck,
    WireRequest,
    check_pycolytics_row,
    check_segment_row,
    post,
    is_uuid,
    metrics_text,
    rejections,
    rows_by,
    same_json,
    same_text,
    wait_for_rows,
    wait_published,
)


def pyco_event(run: str, i: int, key: str | None, **over) -> dict:
    ev = {
        "event_type": "level_complete",
        "application": "godot-game",
        "version": "1.4.2",
        "platform": "Linux",
        "user_id": f"player-{run}",
        "session_id": f"sess-{run}-{i}",
        "value": {"level": i, "score": 12.5, "name": "ünïcode ✓", "tags": ["a", "b"]},
    }
    if key is not None:
        ev["api_key"] = key
    ev.update(over)
    return ev


def test_pycolytics_requests_land_in_clickhouse_and_bad_ones_get_401_or_422(sluice_bin: Path, tmp_path: Path):
    run = uuid.uuid4().hex[:8]
    key, key2 = f"pk-{run}", f"pk2-{run}"
    env = {"SLUICE_PYCOLYTICS__API_KEYS": json.dumps([key, key2])}
    pipe = Pipeline(sluice_bin, tmp_path, env=env)
    session = requests.Session()
    # session_id → (event, sent_at, acked_at) of every event that must land
    accepted: dict[str, tuple[dict, float, float]] = {}
    rejected: set[str] = set()
    answers: list[str] = []
    try:
        d = pipe.daemon
        d.start()

        def expect(path: str, body, status: int, must_land: list[dict], raw: bytes | None = None):
            r = post(session, d.url, path, body, raw=raw)
            answers.append(f"{path} -> {r.status}")
            assert r.status == status, f"{path} {json.dumps(body)[:200]}: answered {r.status} {r.text!r}, want {status}"
            events = must_land if status == 204 else []
            for ev in events:
                accepted[ev["session_id"]] = (ev, r.sent_at, r.acked_at)
            if status != 204:
                for ev in must_land:
                    rejected.add(ev["session_id"])
            return r

        # One event; then a batch of three (one with the second key, one without `value`).
        e1 = pyco_event(run, 1, key)
        r = expect("/v1.0/event", e1, 204, [e1])
        assert r.text == "", f"204 with a body: {r.text!r}"
        batch = [pyco_event(run, 2, key), pyco_event(run, 3, key2, platform="Android"), pyco_event(run, 4, key)]
        del batch[2]["value"]
        expect("/v1.0/events", batch, 204, batch)
        # An empty batch is 204 (pycolytics itself answers 500).
        expect("/v1.0/events", [], 204, [])

        # Missing or wrong key: 401, nothing stored. One bad key fails the whole batch.
        e = pyco_event(run, 10, None)
        r = expect("/v1.0/event", e, 401, [e])
        assert "key" in r.text.lower(), f"401 without a message about the key: {r.text!r}"
        e = pyco_event(run, 11, "wrong-key")
        expect("/v1.0/event", e, 401, [e])
        e = pyco_event(run, 12, "")
        expect("/v1.0/event", e, 401, [e])
        b = [pyco_event(run, 13, key), pyco_event(run, 14, "wrong-key")]
        expect("/v1.0/events", b, 401, b)
        b = [pyco_event(run, 15, key), pyco_event(run, 16, None)]
        expect("/v1.0/events", b, 401, b)

        # Wrong shape: 422 with a message. `value` must be an object; fields are strings.
        for i, bad in enumerate([
            pyco_event(run, 20, key, value=[1, 2]),
            pyco_event(run, 21, key, value="text"),
            {k: v for k, v in pyco_event(run, 22, key).items() if k != "event_type"},
            pyco_event(run, 23, key, user_id=42),
        ]):
            r = expect("/v1.0/event", bad, 422, [bad])
            assert len(r.text) > 0, f"422 without a message for case {i}"
        b = [pyco_event(run, 24, key), pyco_event(run, 25, key, value=7)]
        expect("/v1.0/events", b, 422, b)
        # A single object to the batch route, and an array to the single route.
        e = pyco_event(run, 26, key)
        expect("/v1.0/events", e, 422, [e])
        e = pyco_event(run, 27, key)
        expect("/v1.0/event", [e], 422, [e])
        # Not JSON at all: 400 (or 422, as pycolytics answers).
        r = post(session, d.url, "/v1.0/event", raw=b'{"event_type": "x",')
        assert r.status in (400, 422), f"malformed JSON answered {r.status}"

        e5 = pyco_event(run, 5, key)
        expect("/v1.0/event", e5, 204, [e5])

        rows = wait_for_rows(pipe, "domain_sessionid", set(accepted))
        wait_published(pipe)
        rows = rows_by(pipe, "domain_sessionid")
        problems = []
        for sid, (ev, t0, t1) in sorted(accepted.items()):
            rs = rows.get(sid, [])
            if len(rs) != 1:
                problems.append(f"{sid}: {len(rs)} rows")
                continue
            probs = check_pycolytics_row(rs[0], ev, t0, t1, pipe.timestamp_precision_ms, [key, key2])
            if probs:
                problems.append(f"{sid}: " + "; ".join(probs))
        stored_rejects = sorted(rejected & rows.keys())
        if stored_rejects:
            problems.append(f"rejected events stored: {stored_rejects}")
        # The refusals are counted by reason: 5 requests with a bad key, 8 with a wrong shape.
        m = metrics_text(pipe)
        if rejections(m, "auth", "pycolytics") != 5:
            problems.append(f"auth rejections metric {rejections(m, 'auth', 'pycolytics')}, want 5")
        if rejections(m, "invalid", "pycolytics") != 8:
            problems.append(f"invalid rejections metric {rejections(m, 'invalid', 'pycolytics')}, want 8")
        assert not problems, "\n".join(problems) + "\n" + d.log_tail()
        print(f"pycolytics: {len(accepted)} events in ClickHouse as sent; {len(rejected)} refused, none stored")
    finally:
        pipe.close()


def find_by_marker(rows: list[dict], marker: str) -> list[dict]:
    """The rows whose JSON columns mention `marker` (the generic objects carry one)."""
    return [r for r in rows if any(marker in str(r.get(c) or "") for c in ("properties", "context", "traits", "unstruct_event"))]


def test_collect_objects_and_arrays_land_with_their_stream(sluice_bin: Path, tmp_path: Path):
    run = uuid.uuid4().hex[:8]
    key = f"ck-{run}"
    pipe = Pipeline(sluice_bin, tmp_path, env={"SLUICE_COLLECT__API_KEYS": json.dumps([key])})
    session = requests.Session()
    hdr = {"X-API-Key": key}
    try:
        d = pipe.daemon
        d.start()
        m = lambda name: f"{run}-{name}"  # noqa: E731
        sent: dict[str, str] = {}  # marker → stream the row must have
        objects: dict[str, dict] = {}  # marker → the object sent
        t_start = time.time()

        def accept(path, body, stream, generic=True):
            r = post(session, d.url, path, body, headers=hdr)
            assert r.status == 202, f"{path}: answered {r.status} {r.text!r}, want 202\n{d.log_tail()}"
            objs = body if isinstance(body, list) else [body]
            for o in objs if generic else []:
                sent[o["marker"]] = stream
                objects[o["marker"]] = o
            return r

        accept("/collect", {"marker": m("plain"), "action": "open", "n": 1, "nested": {"a": [1, 2]}}, "")
        accept("/collect/orders", [{"marker": m("o1"), "total": 9.5}, {"marker": m("o2"), "total": 1}], "orders")
        accept("/collect/my%20stream", {"marker": m("space"), "s": "ünïcode ✓"}, "my stream")
        accept("/collect/clicks", [{"marker": m("c1")}], "clicks")

        # A Segment message sent to /collect is mapped like Segment.
        mid = str(uuid.uuid4())
        seg = {
            "type": "track", "event": "Signed Up", "userId": f"u-{run}", "anonymousId": f"a-{run}",
            "messageId": mid, "timestamp": "2026-01-02T03:04:05.678Z", "sentAt": "2026-01-02T03:04:06.000Z",
            "properties": {"plan": "pro", "marker": m("seg")},
            "context": {"page": {"url": "https://www.sluice.test/signup?x=1", "title": "Sign up"},
                        "campaign": {"source": "ads", "medium": "cpc", "name": "spring"}},
        }
        seg_req = accept("/collect/segment-ish", seg, "segment-ish", generic=False)

        # Refused: invalid JSON 400; a JSON scalar is neither an object nor an array of objects;
        # a missing or wrong key 401.
        for raw, want in ((b'{"marker": "bad', (400,)), (b"42", (400, 422)), (b'"text"', (400, 422)), (b"[1, 2]", (400, 422))):
            r = post(session, d.url, "/collect/bad", raw=raw, headers=hdr)
            assert r.status in want, f"/collect {raw!r}: answered {r.status}, want {want}"
            assert r.text.strip(), f"/collect {raw!r}: {r.status} without a message"
        r = post(session, d.url, "/collect", {"marker": m("nokey")})
        assert r.status == 401, f"/collect without a key: {r.status}"
        r = post(session, d.url, "/collect", {"marker": m("wrongkey")}, headers={"X-API-Key": "nope"})
        assert r.status == 401, f"/collect with a wrong key: {r.status}"

        t_end = time.time()
        wait_published(pipe)
        rows = pipe.rows()
        problems = []
        ua = requests.utils.default_user_agent()
        for marker, stream in sorted(sent.items()):
            rs = find_by_marker(rows, marker)
            if len(rs) != 1:
                problems.append(f"{marker}: {len(rs)} rows")
                continue
            row = rs[0]
            for col, want in (("source", "collect"), ("event", "collect"), ("stream", stream),
                              ("user_ipaddress", "127.0.0.1"), ("useragent", ua)):
                if not same_text(row.get(col), want):
                    problems.append(f"{marker}: {col} = {row.get(col)!r}, want {want!r}")
            if not same_json(row.get("properties"), objects[marker]):
                problems.append(f"{marker}: properties {row.get('properties')!r}, want {objects[marker]}")
            ct = int(row.get("collector_tstamp") or 0)
            if not int(t_start * 1000) - 2000 <= ct <= int(t_end * 1000) + 1000 or int(row.get("derived_tstamp") or 0) != ct:
                problems.append(f"{marker}: collector_tstamp {ct}, derived_tstamp {row.get('derived_tstamp')} "
                                f"not the receive time in [{t_start:.0f}, {t_end:.0f}] s")
            if not is_uuid(row.get("event_id")):
                problems.append(f"{marker}: event_id {row.get('event_id')!r}")
        for marker in (m("nokey"), m("wrongkey"), "bad"):
            if find_by_marker(rows, marker):
                problems.append(f"refused object {marker} was stored")
        # The Segment-shaped object: Segment's mapping, source "collect".
        seg_rows = [r for r in rows if r.get("message_id") == mid]
        if len(seg_rows) != 1:
            problems.append(f"Segment message via /collect: {len(seg_rows)} rows by message_id")
        else:
            wr = WireRequest("POST", d.url + "/collect/segment-ish", {}, b"", 202, {}, "", seg_req.sent_at, seg_req.acked_at)
            probs = check_segment_row(seg_rows[0], SegmentAck(seg, {}, wr), pipe.timestamp_precision_ms, source="collect", secrets=[key])
            problems += [f"Segment message via /collect: {p}" for p in probs]
            if seg_rows[0].get("stream") != "segment-ish":
                problems.append(f"Segment message via /collect: stream {seg_rows[0].get('stream')!r}")
        assert not problems, "\n".join(problems) + "\n" + d.log_tail()
        print(f"collect: {len(sent)} objects in ClickHouse with their stream; refused ones not stored")
    finally:
        pipe.close()


def test_the_key_header_is_configurable_and_guards_collect_and_snowplow_routes(sluice_bin: Path, tmp_path: Path):
    """`auth.header` renamed, `collect.api_keys` and `auth.snowplow_keys` set: the key passes only
    in the configured header, on /collect and on the Snowplow POST route."""
    run = uuid.uuid4().hex[:8]
    ck, sk = f"ck-{run}", f"sk-{run}"
    pipe = Pipeline(sluice_bin, tmp_path, env={
        "SLUICE_AUTH__HEADER": "X-Collector-Key",
        "SLUICE_COLLECT__API_KEYS": json.dumps([ck]),
        "SLUICE_AUTH__SNOWPLOW_KEYS": json.dumps([sk]),
    })
    session = requests.Session()
    try:
        d = pipe.daemon
        d.start()
        r = post(session, d.url, "/collect/k", {"marker": f"{run}-old-header"}, headers={"X-API-Key": ck})
        assert r.status == 401, f"key in the default header once it is renamed: {r.status}"
        r = post(session, d.url, "/collect/k", {"marker": f"{run}-new-header"}, headers={"X-Collector-Key": ck})
        assert r.status == 202, f"key in the configured header: {r.status} {r.text!r}"
        r = post(session, d.url, "/collect/k", {"marker": f"{run}-snowplow-key"}, headers={"X-Collector-Key": sk})
        assert r.status == 401, f"a Snowplow key on /collect: {r.status}"

        def tp2(eid: str, headers: dict) -> int:
            body = {"schema": "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4",
                    "data": [{"e": "se", "se_ca": "keys", "se_ac": "a", "eid": eid, "tv": "e2e-0", "p": "srv"}]}
            return post(session, d.url, "/com.snowplowanalytics.snowplow/tp2", body, headers=headers).status

        ok_eid, bad_eids = str(uuid.uuid4()), [str(uuid.uuid4()) for _ in range(3)]
        assert tp2(bad_eids[0], {}) == 401, "Snowplow POST without a key"
        assert tp2(bad_eids[1], {"X-Collector-Key": "wrong"}) == 401, "Snowplow POST with a wrong key"
        assert tp2(bad_eids[2], {"X-Collector-Key": ck}) == 401, "a collect key on the Snowplow route"
        assert tp2(ok_eid, {"X-Collector-Key": sk}) == 200, "Snowplow POST with its key"
        wait_published(pipe)
        rows = pipe.rows()
        assert [r["stream"] for r in find_by_marker(rows, f"{run}-new-header")] == ["k"]
        assert not find_by_marker(rows, f"{run}-old-header") and not find_by_marker(rows, f"{run}-snowplow-key")
        eids = {r["event_id"] for r in rows}
        assert ok_eid in eids and not eids & set(bad_eids), f"Snowplow rows: {eids}"
        assert rows_by(pipe, "source")["snowplow"][0]["event_id"] == ok_eid
        assert rejections(metrics_text(pipe), "auth", "snowplow") == 3
        assert rejections(metrics_text(pipe), "auth", "collect") == 2
        print("key header: renamed header guards /collect and the Snowplow route; other keys and headers get 401")
    finally:
        pipe.close()


def test_collect_without_configured_keys_needs_no_key(sluice_bin: Path, tmp_path: Path):
    run = uuid.uuid4().hex[:8]
    pipe = Pipeline(sluice_bin, tmp_path)
    session = requests.Session()
    try:
        pipe.daemon.start()
        r = post(session, pipe.daemon.url, "/collect/open", [{"marker": f"{run}-open", "t": time.time()}])
        assert r.status == 202, f"answered {r.status} {r.text!r}"
        wait_published(pipe)
        rs = find_by_marker(pipe.rows(), f"{run}-open")
        assert len(rs) == 1 and rs[0].get("stream") == "open", rs
    finally:
        pipe.close()
