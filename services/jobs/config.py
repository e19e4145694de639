from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from servicekit.config import env_float, env_int, env_str
from servicekit.storage import S3Settings


@dataclass(frozen=True)
class ProviderSettings:
    base_url: str  # ends in /v1
    api_key: str
    timeout_seconds: float = 30.0
    max_attempts: int = 4


@dataclass(frozen=True)
class WorkerSettings:
    worker_id: str
    concurrency: int = 8
    idle_poll_seconds: float = 1.0
    lease_seconds: float = 120.0
    provider_poll_seconds: float = 2.0
    max_step_attempts: int = 8
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
            ),
            provider=ProviderSettings(
                base_url=env_str("PROVIDER_BASE_URL", "http://127.0.0.1:8090/v1").rstrip("/"),
                api_key=env_str("PROVIDER_API_KEY", "sk-simulator"),
                timeout_seconds=env_float("PROVIDER_TIMEOUT_SECONDS", ProviderSettings.timeout_seconds),
                max_attempts=env_int("PROVIDER_MAX_ATTEMPTS", ProviderSettings.max_attempts),
            ),
            worker=WorkerSettings(
                worker_id=env_str("JOBS_WORKER_ID", f"{socket.gethostname()}-{os.getpid()}"),
                concurrency=env_int("JOBS_WORKER_CONCURRENCY", WorkerSettings.concurrency),
                idle_poll_seconds=env_float("JOBS_IDLE_POLL_SECONDS", WorkerSettings.idle_poll_seconds),
                lease_seconds=env_float("JOBS_LEASE_SECONDS", WorkerSettings.lease_seconds),
                provider_poll_seconds=env_float(
                    "JOBS_PROVIDER_POLL_SECONDS", WorkerSettings.provider_poll_seconds
                ),
                max_step_attempts=env_int("JOBS_MAX_STEP_ATTEMPTS", WorkerSettings.max_step_attempts),
            ),
            moderation_address=env_str("MODERATION_ADDRESS", cls.moderation_address),
            billing_address=env_str("BILLING_ADDRESS", cls.billing_address),
            renderer_address=env_str("RENDERER_ADDRESS", cls.renderer_address),
            grpc_listen_address=env_str("GRPC_LISTEN_ADDRESS", cls.grpc_listen_address),
            grpc_drain_seconds=env_float("GRPC_DRAIN_SECONDS", cls.grpc_drain_seconds),
        )
