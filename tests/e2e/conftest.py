"""Fixtures for the end-to-end tests: where the `sluice` binary is.

scripts/test.sh builds it (`cargo build --bin sluice`) and passes its path in E2E_SLUICE_BIN
(not SLUICE_BIN: the daemon reads every SLUICE_* variable as configuration).
Run alone: `cargo build --bin sluice && .venv/bin/python -m pytest tests/e2e`.
"""

import faulthandler
import logging
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def sluice_bin() -> Path:
    configured = os.environ.get("E2E_SLUICE_BIN")
    candidates = [Path(configured)] if configured else []
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    candidates += [target / "debug" / "sluice", target / "release" / "sluice"]
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return c.resolve()
    pytest.fail(
        "no sluice binary: run `cargo build --bin sluice` first or set E2E_SLUICE_BIN "
        f"(looked at {', '.join(map(str, candidates))})"
    )


@pytest.fixture(autouse=True)
def quiet_tracker_logs():
    """The tracker logs every request at INFO and every refused connection at WARNING; the
    tests count those themselves."""
    logger = logging.getLogger("snowplow_tracker.emitters")
    before = logger.level
    logger.setLevel(logging.CRITICAL)
    yield
    logger.setLevel(before)


# No end-to-end test may run longer than this; past it the run is ended with every thread's
# stack printed (a daemon still running then gets SIGKILL: see sluice_e2e._die_with_parent).
HARD_TIME_LIMIT_S = 240


@pytest.fixture(autouse=True)
def hard_time_limit():
    faulthandler.dump_traceback_later(HARD_TIME_LIMIT_S, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()
