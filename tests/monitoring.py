"""deploy/k8s/monitoring read back for tests: the dashboard's and alert rules' PromQL, the metric names
it selects, and the names the code registers (found in the source, as a reviewer would grep them)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import promql_parser
import yaml

REPO = Path(__file__).resolve().parents[1]
MONITORING = REPO / "deploy" / "k8s" / "monitoring"
DASHBOARD = MONITORING / "vidflow-dashboard.json"
ALERT_RULES = MONITORING / "prometheus-rules.yaml"
# `meter.create_counter("vidflow_...")`, `observed_gauge(METER, "vidflow_...")` and the like.
_DEFINITION = re.compile(
    r"\b(create_counter|create_histogram|create_observable_gauge|observed_gauge)\(\s*(?:\w+,\s*)?\"(vidflow_\w+)\""
)
# Grafana's interval variables, which it replaces with a duration before querying.
_GRAFANA_INTERVAL = re.compile(r"\$__(rate_interval|interval|range)\b")
# How the Prometheus exporter names each kind's samples.
_SAMPLE_SUFFIXES = {
    "create_counter": ("_total",),
    "create_histogram": ("_bucket", "_sum", "_count"),
    "create_observable_gauge": ("",),
    "observed_gauge": ("",),
}


@dataclass(frozen=True)
class Query:
    where: str  # panel or alert title
    expr: str


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def dashboard_queries() -> list[Query]:
    """Every panel's queries, with Grafana's interval variables filled in as it would."""
    return [
        Query(panel["title"], _GRAFANA_INTERVAL.sub("5m", target["expr"]))
        for panel in dashboard()["panels"]
        if panel["type"] != "row"
        for target in panel["targets"]
    ]


def alert_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(ALERT_RULES.read_text())
    return [rule for group in document["spec"]["groups"] for rule in group["rules"]]


def alert_queries() -> list[Query]:
    return [Query(rule["alert"], rule["expr"]) for rule in alert_rules()]


def selected_metrics(expr: str) -> set[str]:
    """Metric names the expression selects; raises ValueError when it is not valid PromQL."""
    names: set[str] = set()

    def visit(node: Any) -> bool:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            names.add(node.name)
        return True

    promql_parser.walk(promql_parser.parse(expr), visit)
    return names


def registered_metrics() -> set[str]:
    """Sample names of every vidflow_ instrument defined in lib/ and services/ (tests excluded)."""
    names: set[str] = set()
    for root in (REPO / "lib", REPO / "services"):
        for source in root.rglob("*.py"):
            if "tests" in source.relative_to(REPO).parts:
                continue
            for kind, name in _DEFINITION.findall(source.read_text()):
                names.update(name + suffix for suffix in _SAMPLE_SUFFIXES[kind])
    return names
