"""Kill -9 the daemon at random moments; after a restart the index must equal a clean index.

CI runs one trial per scenario; the slow suite (CODECTX_SLOW=1) runs 24 more. For longer runs:
`python -m tests.crash_harness --trials 100`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.crash_harness import SCENARIOS, run_trial

SLOW = os.environ.get("CODECTX_SLOW") == "1"


def _run(seed: int, scenario: str) -> None:
    base = Path(tempfile.mkdtemp(prefix="cxk", dir="/tmp"))
    try:
        trial = run_trial(base, seed, scenario, files=30)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    assert not trial.error, trial.error
    assert trial.rows > 0
    assert (trial.missing, trial.stale, trial.duplicates) == (0, 0, 0), trial
    assert trial.sigterm_exit == 0 and trial.sigterm_s < 5.0, trial
    # The phase scenarios killed the daemon where they meant to.
    if scenario == "phase1":
        assert trial.killed_in in ("scanning", "indexing"), trial
    if scenario == "phase2":
        assert trial.killed_in == "keyword_ready", trial


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_kill_and_recover(scenario: str) -> None:
    _run(1000 + SCENARIOS.index(scenario), scenario)


@pytest.mark.slow
@pytest.mark.skipif(not SLOW, reason="slow suite: set CODECTX_SLOW=1")
@pytest.mark.parametrize("seed", range(24))
def test_kill_and_recover_many(seed: int) -> None:
    _run(2000 + seed, SCENARIOS[seed % len(SCENARIOS)])
