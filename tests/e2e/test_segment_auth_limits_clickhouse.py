"""End to end: write keys, rate limits, size limits, malformed JSON and gzip bombs.

- Keys configured through the environment (`SLUICE_SEGMENT__WRITE_KEYS='["k1","k2"]'`): a key is
  accepted as HTTP Basic auth (username = key, empty password), as `writeKey` in the body, or as
  `?writeKey=`, on every single-message route, its analytics.js short alias (`text/plain` JSON)
  and the batch routes; a wrong or missing key is 401 with a JSON `{code, message}`, and
  analytics-python with a wrong key gives up at once (no retries). Accepted messages land once;
  refused ones never.
- `SLUICE_LIMITS__PER_IP="60/min"` (burst 10): a burst through analytics-python meets 429 with
  `Retry-After`, the SDK waits and retries, and afterwards every message is in ClickHouse exactly
  once; the same for a concurrent burst through @segment/analytics-node.
- A message over 32 KiB → 413; a batch over 500 KiB → 413; more than 2500 items → 400
  `too_many_events`; malformed JSON → 400 with `{code, message}`; a small gzip body that
  inflates past the cap → 413; nothing of these is stored. A batch item over 32 KiB is dead-
  lettered (`size_violation`), items breaking Segment's per-type rules (`schema_violation`),
  while the rest of their batch loads.
- Hourly limits (so timing cannot matter): exactly a client's fourth request is refused;
  `X-Forwarded-For` picks the bucket (and user_ipaddress) only from trusted proxies; `per_key`
  limits each write key separately.
- `sluice_http_rejections_total{reason, source}` counts the refusals.
"""

from __future__ import annotations

import base64
import gzip
import json
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import requests

from pipeline import Pipeline
from sources import (
    SINGLE_ROUTES,
    Wire,
    acked_segment_messages,
    basic_auth,
    check_segment_rows,
    metrics_text,
    post,
    rejections,
    rows_by,
    run_node_segment,
    wait_published,
    wal_record_count,
)


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def message(typ: str, run: str, tag: str, with_type: bool = True) -> dict:
    """A minimal valid Segment message of `typ` (what analytics.js would send)."""
    msg = {"messageId": str(uuid.uuid4()), "userId": f"u-{run}", "anonymousId": f"a-{run}-{tag}",
           "timestamp": now_iso(), "sentAt": now_iso(), "context": {"library": {"name": "e2e-raw", "version": "0.0.1"}}}
    if with_type:
        msg["type"] = typ
    if typ == "track":
        msg.update(event=f"Raw {tag}", properties={"tag": tag})
    elif typ in ("page", "screen"):
        msg.update(name=f"Raw {tag}", properties={"tag": tag})
    elif typ in ("identify", "group"):
        msg["traits"] = {"tag": tag}
        if typ == "group":
            msg["groupId"] = f"g-{run}"
    elif typ == "alias":
        msg["previousId"] = f"a-{run}-{tag}"
    return msg


def assert_error_json(r, status: int, what: str) -> None:
    """A 4xx answer with the JSON body analytics-python needs: {"code": ..., "message": ...}."""
    assert r.status == status, f"{what}: answered {r.status} {r.text!r}, want {status}"
    try:
        body = json.loads(r.text)
    except ValueError:
        raise AssertionError(f"{what}: {status} body is not JSON: {r.text!r}") from None
    assert isinstance(body, dict) and body.get("code") and body.get("message"), f"{what}: body {r.text!r} lacks code/message"


