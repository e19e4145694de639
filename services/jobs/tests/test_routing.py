import json

import pytest

from services.jobs.domain.dispatch import QueuedJob, assign
from services.jobs.domain.routing import (
    Registry,
    RegistryError,
    Route,
    parse_registry,
    single_deployment_registry,
)

REGISTRY = json.dumps(
    {
        "deployments": {
            "vendor": {
                "base_url": "https://api.vendor.example/v1/",
                "api_key_env": "VENDOR_KEY",
                "max_concurrent": 2,
            },
            "vllm": {
                "base_url": "http://vllm-omni.video.svc:8000/v1",
                "api_key_env": "VLLM_KEY",
                "max_concurrent": 1,
                "requests_per_minute": 120,
                "webhooks": True,
            },
        },
        "routes": {
            "sora-2": ["vendor", {"deployment": "vllm", "upstream_model": "Wan-AI/Wan2.2-T2V-A14B"}],
            "sora-2-pro": ["vendor"],
        },
    }
)


def test_registry_parses_deployments_and_routes_in_failover_order():
    registry = parse_registry(REGISTRY)
    assert registry.deployments["vendor"].base_url == "https://api.vendor.example/v1"
    assert registry.deployments["vendor"].requests_per_minute == 600  # default
    assert registry.deployments["vllm"].webhooks is True
    assert registry.candidates("sora-2") == (
        Route("vendor", "sora-2"),
        Route("vllm", "Wan-AI/Wan2.2-T2V-A14B"),
    )
    assert registry.candidates("sora-2", excluding=frozenset({"vendor"})) == (
        Route("vllm", "Wan-AI/Wan2.2-T2V-A14B"),
    )
    assert not registry.serves("sora-3")


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("not json", "not valid JSON"),
        ("[]", "must be a JSON object"),
        ('{"deployments": {}, "routes": {}}', "at least one deployment"),
        (
            '{"deployments": {"a": {"base_url": "ftp://x", "api_key_env": "K"}}, "routes": {"m": ["a"]}}',
            "base_url",
        ),
        ('{"deployments": {"a": {"base_url": "http://x/v1"}}, "routes": {"m": ["a"]}}', "api_key_env"),
        (
            '{"deployments": {"a": {"base_url": "http://x/v1", "api_key_env": "K", "max_concurrent": 0}},'
            ' "routes": {"m": ["a"]}}',
            "max_concurrent",
        ),
        (
            '{"deployments": {"a": {"base_url": "http://x/v1", "api_key_env": "K",'
            ' "requests_per_minute": 1}}, "routes": {"m": ["a"]}}',
            "requests_per_minute must be an integer of at least 2",
        ),
        (
            '{"deployments": {"a": {"base_url": "http://x/v1", "api_key_env": "K", "api_key": "sk"}},'
            ' "routes": {"m": ["a"]}}',
            "unknown fields: api_key",
        ),
        (
            '{"deployments": {"a": {"base_url": "http://x/v1", "api_key_env": "K"}}, "routes": {"m": ["b"]}}',
            "unknown deployment 'b'",
        ),
        (
            '{"deployments": {"a": {"base_url": "http://x/v1", "api_key_env": "K"}},'
            ' "routes": {"m": ["a", "a"]}}',
            "twice",
        ),
        (
            '{"deployments": {"a": {"base_url": "http://x/v1", "api_key_env": "K"}}, "routes": {"m": []}}',
            "non-empty list",
        ),
    ],
)
def test_bad_registries_are_refused_with_the_entry_named(text, complaint):
    with pytest.raises(RegistryError, match=complaint):
        parse_registry(text)


def test_default_registry_is_one_deployment_for_every_model():
    registry = single_deployment_registry(
        "http://127.0.0.1:8090/v1/", "PROVIDER_API_KEY", ("sora-2", "sora-2-pro")
    )
    assert [route.deployment for route in registry.candidates("sora-2-pro")] == ["default"]
    assert registry.deployments["default"].base_url == "http://127.0.0.1:8090/v1"


def _queued(*specs: tuple[str, str, frozenset[str]]) -> list[QueuedJob]:
    return [QueuedJob(job_id, model, tried) for job_id, model, tried in specs]


def test_slots_go_to_the_oldest_jobs_within_each_deployment_limit():
    registry = parse_registry(REGISTRY)
    queued = _queued(*[(f"j{i}", "sora-2", frozenset()) for i in range(5)])
    assignments, exhausted = assign(registry, queued, in_flight={})
    assert [(a.job_id, a.route.deployment) for a in assignments] == [
        ("j0", "vendor"),
        ("j1", "vendor"),
        ("j2", "vllm"),  # vendor is full (2), the next deployment takes the overflow
    ]
    assert exhausted == []


def test_a_blocked_queue_is_not_overtaken_but_other_models_proceed():
    registry: Registry = parse_registry(REGISTRY)
    queued = _queued(
        ("pro1", "sora-2-pro", frozenset()),
        ("pro2", "sora-2-pro", frozenset()),
        ("s1", "sora-2", frozenset()),
    )
    assignments, _ = assign(registry, queued, in_flight={"vendor": 2})
    assert [(a.job_id, a.route.deployment) for a in assignments] == [("s1", "vllm")]


def test_failed_deployments_are_skipped_and_jobs_with_none_left_are_reported():
    registry = parse_registry(REGISTRY)
    queued = _queued(("a", "sora-2", frozenset({"vendor"})), ("b", "sora-2-pro", frozenset({"vendor"})))
    assignments, exhausted = assign(registry, queued, in_flight={})
    assert [(a.job_id, a.route) for a in assignments] == [("a", Route("vllm", "Wan-AI/Wan2.2-T2V-A14B"))]
    assert exhausted == ["b"]


def test_unavailable_deployments_get_no_new_jobs():
    registry = parse_registry(REGISTRY)
    assignments, exhausted = assign(
        registry, _queued(("a", "sora-2", frozenset())), in_flight={}, unavailable=frozenset({"vendor"})
    )
    assert [a.route.deployment for a in assignments] == ["vllm"]
    assert exhausted == []
