"""The W1 benchmark harness runs end to end on a tiny county (a few seconds): its own provider
process, the real App and HTTP API, every figure beside its baseline. Performance itself is
never asserted here: BENCHMARKS.md records it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_w1_harness_measures_every_figure_against_its_baseline() -> None:
    p = subprocess.run([sys.executable, str(ROOT / "bench" / "w1.py"), "--smoke"], capture_output=True, text=True,
                       timeout=300, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)
    assert p.returncode == 0, p.stderr[-3000:]
    report = json.loads(p.stdout)
    assert report["public"] is True and report["counts"]["public_recipients"] == 100
    m = report["median"]
    # Every message of the step reached the provider process, every reply was recorded.
    assert m["imminent_messages"] >= m["called"]
    # The whole public list was imported, targeted by the county-wide step and texted.
    assert m["public_listed"] == m["public_targeted"] == m["public_messages"] == 100
    assert m["public_not_sent"] == 0
    assert 0 < m["public_first_sent_s"] <= m["public_all_sent_s"]
    assert m["confirmations_recorded"] == m["confirmations_sent"] > 0
    assert m["escalation_messages"] >= m["escalation_open_calls"] > 0
    # The resend rung is one text for every silent official: provider batches, not one each.
    assert m["escalation_msgs_per_request"] > 1
    assert m["deputy_messages"] > 0 and m["pending_calls_preloaded"] == 1000
    assert set(report["ratios"]) == {"first_message_p50_vs_round_trip", "first_message_p99_vs_round_trip",
                                     "first_message_p50_vs_durable_commit", "imminent_fanout_vs_raw_sdk_batch",
                                     "confirmations_vs_raw_insert", "escalation_vs_raw_sdk_batch",
                                     "deputy_vs_raw_sdk_single", "public_fanout_vs_raw_sdk_batch"}
    assert all(v > 0 for v in report["ratios"].values())