def test_write_keys_in_each_of_the_three_places_are_accepted_and_wrong_or_missing_keys_get_401(
    sluice_bin: Path, tmp_path: Path
):
    from segment.analytics import request as seg_request
    from segment.analytics.client import Client

    run = uuid.uuid4().hex[:8]
    k1, k2 = f"k1-{run}", f"k2-{run}"
    pipe = Pipeline(sluice_bin, tmp_path, env={"SLUICE_SEGMENT__WRITE_KEYS": json.dumps([k1, k2])})
    session = requests.Session()
    wire = Wire()
    wire.hook(session)
    refused: list[str] = []
    n_401 = 0
    try:
        d = pipe.daemon
        d.start()

        def send(path, body, place, key, content_type="application/json"):
            headers, params = {"Content-Type": content_type}, None
            body = dict(body)
            if place == "basic":
                headers["Authorization"] = basic_auth(key)
            elif place == "body":
                body["writeKey"] = key
            elif place == "query":
                params = {"writeKey": key}
            return session.post(d.url + path, data=json.dumps(body), headers=headers, params=params, timeout=10)

        places = ["basic", "body", "query"]
        i = 0
        # Every single-message route and short alias, the key in each place in turn, both keys.
        for route, typ in SINGLE_ROUTES.items():
            short = len(route) == 1
            place = places[i % 3]
            key = (k1, k2)[i % 2]
            i += 1
            # analytics.js sends text/plain to the short aliases; the type is implied by the route.
            r = send(f"/v1/{route}", message(typ, run, f"{route}-{place}", with_type=not short), place, key,
                     "text/plain" if short else "application/json")
            assert r.status_code == 200 and r.json() == {"success": True}, (
                f"/v1/{route} key in {place}: {r.status_code} {r.text!r}\n{d.log_tail()}"
            )
        # Batch routes, each place, both keys.
        for j, (route, place) in enumerate([("batch", "basic"), ("batch", "body"), ("batch", "query"),
                                            ("import", "basic"), ("b", "body"), ("import", "query")]):
            items = [message(t, run, f"{route}-{place}-{j}") for t in ("identify", "track", "page")]
            body = {"batch": items, "sentAt": now_iso()}
            if j == 0:
                # The batch's context is merged into each item (the item's own keys win).
                body["context"] = {"ip": "192.0.2.9", "app": {"name": "batch-app", "version": "5.0"},
                                   "library": {"name": "batch-level", "version": "0"}}
                del items[0]["context"]
            r = send(f"/v1/{route}", body, place, (k1, k2)[j % 2])
            assert r.status_code == 200, f"/v1/{route} key in {place}: {r.status_code} {r.text!r}"

        # Refused: a wrong key in each place, no key at all, a key that is only a prefix, Basic
        # with the key as the password.
        def refuse(path, body, what, **kw):
            nonlocal n_401
            r = post(session, d.url, path, body, **kw)
            assert_error_json(r, 401, what)
            n_401 += 1
            refused.extend(m["messageId"] for m in (body.get("batch") or [body]))

        for place in places:
            b = message("track", run, f"wrong-{place}")
            if place == "basic":
                refuse("/v1/track", b, "wrong key as Basic auth", headers={"Authorization": basic_auth("wrong")})
            elif place == "body":
                refuse("/v1/track", {**b, "writeKey": "wrong"}, "wrong key in the body")
            else:
                refuse("/v1/track", b, "wrong key in the query", params={"writeKey": "wrong"})
        refuse("/v1/track", message("track", run, "missing"), "no key")
        refuse("/v1/batch", {"batch": [message("track", run, "missing-batch")]}, "no key, batch")
        refuse("/v1/t", message("track", run, "prefix"), "a prefix of a key", params={"writeKey": k1[:-1]})
        refuse("/v1/batch", {"batch": [message("page", run, "longer")], "writeKey": k1 + "x"}, "a longer key")
        pw = "Basic " + base64.b64encode(f":{k1}".encode()).decode()
        refuse("/v1/identify", message("identify", run, "as-password"), "key as the Basic password", headers={"Authorization": pw})

        # analytics-python with a wrong key: 401 is final, the SDK does not retry, nothing lands.
        sdk_wire, errors = Wire(), []
        sdk_wire.hook(seg_request._session)
        client = Client("not-a-key", host=d.url, upload_interval=0.1, max_retries=3, timeout=10,
                        on_error=lambda e, batch: errors.append((getattr(e, "status", None), [m["messageId"] for m in batch])))
        try:
            client.track(f"u-{run}", "Refused SDK event", properties={"x": 1})
            client.flush()
        finally:
            client.shutdown()
            sdk_wire.unhook()
        assert [s for s, _ in errors] == [401], f"SDK errors: {errors}"
        assert [r.status for r in sdk_wire.snapshot()] == [401], f"the SDK retried a 401: {sdk_wire.statuses()}"
        refused.extend(errors[0][1])
        n_401 += 1

        acks = acked_segment_messages(wire)
        assert len(acks) == 12 + 18, f"{len(acks)} messages acknowledged"
        report = check_segment_rows(pipe, acks, secrets=[k1, k2])
        assert not report, report + "\n" + d.log_tail()
        wait_published(pipe)
        rows = rows_by(pipe, "message_id")
        stored = [m for m in refused if m in rows]
        assert not stored, f"refused messages stored: {stored}"
        assert len(rows) == len(acks), f"{len(rows)} distinct message ids in the table, {len(acks)} acknowledged"
        m = metrics_text(pipe)
        assert rejections(m, "auth", "segment") == n_401, f"auth rejections metric != {n_401}:\n" + "\n".join(
            line for line in m.splitlines() if "rejections" in line)
        print(f"write keys: {len(acks)} messages accepted with the key in every place, {n_401} refused with 401")
    finally:
        wire.unhook()
        pipe.close()


