from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from servicekit.bus import StreamSpec, stream_replicas
from servicekit.config import ConfigError, env_float, env_int, env_str
from servicekit.metrics import metrics_port_from_env
from servicekit.storage import S3Settings, S3Timeouts

from services.jobs.domain.routing import Registry, RegistryError, parse_registry, single_deployment_registry
from services.jobs.domain.video_spec import SIZES_BY_MODEL
from services.jobs.subjects import JOBS_STREAM

DEFAULT_PROVIDER_URL = "http://127.0.0.1:8090/v1"


@dataclass(frozen=True)
class ProviderSettings:
    registry: Registry
    # Deployment name -> API key, read from each deployment's api_key_env at start-up.
    api_keys: Mapping[str, str] = field(repr=False, default_factory=dict)
    timeout_seconds: float = 30.0
    max_attempts: int = 4
    # Polling: honour hints, back off while nothing changes, and poll rarely when webhooks arrive.
    min_poll_seconds: float = 2.0
    max_poll_seconds: float = 30.0
    webhook_poll_seconds: float = 120.0
    # A job whose progress has not moved for this long fails with a timeout.
    progress_deadline_seconds: float = 3600.0
    # How long a deployment that keeps failing gets no new jobs.
    cooldown_seconds: float = 30.0

    @classmethod
    def single(
        cls, base_url: str, api_key: str, *, webhooks: bool = False, **options: float
    ) -> ProviderSettings:
        """One deployment serving every model (the default, and handy in tests)."""
        registry = single_deployment_registry(
            base_url, "PROVIDER_API_KEY", tuple(SIZES_BY_MODEL), webhooks=webhooks
        )
        return cls(registry=registry, api_keys={"default": api_key}, **options)  # type: ignore[arg-type]

    @classmethod
    def from_env(cls) -> ProviderSettings:
        text = env_str("PROVIDER_REGISTRY", "")
        path = env_str("PROVIDER_REGISTRY_FILE", "")
        if text and path:
            raise ConfigError("set PROVIDER_REGISTRY or PROVIDER_REGISTRY_FILE, not both")
        if path:
            try:
                text = Path(path).read_text()
            except OSError as exc:
                raise ConfigError(f"PROVIDER_REGISTRY_FILE {path}: {exc.strerror}") from None
        try:
            registry = (
                parse_registry(text)
                if text
                else single_deployment_registry(
                    env_str("PROVIDER_BASE_URL", DEFAULT_PROVIDER_URL),
                    "PROVIDER_API_KEY",
                    tuple(SIZES_BY_MODEL),
                )
            )
        except RegistryError as exc:
            raise ConfigError(f"provider registry: {exc}") from None
        api_keys = {}
        for deployment in registry.deployments.values():
            key = os.environ.get(deployment.api_key_env, "")
            if not key:
                raise ConfigError(
                    f"deployment {deployment.name}: environment variable {deployment.api_key_env} is not set"
                )
            api_keys[deployment.name] = key
        defaults = cls(registry=registry)
        return cls(
            registry=registry,
            api_keys=api_keys,
            timeout_seconds=env_float("PROVIDER_TIMEOUT_SECONDS", defaults.timeout_seconds),
            max_attempts=env_int("PROVIDER_MAX_ATTEMPTS", defaults.max_attempts),
            min_poll_seconds=env_float("PROVIDER_MIN_POLL_SECONDS", defaults.min_poll_seconds),
            max_poll_seconds=env_float("PROVIDER_MAX_POLL_SECONDS", defaults.max_poll_seconds),
            webhook_poll_seconds=env_float("PROVIDER_WEBHOOK_POLL_SECONDS", defaults.webhook_poll_seconds),
            progress_deadline_seconds=env_float(
                "JOBS_PROGRESS_DEADLINE_SECONDS", defaults.progress_deadline_seconds
            ),
            cooldown_seconds=env_float("PROVIDER_COOLDOWN_SECONDS", defaults.cooldown_seconds),
        )


