"""The monitoring files agree with the code: the alert rule passes `promtool check rules` and its
unit test, and fires on generated confidence series below 0.6 and on none at or above (when Debian's
prometheus package is installed, as `make test` tries to); the rule and the dashboard use only
metrics dbarch exposes, the rule's threshold is the code's; the dashboard JSON is a Grafana
dashboard whose panels all query something. (That /metrics really holds every series the dashboard
queries is checked over HTTP in test_api.py.)"""

from __future__ import annotations

import json
import random
import re
import shutil
import subprocess

import pytest
import yaml

from dbarch_pipeline import metrics
from dbarch_pipeline.settings import PROJECT_ROOT

RULES_DIR = PROJECT_ROOT / "deploy" / "prometheus" / "rules"
RULES = RULES_DIR / "dbarch_alerts.yml"
DASHBOARD = PROJECT_ROOT / "deploy" / "grafana" / "dashboards" / "dbarch.json"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (Debian package "
                                    "`prometheus`; `make test` installs it when it can)")
EXPOSED = {name for name, _kind, _help in metrics.METRICS}


def _alert() -> dict:
    rules = yaml.safe_load(RULES.read_text())["groups"][0]["rules"]
    return next(r for r in rules if r["alert"] == "DbArchitectLowConfidence")


def test_alert_rule_reads_the_exposed_confidence_at_the_code_threshold():
    alert = _alert()
    assert alert["expr"] == f"db_architect_confidence_score < {metrics.LOW_CONFIDENCE}"
    assert set(re.findall(r"\bdb_architect_\w+", alert["expr"])) <= EXPOSED
    assert alert["annotations"]["runbook"] and "{{ $labels.recommendation }}" in alert["annotations"]["runbook"]


def test_dashboard_queries_only_exposed_metrics():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["panels"]
    for panel in dashboard["panels"]:
        exprs = [t["expr"] for t in panel["targets"]]
        assert exprs, panel["title"]
        names = {n for e in exprs for n in re.findall(r"\bdb_architect_\w+", e)}
        assert names and names <= EXPOSED, (panel["title"], names - EXPOSED)
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for topic in ("slow statements", "recommendations", "confidence distribution", "realized", "low-confidence"):
        assert topic in titles, topic


@needs_promtool
def test_promtool_checks_and_unit_tests_the_rule():
    check = subprocess.run([PROMTOOL, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    unit = subprocess.run([PROMTOOL, "test", "rules", "dbarch_alerts_test.yml"], cwd=RULES_DIR,
                          capture_output=True, text=True, timeout=60)
    assert unit.returncode == 0, unit.stdout + unit.stderr


@needs_promtool
def test_rule_fires_below_the_threshold_only_on_generated_series(tmp_path):
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    values = [round(rng.uniform(0, 1), 3) for _ in range(30)] + [metrics.LOW_CONFIDENCE, 0.599, 0.601]
    series, expected = [], []
    for i, value in enumerate(values):
        labels = {"database": rng.choice(["app", "shop"]), "week": "2025-06-01", "recommendation": f"r{i}",
                  "kind": "index"}
        selector = ",".join(f'{k}="{v}"' for k, v in labels.items())
        series.append({"series": f"db_architect_confidence_score{{{selector}}}", "values": f"{value}x30"})
        if value < metrics.LOW_CONFIDENCE:
            expected.append({"exp_labels": {**labels, "severity": "warning"}})
    # the rule as written, less its annotations (promtool would compare their text; the checked-in
    # unit test covers it): here the expression, the `for` and the labels are under test
    rules = yaml.safe_load(RULES.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    (tmp_path / RULES.name).write_text(yaml.safe_dump(rules))
    test = {"rule_files": [RULES.name], "evaluation_interval": "1m",
            "tests": [{"interval": "1m", "input_series": series,
                       "alert_rule_test": [{"eval_time": "15m", "alertname": "DbArchitectLowConfidence",
                                            "exp_alerts": expected}]}]}
    (tmp_path / "generated_test.yml").write_text(yaml.safe_dump(test))
    unit = subprocess.run([PROMTOOL, "test", "rules", "generated_test.yml"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert unit.returncode == 0, f"seed {seed}: {unit.stdout}{unit.stderr}"
    assert any(v >= metrics.LOW_CONFIDENCE for v in values) and expected