def test_rate_limited_analytics_python_retries_after_429_and_every_message_lands_once(sluice_bin: Path, tmp_path: Path):
    from segment.analytics import request as seg_request
    from segment.analytics.client import Client

    run = uuid.uuid4().hex[:8]
    key = f"rl-{run}"
    n = 20
    # A burst of 10, then one request a second: whatever the machine's speed, the SDK (one
    # message per request, back to back) runs out of tokens after 10 and meets 429s.
    pipe = Pipeline(sluice_bin, tmp_path, env={
        "SLUICE_SEGMENT__WRITE_KEYS": json.dumps([key]),
        "SLUICE_LIMITS__PER_IP": "60/min",
        "SLUICE_LIMITS__BURST": "10",
    })
    wire, errors = Wire(), []
    try:
        d = pipe.daemon
        d.start()
        wire.hook(seg_request._session)
        # One message per request, sent as fast as the consumer thread can.
        client = Client(key, host=d.url, upload_interval=0.01, upload_size=1, max_retries=10, timeout=10,
                        on_error=lambda e, batch: errors.append(repr(e)))
        started = time.monotonic()
        try:
            for i in range(n):
                client.track(f"u-{run}", "Burst", properties={"i": i})
            client.flush()
        finally:
            client.shutdown()
            wire.unhook()
        took = time.monotonic() - started
        sent = wire.snapshot()
        limited = [r for r in sent if r.status == 429]
        assert not errors, f"SDK gave up: {errors}"
        assert limited, f"no 429 in {len(sent)} requests past the burst: {wire.statuses()}"
        for r in limited:
            ra = r.response_headers.get("retry-after")
            assert ra is not None and ra.isdigit() and 1 <= int(ra) <= 60, f"429 with Retry-After {ra!r}"
        assert all(r.status in (200, 429) for r in sent), wire.statuses()
        acks = acked_segment_messages(wire)
        assert len(acks) == n, f"{len(acks)} of {n} messages acknowledged"
        report = check_segment_rows(pipe, acks, secrets=[key])
        assert not report, report + "\n" + d.log_tail()
        wait_published(pipe)
        rows = rows_by(pipe, "message_id")
        assert set(rows) == set(acks) and all(len(v) == 1 for v in rows.values()), (
            f"{sum(len(v) for v in rows.values())} rows for {len(acks)} messages"
        )
        # The limit is per client IP across routes: pycolytics from the same address is limited too.
        statuses = [post(requests.Session(), d.url, "/v1.0/event", {
            "event_type": "x", "application": "a", "version": "1", "platform": "p", "user_id": "u",
            "session_id": f"s-{i}", "value": {}}).status for i in range(15)]
        assert 429 in statuses, f"a burst to /v1.0/event was never limited: {statuses}"
        assert rejections(metrics_text(pipe), "rate", "segment") >= len(limited)
        print(f"rate limit: {len(limited)} answers were 429; the SDK retried and all {n} messages "
              f"landed once in {took:.1f}s")
    finally:
        wire.unhook()
        pipe.close()


