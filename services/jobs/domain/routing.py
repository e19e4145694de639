"""The provider registry: which deployments serve each model, in failover order, and their limits.

A deployment is one endpoint that speaks the OpenAI Videos API (a hosted vendor, a self-hosted
vLLM-Omni or SGLang server, our simulator). Routes list deployments per public model name, first
choice first; a route may rename the model for a server that calls it something else.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_MAX_CONCURRENT = 4
DEFAULT_REQUESTS_PER_MINUTE = 600


class RegistryError(ValueError):
    """The registry configuration is not usable; the message names the offending entry."""


@dataclass(frozen=True)
class Deployment:
    name: str
    base_url: str  # ends in /v1
    api_key_env: str  # the environment variable holding its API key (never the key itself)
    max_concurrent: int = DEFAULT_MAX_CONCURRENT
    requests_per_minute: int = DEFAULT_REQUESTS_PER_MINUTE
    # When the deployment sends webhooks, polling is only a slow safety net.
    webhooks: bool = False


@dataclass(frozen=True)
class Route:
    deployment: str
    upstream_model: str


@dataclass(frozen=True)
class Registry:
    deployments: Mapping[str, Deployment]
    routes: Mapping[str, tuple[Route, ...]]

    def candidates(self, model: str, *, excluding: frozenset[str] = frozenset()) -> tuple[Route, ...]:
        return tuple(route for route in self.routes.get(model, ()) if route.deployment not in excluding)

    def serves(self, model: str) -> bool:
        return bool(self.routes.get(model))


def single_deployment_registry(
    base_url: str, api_key_env: str, models: tuple[str, ...], *, webhooks: bool = False
) -> Registry:
    """What runs when no registry is configured: one deployment serving every model."""
    deployment = Deployment(
        name="default", base_url=base_url.rstrip("/"), api_key_env=api_key_env, webhooks=webhooks
    )
    return Registry(
        deployments={deployment.name: deployment},
        routes={model: (Route(deployment.name, model),) for model in models},
    )


def parse_registry(text: str) -> Registry:
    """Parse the JSON registry (see the README's "Provider registry" section)."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RegistryError(f"the provider registry is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise RegistryError("the provider registry must be a JSON object")
    deployments = {name: _deployment(name, spec) for name, spec in _object(raw, "deployments").items()}
    if not deployments:
        raise RegistryError("the provider registry needs at least one deployment")
    routes: dict[str, tuple[Route, ...]] = {}
    for model, entries in _object(raw, "routes").items():
        if not isinstance(entries, list) or not entries:
            raise RegistryError(f"routes.{model} must be a non-empty list of deployments")
        routes[model] = tuple(_route(model, entry, deployments) for entry in entries)
        names = [route.deployment for route in routes[model]]
        if len(set(names)) != len(names):
            raise RegistryError(f"routes.{model} lists a deployment twice")
    if not routes:
        raise RegistryError("the provider registry needs at least one route")
    return Registry(deployments=deployments, routes=routes)


def _object(raw: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = raw.get(key)
    if not isinstance(value, dict):
        raise RegistryError(f"the provider registry needs an object '{key}'")
    return value


def _deployment(name: str, spec: Any) -> Deployment:
    where = f"deployments.{name}"
    if not isinstance(spec, dict):
        raise RegistryError(f"{where} must be an object")
    unknown = set(spec) - {"base_url", "api_key_env", "max_concurrent", "requests_per_minute", "webhooks"}
    if unknown:
        raise RegistryError(f"{where} has unknown fields: {', '.join(sorted(unknown))}")
    base_url = spec.get("base_url")
    if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
        raise RegistryError(f"{where}.base_url must be an http(s) URL ending in /v1")
    api_key_env = spec.get("api_key_env")
    if not isinstance(api_key_env, str) or not api_key_env:
        raise RegistryError(f"{where}.api_key_env must name an environment variable")
    return Deployment(
        name=name,
        base_url=base_url.rstrip("/"),
        api_key_env=api_key_env,
        max_concurrent=_positive_int(spec, "max_concurrent", DEFAULT_MAX_CONCURRENT, where),
        requests_per_minute=_positive_int(
            spec, "requests_per_minute", DEFAULT_REQUESTS_PER_MINUTE, where, least=2
        ),
        webhooks=_bool(spec, "webhooks", where),
    )


def _route(model: str, entry: Any, deployments: Mapping[str, Deployment]) -> Route:
    if isinstance(entry, str):
        name, upstream_model = entry, model
    elif isinstance(entry, dict) and isinstance(entry.get("deployment"), str):
        name = entry["deployment"]
        upstream_model = entry.get("upstream_model", model)
        if not isinstance(upstream_model, str) or not upstream_model:
            raise RegistryError(f"routes.{model}: upstream_model must be a non-empty string")
    else:
        raise RegistryError(
            f"routes.{model}: each entry is a deployment name or {{deployment, upstream_model}}"
        )
    if name not in deployments:
        raise RegistryError(f"routes.{model} names an unknown deployment '{name}'")
    return Route(name, upstream_model)


def _positive_int(spec: Mapping[str, Any], key: str, default: int, where: str, *, least: int = 1) -> int:
    value = spec.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise RegistryError(f"{where}.{key} must be an integer of at least {least}")
    return value


def _bool(spec: Mapping[str, Any], key: str, where: str) -> bool:
    value = spec.get(key, False)
    if not isinstance(value, bool):
        raise RegistryError(f"{where}.{key} must be true or false")
    return value
