"""End to end into ClickHouse: the official Segment and RudderStack SDKs, unchanged, against sluice.

- `segment-analytics-python` (2.4.0: posts `{batch, sentAt, writeKey}` to `{host}/v1/batch` with
  Basic auth, optionally gzip) sends every call type — identify, track, page, screen, group,
  alias — once with `gzip=True` and once without.
- `@segment/analytics-node` (3.1.0, tests/e2e/js/segment.mjs: `{batch, writeKey, sentAt}` to
  `{host}/v1/batch` with Basic auth; its messageIds are not UUIDs) sends every call type.
- `rudder-sdk-python` (2.1.9: `dataPlaneUrl` + `/v1/batch`, Basic auth only, gzip on by default,
  identify's traits under `context.traits`, which fill the `traits` column) sends every call type.

Write keys are configured through the environment (`SLUICE_SEGMENT__WRITE_KEYS`). Every message
inside a request the collector acknowledged (seen on the wire) must have exactly one row in
`sluice.events` holding what the Segment mapping says (tests/e2e/sources.py
`check_segment_row`), and no column may contain the write key.
"""

from __future__ import annotations

import copy
import json
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from pipeline import Pipeline
from sources import Wire, acked_segment_messages, check_segment_rows, run_node_segment

CHROME_UA = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36"
)


def keys_env(*keys: str) -> dict[str, str]:
    return {"SLUICE_SEGMENT__WRITE_KEYS": json.dumps(list(keys))}


def rich_context(run: str, tag: str) -> dict:
    """A context with every part the mapping reads: page, campaign, userAgent, ip, app."""
    return {
        "page": {
            "url": f"https://shop.sluice.test:8443/{tag}/{run}?x=1&y=two#frag",
            "title": f"{tag} page",
            "referrer": "https://search.sluice.test/results?q=sluice",
            "path": f"/{tag}/{run}",
            "search": "?x=1&y=two",
        },
        "campaign": {"source": "newsletter", "medium": "email", "name": f"launch-{tag}", "term": "t", "content": "c"},
        "userAgent": CHROME_UA,
        "ip": "203.0.113.7",
        "app": {"name": "shop", "version": "3.2.1", "build": "321"},
        "locale": "pt-PT",
    }


def send_every_call_type(client, run: str, tag: str) -> int:
    """One message of each Segment call type (plus an anonymous track and a back-dated one, for
    the skew correction) through `client` (analytics-python's or rudder's API, which match).
    Returns how many messages were sent."""
    ctx = lambda: copy.deepcopy(rich_context(run, tag))  # noqa: E731  (the SDKs add to it)
    user, anon = f"{tag}-user-{run}", f"{tag}-anon-{run}"
    client.identify(user, traits={"plan": "pro", "email": f"{run}@sluice.test", "n": 3}, context=ctx(), anonymous_id=anon)
    client.track(user, "Order Completed",
                 properties={"revenue": 42.5, "currency": "EUR", "items": [{"sku": "a", "qty": 2}], "s": "ünïcode ✓"},
                 context=ctx())
    client.page(user, category="Docs", name="Pricing", properties={"variant": "b"}, context=ctx())
    client.screen(anonymous_id=anon, name="Settings", properties={"tab": "privacy"},
                  context={"app": {"name": "shop", "version": "9.9.9"}})
    client.group(user, f"{tag}-group-{run}", traits={"name": "Acme", "employees": 12}, context=ctx())
    client.alias(anon, user, context=ctx())
    client.track(anonymous_id=anon, event="Anonymous Thing", properties={"k": "v"})
    # Created an hour ago on the device: dvce_created_tstamp is then, derived_tstamp near it.
    client.track(user, "Late Event", properties={"late": True},
                 timestamp=datetime.now(timezone.utc) - timedelta(hours=1), context=ctx())
    return 8