def test_rate_limited_analytics_node_waits_for_retry_after_and_every_message_lands_once(sluice_bin: Path, tmp_path: Path):
    """@segment/analytics-node sends a burst of one-message requests all at once; past the
    burst it gets 429 + Retry-After, waits (not counted as a retry), and delivers everything."""
    run = uuid.uuid4().hex[:8]
    key = f"rln-{run}"
    n = 16
    pipe = Pipeline(sluice_bin, tmp_path, env={
        "SLUICE_SEGMENT__WRITE_KEYS": json.dumps([key]),
        "SLUICE_LIMITS__PER_IP": "120/min",
        "SLUICE_LIMITS__BURST": "8",
    })
    try:
        d = pipe.daemon
        d.start()
        wire, errors = run_node_segment(d.url, key, run, burst=n, timeout=120)
        sent = wire.snapshot()
        limited = [r for r in sent if r.status == 429]
        assert not errors, f"SDK gave up: {errors}; answers {wire.statuses()}"
        assert limited, f"no 429 in {len(sent)} requests past the burst: {wire.statuses()}"
        assert all(r.response_headers.get("retry-after", "").isdigit() for r in limited)
        assert all(r.status in (200, 429) for r in sent), wire.statuses()
        acks = acked_segment_messages(wire)
        assert len(acks) == n, f"{len(acks)} of {n} messages acknowledged"
        report = check_segment_rows(pipe, acks, secrets=[key])
        assert not report, report + "\n" + d.log_tail()
        wait_published(pipe)
        rows = rows_by(pipe, "message_id")
        assert set(rows) == set(acks) and all(len(v) == 1 for v in rows.values()), (
            f"{sum(len(v) for v in rows.values())} rows for {len(acks)} messages"
        )
        print(f"rate limit (node): {len(limited)} answers were 429; all {n} messages landed once")
    finally:
        pipe.close()


