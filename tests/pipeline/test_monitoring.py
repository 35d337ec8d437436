"""deploy/monitoring: the Grafana dashboard and the Prometheus alert rules use only metrics the
services export (scraped from an embedded runtime after some traffic), every dashboard panel has
a query, and promtool checks the rules and runs their tests (each alert fires and stays silent)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml
from helpers import SHARED, api_client, policy, receive_and_price
from prometheus_client.parser import text_string_to_metric_families

from drgdip.stages import FACTORIES, build_runtime

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "deploy" / "monitoring"
DASHBOARD = MONITORING / "grafana-dashboard.json"
RULES = MONITORING / "alerts.yml"
RULE_TESTS = MONITORING / "alerts.test.yml"
STAGES = tuple(FACTORIES)

SUFFIXES = {"counter": ("_total", "_created"), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count", "_created"),
            "summary": ("", "_sum", "_count", "_created"), "info": ("_info",), "unknown": ("",)}


@cache
def exported() -> frozenset[str]:
    """Every series name /metrics of an embedded runtime shows (with or without samples yet)
    after a few lists went through the whole pipeline and the API answered some requests."""
    async def scrape(tmp: Path) -> str:
        policy_file = tmp / "policy.json"
        policy_file.write_bytes(orjson.dumps(policy()))
        rt = build_runtime("all", db=f"sqlite+aiosqlite:///{tmp / 'drgdip.db'}", schemes_dir=SHARED / "schemes",
                           policy_file=policy_file, log_level="WARNING", lag_interval_ms=50)
        await rt.start()
        try:
            await receive_and_price(rt, 5)
            async with await api_client(rt) as client:
                await client.get("/api/v1/no-such-route")
                await client.get("/readyz")
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=rt.app), base_url="http://t") as c:
                await asyncio.sleep(0.2)  # a lag reading or two
                return (await c.get("/metrics")).text
        finally:
            await rt.stop()

    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        text = asyncio.run(scrape(Path(tmp)))
    names = set()
    for family in text_string_to_metric_families(text):
        names.update(family.name + s for s in SUFFIXES[family.type])
        names.update(s.name for s in family.samples)
    return frozenset(names)


# --- reading PromQL just enough to name the metrics it selects -------------------------------

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_NAME_MATCHER = re.compile(r'__name__\s*(=~|=)\s*"((?:[^"\\]|\\.)*)"')
_CLAUSE = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
             "bool", "offset", "inf", "nan"}


def selected(expr: str) -> tuple[set[str], set[str]]:
    """(metric names, `__name__` regexes) that a PromQL expression selects."""
    regexes = {("^" + re.escape(v) + "$") if op == "=" else v for op, v in _NAME_MATCHER.findall(expr)}
    bare = re.sub(r"\{[^}]*\}", " ", expr)  # label matchers
    bare = _STRING.sub(" ", bare)
    bare = re.sub(r"\[[^\]]*\]", " ", bare)  # ranges
    bare = _CLAUSE.sub(" ", bare)
    names = set()
    for m in re.finditer(r"(?<![\w.])[A-Za-z_:][A-Za-z0-9_:]*", bare):  # not a number's unit
        word, after = m.group(), bare[m.end():].lstrip()[:1]
        if after == "(" or word.lower() in _KEYWORDS:
            continue  # a function or aggregation, a keyword
        names.add(word)
    return names, regexes


def check_names(where: str, exprs: list[str]) -> list[str]:
    have = exported()
    problems = []
    for e in exprs:
        names, regexes = selected(e)
        problems += [f"{where}: {n} is not exported ({e})" for n in sorted(names)
                     if n not in have]
        for rx in regexes:
            hits = [n for n in have if re.fullmatch(rx, n)]
            if not hits:
                problems.append(f"{where}: no exported metric matches {rx!r} ({e})")
    return problems


def test_the_promql_reader_names_what_an_expression_selects() -> None:
    names, regexes = selected('histogram_quantile(0.95, sum by (le, topic) (rate(x_seconds_bucket{a="b c"}[5m]))) '
                              '/ ignoring(le) y_total and on (job) label_replace({__name__=~"(a|b)_z"}, "s", "$1", '
                              '"__name__", "(.+)_z") > bool 0 or time() - w offset 5m')
    assert names == {"x_seconds_bucket", "y_total", "w"}
    assert regexes == {"(a|b)_z"}


# --- the dashboard ---------------------------------------------------------------------------

def _dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def _panels(d: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for p in d["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))  # a collapsed row holds its panels
    return out


def _expand(expr: str, variables: dict[str, list[str]]) -> list[str]:
    expr = expr.replace("$__rate_interval", "5m").replace("$__interval", "1m").replace("$__range", "1h")
    found = [v for v in variables if re.search(rf"\$(\{{{v}(:[a-z]+)?\}}|{v}\b)", expr)]
    if not found:
        return [expr]
    v = found[0]
    return [x for value in variables[v]
            for x in _expand(re.sub(rf"\$(\{{{v}(:[a-z]+)?\}}|{v}\b)", value, expr), variables)]


def test_every_dashboard_panel_has_a_query_on_exported_metrics() -> None:
    d = _dashboard()
    assert d["uid"] and d["title"] and d["schemaVersion"] >= 36
    variables = {v["name"]: [o["value"] for o in v.get("options", [])] for v in d["templating"]["list"]
                 if v["type"] == "custom"}
    assert variables["stage"] == list(STAGES)
    defined = {v["name"] for v in d["templating"]["list"]}
    panels = [p for p in _panels(d) if p["type"] != "row"]
    assert len({p["id"] for p in _panels(d)}) == len(_panels(d)), "panel ids repeat"
    exprs: list[str] = []
    for p in panels:
        where = f"panel {p['title']!r}"
        assert p["targets"], f"{where} has no query"
        assert {"x", "y", "w", "h"} <= p["gridPos"].keys(), where
        assert p["datasource"]["uid"] == "${datasource}", where
        assert len({t["refId"] for t in p["targets"]}) == len(p["targets"]), where
        if "repeat" in p:
            assert p["repeat"] in defined, where
        for t in p["targets"]:
            assert t["expr"].strip(), f"{where}: an empty query"
            used = set(re.findall(r"\$\{?([A-Za-z_]\w*)", t["expr"])) - {"__rate_interval", "__interval", "__range"}
            assert used <= defined, f"{where} uses undefined variables {used - defined}"
            exprs += _expand(t["expr"], variables)
    assert check_names("dashboard", exprs) == []
    every = " ".join(exprs)
    for needed in ("drgdip_consumer_lag", "_outbox_backlog", "_outbox_oldest_age_seconds", "_dlq_messages",
                   "_batch_fallbacks_total", "_processing_seconds_bucket", "_events_consumed_total",
                   "drgdip_http_requests_total", "drgdip_ready", "drgdip_database_up"):
        assert needed in every, f"no panel shows {needed}"


# --- the alert rules -------------------------------------------------------------------------

def _rules() -> list[dict[str, Any]]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def test_every_alert_rule_uses_exported_metrics_and_is_tested_both_ways() -> None:
    rules = _rules()
    assert check_names("alerts.yml", [r["expr"] for r in rules]) == []
    alerts = {r["alert"] for r in rules}
    assert {"DrgdipConsumerLagGrowing", "DrgdipDeadLettersWaiting", "DrgdipOutboxStale", "DrgdipHttpErrors",
            "DrgdipReadinessFlapping", "DrgdipDatabaseDown"} <= alerts
    fires, silent = set(), set()
    for t in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for case in t.get("alert_rule_test", []):
            (fires if case["exp_alerts"] else silent).add(case["alertname"])
    assert alerts - fires == set(), "alerts no test sees firing"
    assert alerts - silent == set(), "alerts no test sees silent"


def _promtool() -> str:
    found = os.environ.get("DRGDIP_PROMTOOL") or next(
        (str(p) for p in [ROOT / ".cache" / "promtool" / "bin" / "promtool"] if p.is_file()), None
    ) or shutil.which("promtool")
    if found:
        return found
    message = "promtool not found: run scripts/install-promtool.sh (scripts/test.sh does)"
    if os.environ.get("DRGDIP_TEST_REQUIRE_SERVERS") == "1":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.mark.parametrize("command", [["check", "rules", "alerts.yml"], ["test", "rules", "alerts.test.yml"]],
                         ids=["check", "test"])
def test_promtool_accepts_the_rules_and_their_tests_pass(command: list[str]) -> None:
    done = subprocess.run([_promtool(), *command], cwd=MONITORING, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout + done.stderr
