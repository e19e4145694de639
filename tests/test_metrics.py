"""Metrics through the whole stack: a delivered video and a refused one move the job, provider, billing,
gateway and gRPC series by exactly what they did, read from /metrics before and after; and every
metric the dashboard and alert rules use is really exposed."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import aiohttp
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import eventually, new_user
from tests.monitoring import alert_queries, dashboard_queries, selected_metrics

pytestmark = pytest.mark.e2e
Series = dict[tuple[str, frozenset[tuple[str, str]]], float]
SORA_2_CREDITS_PER_SECOND = 10  # $0.10 per second at 100 credits per dollar


async def scrape(url: str) -> Series:
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, timeout=aiohttp.ClientTimeout(total=10)) as response,
    ):
        assert response.status == 200
        text = await response.text()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def total(series: Series, name: str, **labels: str) -> float:
    """The sum over every series of `name` whose labels include `labels` (0 when there is none)."""
    wanted = set(labels.items())
    return sum(value for (each, found), value in series.items() if each == name and wanted <= found)


class Moved:
    def __init__(self, before: Series, after: Series) -> None:
        self.before, self.after = before, after

    def __call__(self, name: str, **labels: str) -> float:
        return total(self.after, name, **labels) - total(self.before, name, **labels)


async def at_rest(url: str) -> Series | None:
    """A scrape taken while no job is unfinished, so nothing but this test moves the counters."""
    series = await scrape(url)
    return series if total(series, "vidflow_jobs_active") == 0 else None


def gauge(series: Series, name: str, labels: Mapping[str, str]) -> float | None:
    return series.get((name, frozenset(labels.items())))


async def test_a_video_and_a_refusal_move_every_series_by_what_they_did(stack) -> None:
    user = await new_user(stack, "metrics", credits=1_000)
    client = openai.OpenAI(base_url=f"{stack.gateway_url}/v1", api_key=stack.key(user), max_retries=0)
    # Earlier tests' videos may still be finishing on the shared stack.
    before = await eventually(lambda: at_rest(stack.metrics_url), deadline_seconds=60)

    delivered = await asyncio.to_thread(
        client.videos.create_and_poll,
        model="sora-2",
        prompt="A lighthouse at dusk, waves rolling in",
        seconds="4",
        size="1280x720",
        poll_interval_ms=300,
    )
    refused = await asyncio.to_thread(
        client.videos.create_and_poll,
        model="sora-2",
        prompt="A b.e.h.e.a.d.i.n.g in close-up",
        poll_interval_ms=200,
    )
    assert delivered.status == "completed", delivered.error
    assert refused.status == "failed" and refused.error and refused.error.code == "moderation_blocked"
    # A stage change is counted right after its commit, which the poll may have seen first.
    after = await eventually(lambda: at_rest(stack.metrics_url))
    moved = Moved(before, after)

    # Jobs: the delivered video went through every stage once; the refused one failed at admission.
    for stage in ("queued", "submitting", "generating", "downloading", "rendering", "capturing", "completed"):
        assert moved("vidflow_jobs_transitions_total", service="jobs", stage=stage) == 1, stage
    assert moved("vidflow_jobs_transitions_total", stage="failed", status="failed") == 1
    assert moved("vidflow_jobs_failures_total", cause="moderation", model="sora-2") == 1
    assert moved("vidflow_jobs_failures_total", cause="error") == 0
    assert moved("vidflow_jobs_completion_time_seconds_count", status="completed", model="sora-2") == 1
    assert moved("vidflow_jobs_completion_time_seconds_count", status="failed", model="sora-2") == 1
    assert moved("vidflow_jobs_completion_time_seconds_sum", status="completed", model="sora-2") > 0

    # Provider: one create, polls and downloads, and nothing but 2xx answers.
    provider = {"service": "jobs", "deployment": "default"}
    assert moved("vidflow_provider_requests_total", **provider, operation="create", outcome="2xx") == 1
    assert moved("vidflow_provider_requests_total", **provider, operation="retrieve", outcome="2xx") >= 1
    assert moved("vidflow_provider_requests_total", **provider, operation="download", outcome="2xx") >= 1
    assert moved("vidflow_provider_requests_total") == moved("vidflow_provider_requests_total", outcome="2xx")
    assert moved("vidflow_provider_request_duration_seconds_count", **provider, operation="create") == 1

    # Billing: one hold placed and captured for the four seconds delivered; the refusal held nothing.
    held = {"service": "billing", "model": "sora-2"}
    assert moved("vidflow_billing_holds_total", **held, event="placed") == 1
    assert moved("vidflow_billing_holds_total", **held, event="captured") == 1
    assert moved("vidflow_billing_holds_total", event="released") == 0
    assert moved("vidflow_billing_credits_captured_total", **held) == 4 * SORA_2_CREDITS_PER_SECOND
    assert moved("vidflow_billing_credits_held") == 0

    # Gateway: two creates answered 200, polls by route template (never a video id in a label).
    assert moved("vidflow_gateway_requests_total", method="POST", route="/v1/videos", status="200") == 2
    assert (
        moved("vidflow_gateway_requests_total", method="GET", route="/v1/videos/{video_id}", status="200")
        >= 2
    )
    routes = {
        dict(labels).get("route", "") for name, labels in after if name == "vidflow_gateway_requests_total"
    }
    assert not any(delivered.id in route or refused.id in route for route in routes)

    # gRPC: billing reserved and captured once, the renderer ingested once.
    billing_rpc = {
        "service": "billing",
        "grpc_service": "vidflow.billing.v1.BillingService",
        "grpc_code": "OK",
    }
    assert moved("vidflow_grpc_server_handled_total", **billing_rpc, grpc_method="Reserve") == 1
    assert moved("vidflow_grpc_server_handled_total", **billing_rpc, grpc_method="Capture") == 1
    assert moved("vidflow_grpc_server_handled_total", service="renderer", grpc_method="IngestVideo") == 1

    # Gauges at rest: nothing unfinished, queued or in flight; the deployment's slots as configured.
    assert total(after, "vidflow_jobs_active", service="jobs") == 0
    assert gauge(after, "vidflow_jobs_queued", {"service": "jobs", "model": "sora-2"}) == 0
    assert gauge(after, "vidflow_jobs_in_flight", {"service": "jobs", "deployment": "default"}) == 0
    assert gauge(after, "vidflow_jobs_deployment_slots", {"service": "jobs", "deployment": "default"}) == 4

    # Everything the dashboard and the alert rules select is exposed.
    exposed = {name for name, _ in after}
    for query in dashboard_queries() + alert_queries():
        assert selected_metrics(query.expr) <= exposed, query.where