def test_oversize_malformed_and_gzip_bombs_are_refused_and_nothing_of_them_is_stored(sluice_bin: Path, tmp_path: Path):
    run = uuid.uuid4().hex[:8]
    pipe = Pipeline(sluice_bin, tmp_path, env={"SLUICE_WAL__PARTITIONS": "1"})
    session = requests.Session()
    try:
        d = pipe.daemon
        d.start()
        url = d.url
        before = wal_record_count(pipe)

        # A message over 32 KiB to a single route: 413.
        big = message("track", run, "big-single")
        big["properties"]["pad"] = "x" * (40 * 1024)
        r = post(session, url, "/v1/track", big)
        assert_error_json(r, 413, "40 KiB /v1/track")
        # A batch over 500 KiB (every item under 32 KiB): 413.
        items = []
        for i in range(25):
            it = message("track", run, f"big-batch-{i}")
            it["properties"]["pad"] = "y" * (25 * 1024)
            items.append(it)
        r = post(session, url, "/v1/batch", {"batch": items})
        assert_error_json(r, 413, "~630 KiB /v1/batch")

        # Malformed JSON: 400 with {code, message}, on every family of routes.
        for path in ("/v1/track", "/v1/batch", "/v1/t"):
            r = post(session, url, path, raw=b'{"type": "track", "event": "x", "userId": ')
            assert_error_json(r, 400, f"malformed JSON to {path}")
        # /collect and pycolytics answer in their own formats (text; pycolytics' {"detail"}).
        r = post(session, url, "/collect", raw=b'{"marker": ')
        assert r.status == 400 and "json" in r.text.lower(), f"malformed JSON to /collect: {r.status} {r.text!r}"
        r = post(session, url, "/v1.0/event", raw=b'{"event_type": ')
        assert r.status == 400 and json.loads(r.text).get("detail"), f"malformed JSON to /v1.0/event: {r.status} {r.text!r}"
        r = post(session, url, "/v1/batch", raw=gzip.compress(b'{"batch": [{"type": '), headers={"Content-Encoding": "gzip"})
        assert_error_json(r, 400, "malformed gzip JSON to /v1/batch")
        # A gzip body that is not gzip: 400.
        r = post(session, url, "/v1/batch", raw=b"not gzip at all", headers={"Content-Encoding": "gzip"})
        assert r.status == 400, f"corrupt gzip: {r.status} {r.text!r}"

        # Gzip bombs: bodies under every size limit as sent (under 32 KiB even for the single
        # route) that inflate to 32 MiB / 24 MiB, far past the 4 MiB cap
        # (server.max_decompressed_bytes): 413, nothing stored.
        bomb_batch = gzip.compress(b'{"batch": [' + b" " * (32 << 20) + b"]}", 9)
        bomb_single = gzip.compress(b'{"type": "track", "event": "' + b"z" * (24 << 20) + b'", "userId": "u"}', 9)
        assert len(bomb_batch) < 32 * 1024 and len(bomb_single) < 30 * 1024, (len(bomb_batch), len(bomb_single))
        for path, bomb in (("/v1/batch", bomb_batch), ("/v1/track", bomb_single), ("/v1/import", bomb_batch)):
            r = post(session, url, path, raw=bomb, headers={"Content-Encoding": "gzip"}, timeout=30)
            assert r.status == 413, f"gzip bomb to {path}: {r.status} {r.text!r}\n{d.log_tail()}"
        assert wal_record_count(pipe) == before, "a refused (413/400) request was stored in the log"
        assert d.health() == 200

        # A batch with one item over 32 KiB: accepted; that item is dead-lettered, the rest load.
        good = [message("identify", run, "ok-1"), message("track", run, "ok-2")]
        fat = message("track", run, "fat-item")
        fat["properties"]["pad"] = "f" * (40 * 1024)
        # Items that fail Segment's per-type rules are dead-lettered too (schema_violation).
        no_ids = message("track", run, "no-ids")
        del no_ids["userId"], no_ids["anonymousId"]
        no_event = message("track", run, "no-event")
        del no_event["event"]
        odd_type = {**message("track", run, "odd-type"), "type": "teleport"}
        no_group = message("group", run, "no-group")
        del no_group["groupId"]
        bad_items = {"size_violation": [fat], "schema_violation": [no_ids, no_event, odd_type, no_group]}
        r = post(session, url, "/v1/batch", {"batch": [good[0], fat, no_ids, no_event, odd_type, no_group, good[1]],
                                             "sentAt": now_iso()})
        assert r.status == 200, f"batch with bad items: {r.status} {r.text!r}"
        # More than 2500 items: 400 too_many_events, nothing stored.
        many = [{"type": "track", "event": "e", "userId": "u", "messageId": f"many-{i}"} for i in range(2501)]
        r = post(session, url, "/v1/batch", {"batch": many})
        assert_error_json(r, 400, "2501 items")
        assert json.loads(r.text)["code"] == "too_many_events", r.text
        # A gzip body that is fine after inflating is accepted.
        ok_gz = [message("page", run, "gz-ok")]
        r = post(session, url, "/v1/batch", raw=gzip.compress(json.dumps({"batch": ok_gz}).encode()),
                 headers={"Content-Encoding": "gzip"})
        assert r.status == 200, f"small gzip batch: {r.status} {r.text!r}"
        wait_published(pipe)
        rows = rows_by(pipe, "message_id")
        for msg in good + ok_gz:
            assert len(rows.get(msg["messageId"], [])) == 1, f"{msg['messageId']} not stored once\n{d.log_tail()}"
        refused = [big["messageId"]] + [it["messageId"] for it in items] + ["many-0", "many-2500"]
        refused += [b["messageId"] for bs in bad_items.values() for b in bs]
        assert not [m for m in refused if m in rows], "an oversize message has a row"
        assert wal_record_count(pipe) == before + 2, "the log holds more than the two accepted requests"
        m = metrics_text(pipe)
        assert rejections(m, "size", "segment") >= 5, "size rejections not counted"
        assert rejections(m, "invalid", "segment") >= 3, "invalid-JSON rejections not counted"
        assert d.terminate() == 0, d.log_tail()
    finally:
        pipe.close()

    r = pipe.cli("dlq", "list", "--json")
    assert r.returncode == 0, f"dlq list exited {r.returncode}: {r.stderr}"
    text = r.stdout.strip()
    entries = json.loads(text) if text.startswith("[") else [json.loads(line) for line in text.splitlines() if line.strip()]
    # One dead letter per bad item, of its category, at the item's index in the batch (the
    # oversize item's payload is not kept; the others' payload is the item).
    order = [good[0], fat, no_ids, no_event, odd_type, no_group, good[1]]
    want = {i: cat for cat, msgs in bad_items.items() for i, m in enumerate(order) if any(m is b for b in msgs)}
    got = {e.get("event_index"): e.get("category") for e in entries}
    summary = [{k: e.get(k) for k in ("category", "event_index", "messages")} for e in entries]
    assert len(entries) == len(want) and got == want, f"dead letters {summary}, want index→category {want}"
    for e in entries:
        payload = e.get("event_payload")
        if payload is not None:
            assert order[e["event_index"]]["messageId"] in payload, f"entry {e['event_index']} holds another item: {payload[:200]}"
    print(f"limits: oversize 413, malformed 400, gzip bombs 413 (log untouched); bad batch items dead-lettered {sorted(got.items())}")


