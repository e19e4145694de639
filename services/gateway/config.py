from __future__ import annotations

from dataclasses import dataclass

from servicekit.config import env_float, env_int, env_str


@dataclass(frozen=True)
class Settings:
    database_url: str
    jobs_address: str = "127.0.0.1:50051"
    renderer_address: str = "127.0.0.1:50054"
    host: str = "127.0.0.1"
    port: int = 8080
    # When set, the dev user exists with this key (make run prints it).
    dev_api_key: str = ""
    max_body_bytes: int = 50 * 1024 * 1024
    shutdown_seconds: float = 10.0

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            database_url=env_str("DATABASE_URL"),
            jobs_address=env_str("JOBS_ADDRESS", cls.jobs_address),
            renderer_address=env_str("RENDERER_ADDRESS", cls.renderer_address),
            host=env_str("GATEWAY_HOST", cls.host),
            port=env_int("GATEWAY_PORT", cls.port),
            dev_api_key=env_str("VIDFLOW_DEV_API_KEY", ""),
            max_body_bytes=env_int("GATEWAY_MAX_BODY_BYTES", cls.max_body_bytes),
            shutdown_seconds=env_float("GATEWAY_SHUTDOWN_SECONDS", cls.shutdown_seconds),
        )
