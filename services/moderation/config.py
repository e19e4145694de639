from __future__ import annotations

from dataclasses import dataclass

from servicekit.config import env_float, env_str


@dataclass(frozen=True)
class Settings:
    database_url: str
    grpc_listen_address: str = "127.0.0.1:50052"
    grpc_drain_seconds: float = 10.0

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            database_url=env_str("DATABASE_URL"),
            grpc_listen_address=env_str("GRPC_LISTEN_ADDRESS", cls.grpc_listen_address),
            grpc_drain_seconds=env_float("GRPC_DRAIN_SECONDS", cls.grpc_drain_seconds),
        )
