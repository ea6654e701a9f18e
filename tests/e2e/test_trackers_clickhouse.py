"""End to end into ClickHouse: events sent by the official trackers land with the right values.

The Python tracker (`snowplow-tracker` 1.1.0; POST batches and GET `/i`) and the Node tracker
(`@snowplow/node-tracker`, tests/e2e/js/send.mjs; POST and GET) send page views, page pings,
structured events, self-describing events with contexts, screen views and ecommerce
transactions with items to `sluice serve`, which publishes into a real clickhouse-server. Every
event the collector acknowledged (seen on the wire) must have exactly one row whose columns hold
what the Snowplow protocol says (tests/e2e/pipeline.py `expected_row`).
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest
import requests
from snowplow_tracker import (
    Emitter,
    PagePing,
    PageView,
    ScreenView,
    SelfDescribing,
    SelfDescribingJson,
    StructuredEvent,
    Subject,
    Tracker,
)

from pipeline import AckLog, Pipeline, compare
from sluice_e2e import require_node

JS_DIR = Path(__file__).resolve().parent / "js"
# How long the rows may take to appear (the publisher flushes every 200 ms here).
ROWS_TIMEOUT_S = 60.0


def python_tracker_events(tracker: Tracker, run_id: str, method: str) -> None:
    """One of each kind of event the issue names, with the fields that map to columns."""
    ctx = [SelfDescribingJson("iglu:com.acme/py_run/jsonschema/1-0-0", {"run": run_id, "method": method})]
    url = f"http://shop.sluice.test:8080/py/{run_id}?utm_source=python&utm_medium=e2e&utm_campaign={method}&utm_term=t&utm_content=c#frag"
    tracker.track(PageView(page_url=url, page_title="Py page", referrer="https://search.sluice.test/results?q=sluice", context=ctx))
    tracker.track(PagePing(page_url=url, page_title="Py page", min_x=0, max_x=10, min_y=5, max_y=900))
    tracker.track(StructuredEvent(category="py", action="click", label=f"py-{run_id}", property_="prop", value=4.25, context=ctx))
    tracker.track(
        SelfDescribing(
            SelfDescribingJson("iglu:com.acme/py_thing/jsonschema/1-0-1", {"n": 3, "s": "ünïcode ✓", "nested": {"a": [1, 2]}}),
            context=ctx,
        )
    )
    tracker.track(ScreenView(id_=str(uuid.uuid4()), name="Settings", type="feed"))
    tracker.track_ecommerce_transaction(
        order_id=f"order-py-{run_id}-{method}",
        total_value=42.5,
        affiliation="shop",
        tax_value=2.5,
        shipping=4.0,
        city="Lisbon",
        state="Lisboa",
        country="PT",
        currency="EUR",
        items=[
            {"sku": "sku-a", "price": 10.0, "quantity": 2, "name": "Alpha", "category": "tools"},
            {"sku": "sku-b", "price": 18.5, "quantity": 1, "name": "Beta", "category": "toys"},
        ],
    )
    # An explicit true timestamp.
    tracker.track(StructuredEvent(category="py", action="late", label=f"py-{run_id}-ttm", true_timestamp=1700000000456))


def test_python_tracker_events_land_in_clickhouse_with_the_right_values(sluice_bin: Path, tmp_path: Path):
    acks = AckLog()
    run_id = uuid.uuid4().hex[:8]
    pipe = Pipeline(sluice_bin, tmp_path)
    try:
        pipe.daemon.start()
        for method in ("post", "get"):
            session = requests.Session()  # keeps the collector's `sp` cookie, as a browser would
            acks.hook(session)
            emitter = Emitter(
                "127.0.0.1",
                protocol="http",
                port=pipe.daemon.port,
                method=method,
                batch_size=4 if method == "post" else 1,
                request_timeout=10.0,
                session=session,
            )
            subject = Subject().set_user_id(f"user-{run_id}").set_domain_user_id(f"duid-{run_id}")
            tracker = Tracker(namespace=f"py-{method}", emitters=emitter, subject=subject, app_id="sluice-e2e-py")
            python_tracker_events(tracker, run_id, method)
            # Third-party network user id: beats the cookie.
            tnuid_subject = Subject().set_network_user_id("0f1e2d3c-4b5a-4978-8a6b-5c4d3e2f1a00")
            tracker.track(StructuredEvent(category="py", action="tnuid", label=f"py-{run_id}-tnuid", event_subject=tnuid_subject))
            tracker.flush()
        sent = acks.snapshot()
        assert acks.failed_requests == 0, f"non-2xx answers: {acks.statuses}\n{pipe.daemon.log_tail()}"
        # 8 events per method + 1 extra item: page view, ping, struct, self-describing, screen
        # view, transaction + 2 items, true-timestamp struct, tnuid struct = 10 per method.
        assert len(sent) == 20, f"{len(sent)} events acknowledged"
        counts = pipe.wait_for_event_ids(set(sent), ROWS_TIMEOUT_S)
        result = compare(pipe, sent)
        assert not result.missing and not result.wrong, result.describe(sent) + "\n" + pipe.daemon.log_tail()
        dupes = {k: n for k, n in counts.items() if k in sent and n != 1}
        assert not dupes, f"events with more than one row: {dupes}"
        print(f"{len(sent)} Python tracker events in ClickHouse, every field as sent")
    finally:
        pipe.close()


@pytest.mark.parametrize("method", ["post", "get"])
def test_node_tracker_events_land_in_clickhouse_with_the_right_values(sluice_bin: Path, tmp_path: Path, method: str):
    require_node()
    assert (JS_DIR / "node_modules" / "@snowplow" / "node-tracker").is_dir(), (
        "run `npm ci` in tests/e2e/js (scripts/test.sh does)"
    )
    acks = AckLog()
    run_id = uuid.uuid4().hex[:8]
    pipe = Pipeline(sluice_bin, tmp_path)
    try:
        pipe.daemon.start()
        out = subprocess.run(
            ["node", "send.mjs", str(pipe.daemon.port), run_id, method],
            cwd=JS_DIR,
            capture_output=True,
            text=True,
            timeout=60,
            env={k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")},
        )
        assert out.returncode == 0, f"send.mjs exited {out.returncode}:\n{out.stderr}"
        statuses = []
        for line in out.stdout.splitlines():
            r = json.loads(line)
            statuses.append(r["status"])
            if 200 <= r["status"] < 300:
                acks.record(r["method"], r["url"], r["body"], r["acked_at"], r["sent_at"], r["sp_cookie"])
        assert statuses and all(200 <= s < 300 for s in statuses), f"answers: {statuses}\n{pipe.daemon.log_tail()}"
        sent = acks.snapshot()
        assert len(sent) == 8, f"{len(sent)} events acknowledged"
        counts = pipe.wait_for_event_ids(set(sent), ROWS_TIMEOUT_S)
        result = compare(pipe, sent)
        assert not result.missing and not result.wrong, result.describe(sent) + "\n" + pipe.daemon.log_tail()
        dupes = {k: n for k, n in counts.items() if k in sent and n != 1}
        assert not dupes, f"events with more than one row: {dupes}"
        print(f"{len(sent)} Node tracker events ({method}) in ClickHouse, every field as sent")
    finally:
        pipe.close()
