"""The whole Vidflow stack as child processes on loopback: what `make run` starts.

Backing servers come from `devstack.servers` (or the URLs in the environment); then the
provider simulator and the five services start, each as `python -m ...`, exactly as their
containers would run them.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from servicekit.webhooks import new_secret as new_webhook_secret
from vidflow.billing.v1 import billing_service_pb2, billing_service_pb2_grpc

from devstack.servers import Infrastructure, local_infrastructure

DEV_USER_ID = "user_dev"
STARTUP_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 20.0


@dataclass(frozen=True)
class StackPorts:
    gateway: int = 8080
    simulator: int = 8090
    jobs: int = 50051
    moderation: int = 50052
    billing: int = 50053
    renderer: int = 50054
    # Off unless METRICS_PORT is set: then gateway, jobs, moderation, billing and renderer serve
    # /metrics on it and the next four ports.
    metrics: int = 0

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> StackPorts:
        defaults = cls()
        return cls(
            gateway=int(environ.get("GATEWAY_PORT", defaults.gateway)),
            simulator=int(environ.get("SIMULATOR_PORT", defaults.simulator)),
            jobs=int(environ.get("JOBS_GRPC_PORT", defaults.jobs)),
            moderation=int(environ.get("MODERATION_GRPC_PORT", defaults.moderation)),
            billing=int(environ.get("BILLING_GRPC_PORT", defaults.billing)),
            renderer=int(environ.get("RENDERER_GRPC_PORT", defaults.renderer)),
            metrics=int(environ.get("METRICS_PORT", defaults.metrics)),
        )

    def metrics_of(self, service: str) -> str:
        order = ("gateway", "jobs", "moderation", "billing", "renderer")
        return str(self.metrics + order.index(service)) if self.metrics else "0"


@dataclass(frozen=True)
class StackSecrets:
    dev_api_key: str
    provider_api_key: str
    # Signs the simulator's webhooks to the gateway's intake for the "default" deployment.
    provider_webhook_secret: str

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> StackSecrets:
        return cls(
            dev_api_key=environ.get("VIDFLOW_DEV_API_KEY") or "vf_dev_" + secrets.token_urlsafe(24),
            provider_api_key=environ.get("PROVIDER_API_KEY") or "sk-sim-" + secrets.token_urlsafe(24),
            provider_webhook_secret=new_webhook_secret(),
        )


@dataclass
class RunningStack:
    gateway_url: str
    dev_api_key: str
    infrastructure: Infrastructure
    log_dir: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def exited(self) -> list[str]:
        return [name for name, process in self.processes.items() if process.poll() is not None]


def service_environments(
    infrastructure: Infrastructure, ports: StackPorts, keys: StackSecrets, base: Mapping[str, str]
) -> dict[str, dict[str, str]]:
    """The environment of each process, as a table of who talks to whom."""
    common = {**base, **infrastructure.as_environ()}
    loopback = "127.0.0.1"
    return {
        "simulator": {
            **common,
            "SIMULATOR_HOST": loopback,
            "SIMULATOR_PORT": str(ports.simulator),
            "SIMULATOR_API_KEY": keys.provider_api_key,
            "SIMULATOR_GENERATION_SECONDS": base.get("SIMULATOR_GENERATION_SECONDS", "6"),
            "SIMULATOR_WEBHOOK_URL": f"http://{loopback}:{ports.gateway}/webhooks/providers/default",
            "SIMULATOR_WEBHOOK_SECRET": keys.provider_webhook_secret,
        },
        "moderation": {
            **common,
            "GRPC_LISTEN_ADDRESS": f"{loopback}:{ports.moderation}",
            "METRICS_PORT": ports.metrics_of("moderation"),
        },
        "billing": {
            **common,
            "GRPC_LISTEN_ADDRESS": f"{loopback}:{ports.billing}",
            "METRICS_PORT": ports.metrics_of("billing"),
        },
        "renderer": {
            **common,
            "GRPC_LISTEN_ADDRESS": f"{loopback}:{ports.renderer}",
            "METRICS_PORT": ports.metrics_of("renderer"),
        },
        "jobs": {
            **common,
            "GRPC_LISTEN_ADDRESS": f"{loopback}:{ports.jobs}",
            "METRICS_PORT": ports.metrics_of("jobs"),
            "MODERATION_ADDRESS": f"{loopback}:{ports.moderation}",
            "BILLING_ADDRESS": f"{loopback}:{ports.billing}",
            "RENDERER_ADDRESS": f"{loopback}:{ports.renderer}",
            "PROVIDER_BASE_URL": f"http://{loopback}:{ports.simulator}/v1",
            "PROVIDER_API_KEY": keys.provider_api_key,
            "PROVIDER_WEBHOOKS": "true",
        },
        "gateway": {
            **common,
            "GATEWAY_HOST": loopback,
            "GATEWAY_PORT": str(ports.gateway),
            "METRICS_PORT": ports.metrics_of("gateway"),
            "JOBS_ADDRESS": f"{loopback}:{ports.jobs}",
            "RENDERER_ADDRESS": f"{loopback}:{ports.renderer}",
            "BILLING_ADDRESS": f"{loopback}:{ports.billing}",
            "VIDFLOW_DEV_API_KEY": keys.dev_api_key,
            "PROVIDER_WEBHOOK_SECRETS": json.dumps({"default": keys.provider_webhook_secret}),
            # Client webhooks to receivers on this machine are the point of a local stack.
            "GATEWAY_WEBHOOKS_ALLOW_PRIVATE": "true",
        },
    }


_MODULES = {
    "simulator": "simulator",
    "moderation": "services.moderation",
    "billing": "services.billing",
    "renderer": "services.renderer",
    "jobs": "services.jobs",
    "gateway": "services.gateway",
}
_MIGRATED = ("moderation", "billing", "renderer", "jobs", "gateway")


@contextlib.contextmanager
def run_stack(base_dir: Path, environ: Mapping[str, str] = os.environ) -> Iterator[RunningStack]:
    ports = StackPorts.from_env(environ)
    keys = StackSecrets.from_env(environ)
    log_dir = base_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    with local_infrastructure(base_dir / "servers", environ) as infrastructure:
        environments = service_environments(infrastructure, ports, keys, environ)
        for name in _MIGRATED:
            _run_to_completion(name, ["migrate"], environments[name], log_dir)
        stack = RunningStack(f"http://127.0.0.1:{ports.gateway}", keys.dev_api_key, infrastructure, log_dir)
        try:
            for name, module in _MODULES.items():
                stack.processes[name] = _spawn(module, environments[name], log_dir / f"{name}.log")
            _wait_until_ready(stack, ports)
            _credit_dev_user(ports.billing, int(environ.get("VIDFLOW_DEV_CREDITS", "100000")))
            yield stack
        finally:
            _stop_all(stack.processes)


def _spawn(module: str, env: Mapping[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    log = log_path.open("ab")
    try:
        # Own process group, so a terminal Ctrl-C reaches only us and we stop children in order.
        return subprocess.Popen(
            [sys.executable, "-m", module],
            env=dict(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    finally:
        log.close()


def _run_to_completion(name: str, args: list[str], env: Mapping[str, str], log_dir: Path) -> None:
    with (log_dir / f"{name}-migrate.log").open("ab") as log:
        result = subprocess.run(
            [sys.executable, "-m", _MODULES[name], *args],
            env=dict(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=120,
            check=False,
        )
    if result.returncode != 0:
        raise RuntimeError(f"{name} migrate failed; see {log_dir / f'{name}-migrate.log'}")


def _wait_until_ready(stack: RunningStack, ports: StackPorts) -> None:
    checks = {
        "simulator": lambda: _http_ok(f"http://127.0.0.1:{ports.simulator}/healthz"),
        "moderation": lambda: _grpc_serving(ports.moderation),
        "billing": lambda: _grpc_serving(ports.billing),
        "renderer": lambda: _grpc_serving(ports.renderer),
        "jobs": lambda: _grpc_serving(ports.jobs),
        "gateway": lambda: _http_ok(f"http://127.0.0.1:{ports.gateway}/readyz"),
    }
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    pending = dict(checks)
    delay = 0.05
    while pending:
        if dead := stack.exited():
            raise RuntimeError(f"{', '.join(dead)} exited during start-up; see {stack.log_dir}")
        for name in [name for name, ready in pending.items() if ready()]:
            del pending[name]
        if pending:
            if time.monotonic() > deadline:
                raise RuntimeError(f"not ready after {STARTUP_TIMEOUT_SECONDS:.0f}s: {', '.join(pending)}")
            time.sleep(delay)  # polling a readiness probe, not waiting for an outcome
            delay = min(delay * 2, 0.5)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _grpc_serving(port: int) -> bool:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            answer = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=1
            )
        except grpc.RpcError:
            return False
        return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)


def _credit_dev_user(billing_port: int, amount: int) -> None:
    """Idempotent by request id, so restarting `make run` does not mint more credits."""
    with grpc.insecure_channel(f"127.0.0.1:{billing_port}") as channel:
        billing_service_pb2_grpc.BillingServiceStub(channel).Credit(
            billing_service_pb2.CreditRequest(
                account_id=DEV_USER_ID,
                amount=amount,
                reason="make run: starting credit",
                request_id="devstack-initial-credit",
            ),
            timeout=10,
        )


def _stop_all(processes: dict[str, subprocess.Popen[bytes]]) -> None:
    """The gateway first, the simulator last: callers stop before what they call."""
    for name in reversed(list(processes)):
        process = processes[name]
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    for process in reversed(list(processes.values())):
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