@pytest.mark.parametrize("use_gzip", [True, False], ids=["gzip", "plain"])
def test_analytics_python_every_call_type_lands_in_clickhouse_with_the_right_values(
    sluice_bin: Path, tmp_path: Path, use_gzip: bool
):
    from segment.analytics import request as seg_request
    from segment.analytics.client import Client

    run = uuid.uuid4().hex[:8]
    key = f"wk-py-{run}"
    wire = Wire()
    errors: list = []
    pipe = Pipeline(sluice_bin, tmp_path, env=keys_env("other-key", key))
    try:
        pipe.daemon.start()
        wire.hook(seg_request._session)
        client = Client(key, host=pipe.daemon.url, gzip=use_gzip, upload_interval=0.1, upload_size=3,
                        max_retries=3, timeout=10, on_error=lambda e, batch: errors.append(repr(e)))
        try:
            n = send_every_call_type(client, run, "py")
            client.flush()
        finally:
            client.shutdown()
        sent = wire.snapshot()
        assert not errors and all(r.ok for r in sent), (
            f"SDK errors {errors}, answers {wire.statuses()}: {[r.response_text for r in sent if not r.ok]}\n"
            + pipe.daemon.log_tail()
        )
        assert {r.path for r in sent} == {"/v1/batch"}
        assert all(r.headers.get("authorization", "").startswith("Basic ") for r in sent)
        assert all((r.headers.get("content-encoding") == "gzip") == use_gzip for r in sent)
        acks = acked_segment_messages(wire)
        assert len(acks) == n, f"{len(acks)} messages acknowledged, {n} sent"
        report = check_segment_rows(pipe, acks, secrets=[key])
        assert not report, report + "\n" + pipe.daemon.log_tail()
        print(f"analytics-python (gzip={use_gzip}): {n} messages in {len(sent)} requests, each one row, every column as sent")
    finally:
        wire.unhook()
        pipe.close()


def test_analytics_node_every_call_type_lands_in_clickhouse_with_the_right_values(sluice_bin: Path, tmp_path: Path):
    run = uuid.uuid4().hex[:8]
    key = f"wk-node-{run}"
    pipe = Pipeline(sluice_bin, tmp_path, env=keys_env(key))
    try:
        pipe.daemon.start()
        wire, errors = run_node_segment(pipe.daemon.url, key, run)
        sent = wire.snapshot()
        assert sent and not errors and all(r.ok for r in sent), (
            f"SDK errors {errors}, answers {wire.statuses()}: {[r.response_text for r in sent if not r.ok]}\n"
            + pipe.daemon.log_tail()
        )
        assert {r.path for r in sent} == {"/v1/batch"}
        assert all(r.headers.get("authorization", "").startswith("Basic ") for r in sent)
        acks = acked_segment_messages(wire)
        assert len(acks) == 6, f"{len(acks)} messages acknowledged, 6 sent"
        assert all(m.startswith("node-next-") for m in acks), "analytics-node messageIds are not UUIDs"
        report = check_segment_rows(pipe, acks, secrets=[key])
        assert not report, report + "\n" + pipe.daemon.log_tail()
        print(f"analytics-node: 6 messages in {len(sent)} requests, each one row, every column as sent")
    finally:
        pipe.close()


def test_rudder_sdk_python_every_call_type_lands_in_clickhouse_with_the_right_values(sluice_bin: Path, tmp_path: Path):
    import rudderstack.analytics as rudder_analytics
    from rudderstack.analytics import request as rudder_request

    run = uuid.uuid4().hex[:8]
    key = f"wk-rudder-{run}"
    wire = Wire()
    errors: list = []
    pipe = Pipeline(sluice_bin, tmp_path, env=keys_env(key))
    try:
        pipe.daemon.start()
        wire.hook(rudder_request._session)
        # The documented set-up: module-level write_key and dataPlaneUrl (the SDK posts to
        # dataPlaneUrl + "/v1/batch"); gzip is on by default.
        rudder_analytics.write_key = key
        rudder_analytics.dataPlaneUrl = pipe.daemon.url
        rudder_analytics.on_error = lambda e, batch: errors.append(repr(e))
        rudder_analytics.max_retries = 3
        rudder_analytics.timeout = 10
        rudder_analytics.default_client = None
        try:
            n = send_every_call_type(rudder_analytics, run, "rudder")
            rudder_analytics.flush()
        finally:
            rudder_analytics.shutdown()
            rudder_analytics.default_client = None
        sent = wire.snapshot()
        assert not errors and all(r.ok for r in sent), (
            f"SDK errors {errors}, answers {wire.statuses()}: {[r.response_text for r in sent if not r.ok]}\n"
            + pipe.daemon.log_tail()
        )
        assert {r.path for r in sent} == {"/v1/batch"}
        assert all(r.headers.get("content-encoding") == "gzip" for r in sent), "rudder-sdk-python gzips by default"
        assert all(r.headers.get("authorization", "").startswith("Basic ") for r in sent)
        assert not any("writeKey" in r.json() for r in sent), "rudder-sdk-python sends the key only as Basic auth"
        acks = acked_segment_messages(wire)
        assert len(acks) == n, f"{len(acks)} messages acknowledged, {n} sent"
        report = check_segment_rows(pipe, acks, secrets=[key])
        assert not report, report + "\n" + pipe.daemon.log_tail()
        print(f"rudder-sdk-python: {n} messages in {len(sent)} gzip requests, each one row, every column as sent")
    finally:
        wire.unhook()
        pipe.close()