def test_rate_limits_are_per_key_and_per_forwarded_address_only_behind_trusted_proxies(sluice_bin: Path, tmp_path: Path):
    """Hourly rates with a burst of 3, so no token comes back during the test: exactly the
    fourth request of a client is refused, whatever the machine's speed."""
    run = uuid.uuid4().hex[:8]
    k1, k2 = f"pk1-{run}", f"pk2-{run}"
    env = {
        "SLUICE_SEGMENT__WRITE_KEYS": json.dumps([k1, k2]),
        "SLUICE_LIMITS__PER_IP": "3/h",
        "SLUICE_LIMITS__BURST": "3",
    }
    pipe = Pipeline(sluice_bin, tmp_path, env=env)
    session = requests.Session()
    accepted: set[str] = set()
    limited: set[str] = set()
    try:
        d = pipe.daemon

        def track(tag: str, key: str, xff: str | None) -> int:
            msg = message("track", run, tag)
            msg["context"] = {"library": {"name": "e2e-raw", "version": "0"}}
            headers = {"Authorization": basic_auth(key)}
            if xff:
                headers["X-Forwarded-For"] = xff
            r = post(session, d.url, "/v1/track", msg, headers=headers)
            assert r.status in (200, 429), f"{tag}: {r.status} {r.text!r}"
            if r.status == 429:
                # The next token is 20 minutes away (3/h).
                ra = r.headers.get("retry-after", "")
                assert ra.isdigit() and 60 < int(ra) <= 1200, f"429 with Retry-After {ra!r}"
                limited.add(msg["messageId"])
            else:
                accepted.add(msg["messageId"])
            return r.status

        # Loopback is a trusted proxy by default: each forwarded address has its own bucket.
        d.start()
        a = [track(f"xff-a-{i}", k1, "198.51.100.1") for i in range(4)]
        b = [track(f"xff-b-{i}", k2, "198.51.100.2, 10.0.0.1") for i in range(2)]
        assert a == [200, 200, 200, 429] and b == [200, 200], f"trusted XFF: {a} {b}"
        wait_published(pipe)
        assert d.terminate() == 0

        # No trusted proxies: X-Forwarded-For is ignored, every request is the peer's.
        d.env["SLUICE_ENRICH__TRUSTED_PROXIES"] = "[]"
        d.start()
        c = [track(f"peer-{i}", k1, f"198.51.100.{10 + i}") for i in range(4)]
        assert c == [200, 200, 200, 429], f"untrusted XFF must not pick the bucket: {c}"
        # Published under this configuration (the publisher reads trusted_proxies too).
        wait_published(pipe)
        assert d.terminate() == 0

        # Per key: a key's fourth request is refused while the other key, from the same address,
        # still passes.
        d.env.pop("SLUICE_ENRICH__TRUSTED_PROXIES")
        d.env["SLUICE_LIMITS__PER_IP"] = "off"
        d.env["SLUICE_LIMITS__PER_KEY"] = "3/h"
        d.start()
        k = [track(f"key1-{i}", k1, None) for i in range(4)] + [track(f"key2-{i}", k2, None) for i in range(3)]
        assert k == [200, 200, 200, 429, 200, 200, 200], f"per-key limit: {k}"

        wait_published(pipe)
        rows = rows_by(pipe, "message_id")
        assert accepted <= rows.keys(), f"accepted messages missing: {accepted - rows.keys()}"
        assert not (limited & rows.keys()), "a 429 request was stored"
        ips = {r[0]["user_ipaddress"] for mid, r in rows.items() if mid in accepted}
        assert {"198.51.100.1", "198.51.100.2", "127.0.0.1"} == ips, f"user_ipaddress values: {ips}"
        print(f"rate limits: {len(accepted)} accepted, {len(limited)} refused with 429, by key and forwarded address")
    finally:
        pipe.close()
