"""deploy/prometheus/alerts.yml and deploy/grafana/hasten.json: well-formed, every PromQL expression parsed by
promtool, and every metric they use one that hasten exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from src.runner import metrics, queue_gauges
from tests.spawn import ROOT

ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "hasten.json"
PROMTOOL = shutil.which("promtool")
NO_PROMTOOL = "promtool is not installed (Debian package `prometheus`; .ci/run installs it)"

_COUNTERS = (metrics.ENQUEUED, metrics.STARTED, metrics.FINISHED)
_HISTOGRAMS = (metrics.DURATION, metrics.QUEUE_WAIT)
_GAUGES = (metrics.RUNNING, metrics.LOOP_LAG, queue_gauges.QUEUE_DEPTH, queue_gauges.OLDEST_DUE_AGE,
           queue_gauges.DEAD_LETTERS, queue_gauges.WORKERS_ALIVE, queue_gauges.CRON_LAST_SUCCESS,
           queue_gauges.STATS_UP, queue_gauges.JOBS_HELD, queue_gauges.LIMIT_RUNNING)  # fmt: skip
#: every series name hasten exports
EXPORTED = {f"{c}_total" for c in _COUNTERS} | set(_GAUGES)
EXPORTED |= {f"{h}{suffix}" for h in _HISTOGRAMS for suffix in ("_bucket", "_count", "_sum")}


def _rules() -> list[dict[str, Any]]:
    data = yaml.safe_load(ALERTS.read_text())
    return [rule for group in data["groups"] for rule in group["rules"]]


def _dashboard_exprs() -> list[str]:
    data = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in data["panels"] for target in panel["targets"]]


def _names(expr: str) -> set[str]:
    return set(re.findall(r"\bhasten_[a-z_]+\b", expr))


def test_alert_rules_are_well_formed_and_cover_what_operators_need() -> None:
    rules = _rules()
    names = {rule["alert"] for rule in rules}
    assert {"HastenQueueBacklogOld", "HastenJobFailureRateHigh", "HastenNoWorkerAlive", "HastenCronOverdue",
            "HastenEventLoopLag"} <= names  # fmt: skip
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert rule["labels"]["severity"] in ("info", "warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]


def test_dashboard_is_well_formed() -> None:
    data = json.loads(DASHBOARD.read_text())
    assert data["uid"] and data["title"] == "hasten" and data["panels"]
    assert {v["name"] for v in data["templating"]["list"]} == {"datasource", "queue"}
    ids = [panel["id"] for panel in data["panels"]]
    assert len(ids) == len(set(ids))
    for panel in data["panels"]:
        assert panel["title"] and panel["targets"], panel
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"])
        assert all(t["expr"] and t["refId"] for t in panel["targets"])


@pytest.mark.parametrize("source", ["alerts", "dashboard"])
def test_expressions_use_only_metrics_hasten_exports(source: str) -> None:
    exprs = [rule["expr"] for rule in _rules()] if source == "alerts" else _dashboard_exprs()
    used = set().union(*map(_names, exprs))
    assert used and used <= EXPORTED, used - EXPORTED


def test_the_issue_s_metric_names_are_the_ones_exported() -> None:
    """The names fixed in the design, checked against the constants the code uses."""
    assert EXPORTED >= {
        "hasten_jobs_enqueued_total", "hasten_jobs_started_total", "hasten_jobs_finished_total", "hasten_jobs_running",
        "hasten_job_duration_seconds_bucket", "hasten_job_queue_wait_seconds_bucket", "hasten_queue_depth",
        "hasten_queue_oldest_due_age_seconds", "hasten_dead_letters", "hasten_cron_last_success_timestamp_seconds",
        "hasten_worker_event_loop_lag_seconds", "hasten_jobs_held",
    }  # fmt: skip


@pytest.mark.skipif(PROMTOOL is None, reason=NO_PROMTOOL)
def test_promtool_accepts_the_alert_rules() -> None:
    assert PROMTOOL is not None
    done = subprocess.run([PROMTOOL, "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in done.stdout


@pytest.mark.skipif(PROMTOOL is None, reason=NO_PROMTOOL)
def test_promtool_parses_every_dashboard_expression(tmp_path: Path) -> None:
    """Each expression becomes a recording rule, which promtool parses; Grafana's variables get sample values."""
    assert PROMTOOL is not None
    exprs = [e.replace("$__rate_interval", "5m").replace("$queue", ".*") for e in _dashboard_exprs()]
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"hasten:dashboard_panel_{i}", "expr": e} for i, e in enumerate(exprs)
    ]}]}  # fmt: skip
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump(rules))
    done = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in done.stdout


def test_a_broken_expression_is_caught(tmp_path: Path) -> None:
    """The checks above can fail: an unknown metric and a PromQL syntax error are both seen."""
    assert _names("rate(hasten_jobs_done_total[5m])") - EXPORTED == {"hasten_jobs_done_total"}
    if PROMTOOL is None:
        pytest.skip(NO_PROMTOOL)
    path = tmp_path / "bad.yml"
    path.write_text(
        yaml.safe_dump({"groups": [{"name": "x", "rules": [{"record": "x:y", "expr": "sum(rate(x[5m])"}]}]})
    )
    done = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