@dataclass(frozen=True)
class WorkerSettings:
    worker_id: str
    concurrency: int = 8
    idle_poll_seconds: float = 1.0
    lease_seconds: float = 120.0
    # How long a step keeps retrying transient failures before the video fails (capture and release
    # never give up: they move money that is already held).
    step_retry_patience_seconds: float = 1800.0
    # A finished job's staged files (a failed long video's clips, kept for a retry) live this long.
    staging_retention_seconds: float = 86400.0
    staging_sweep_seconds: float = 600.0
    admission_grace_seconds: float = 60.0


@dataclass(frozen=True)
class Settings:
    database_url: str
    nats_url: str
    s3: S3Settings
    provider: ProviderSettings
    worker: WorkerSettings
    moderation_address: str = "127.0.0.1:50052"
    billing_address: str = "127.0.0.1:50053"
    renderer_address: str = "127.0.0.1:50054"
    grpc_listen_address: str = "127.0.0.1:50051"
    grpc_drain_seconds: float = 10.0
    # /metrics port; 0 (off) unless set, so tests and benchmarks never fight over 9464.
    metrics_port: int = 0
    # Copies of the JOBS stream in a NATS cluster.
    nats_stream_replicas: int = 1

    @property
    def jobs_stream(self) -> StreamSpec:
        return replace(JOBS_STREAM, replicas=self.nats_stream_replicas)

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            database_url=env_str("DATABASE_URL"),
            nats_url=env_str("NATS_URL"),
            s3=S3Settings(
                endpoint=env_str("S3_ENDPOINT"),
                access_key=env_str("S3_ACCESS_KEY"),
                secret_key=env_str("S3_SECRET_KEY"),
                region=env_str("S3_REGION", "us-east-1"),
                bucket=env_str("S3_BUCKET", "vidflow-media"),
                timeouts=S3Timeouts(
                    connect_seconds=env_float("S3_CONNECT_TIMEOUT_SECONDS", S3Timeouts.connect_seconds),
                    read_seconds=env_float("S3_READ_TIMEOUT_SECONDS", S3Timeouts.read_seconds),
                ),
            ),
            provider=ProviderSettings.from_env(),
            worker=WorkerSettings(
                worker_id=env_str("JOBS_WORKER_ID", f"{socket.gethostname()}-{os.getpid()}"),
                concurrency=env_int("JOBS_WORKER_CONCURRENCY", WorkerSettings.concurrency),
                idle_poll_seconds=env_float("JOBS_IDLE_POLL_SECONDS", WorkerSettings.idle_poll_seconds),
                lease_seconds=env_float("JOBS_LEASE_SECONDS", WorkerSettings.lease_seconds),
                step_retry_patience_seconds=env_float(
                    "JOBS_STEP_RETRY_PATIENCE_SECONDS", WorkerSettings.step_retry_patience_seconds
                ),
                staging_retention_seconds=env_float(
                    "JOBS_STAGING_RETENTION_SECONDS", WorkerSettings.staging_retention_seconds
                ),
                staging_sweep_seconds=env_float(
                    "JOBS_STAGING_SWEEP_SECONDS", WorkerSettings.staging_sweep_seconds
                ),
            ),
            moderation_address=env_str("MODERATION_ADDRESS", cls.moderation_address),
            billing_address=env_str("BILLING_ADDRESS", cls.billing_address),
            renderer_address=env_str("RENDERER_ADDRESS", cls.renderer_address),
            grpc_listen_address=env_str("GRPC_LISTEN_ADDRESS", cls.grpc_listen_address),
            grpc_drain_seconds=env_float("GRPC_DRAIN_SECONDS", cls.grpc_drain_seconds),
            metrics_port=metrics_port_from_env(),
            nats_stream_replicas=stream_replicas(env_int("NATS_STREAM_REPLICAS", cls.nats_stream_replicas)),
        )
