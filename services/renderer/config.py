from __future__ import annotations

from dataclasses import dataclass

from servicekit.config import env_float, env_int, env_str
from servicekit.metrics import metrics_port_from_env
from servicekit.storage import S3Settings, S3Timeouts

from services.renderer.domain.renditions import DEFAULT_LADDER


@dataclass(frozen=True)
class Settings:
    database_url: str
    s3: S3Settings
    grpc_listen_address: str = "127.0.0.1:50054"
    grpc_drain_seconds: float = 10.0
    # /metrics port; 0 (off) unless set, so tests and benchmarks never fight over 9464.
    metrics_port: int = 0
    url_ttl_seconds: int = 300
    max_source_bytes: int = 2 * 1024**3
    max_reference_bytes: int = 10 * 1024 * 1024
    max_reference_pixels: int = 40_000_000
    reference_sweep_seconds: float = 600.0
    reference_decodes: int = 2
    # Heights of the renditions ladder, applied to the source's short side.
    ladder: str = DEFAULT_LADDER
    # Path of ffmpeg; empty means the static build imageio-ffmpeg ships.
    ffmpeg: str = ""
    transcode_timeout_seconds: float = 600.0

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            database_url=env_str("DATABASE_URL"),
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
            grpc_listen_address=env_str("GRPC_LISTEN_ADDRESS", cls.grpc_listen_address),
            grpc_drain_seconds=env_float("GRPC_DRAIN_SECONDS", cls.grpc_drain_seconds),
            metrics_port=metrics_port_from_env(),
            url_ttl_seconds=env_int("RENDERER_URL_TTL_SECONDS", cls.url_ttl_seconds),
            max_source_bytes=env_int("RENDERER_MAX_SOURCE_BYTES", cls.max_source_bytes),
            max_reference_bytes=env_int("RENDERER_MAX_REFERENCE_BYTES", cls.max_reference_bytes),
            max_reference_pixels=env_int("RENDERER_MAX_REFERENCE_PIXELS", cls.max_reference_pixels),
            reference_sweep_seconds=env_float(
                "RENDERER_REFERENCE_SWEEP_SECONDS", cls.reference_sweep_seconds
            ),
            reference_decodes=env_int("RENDERER_REFERENCE_DECODES", cls.reference_decodes),
            ladder=env_str("RENDERER_LADDER", cls.ladder),
            ffmpeg=env_str("RENDERER_FFMPEG", cls.ffmpeg),
            transcode_timeout_seconds=env_float(
                "RENDERER_TRANSCODE_TIMEOUT_SECONDS", cls.transcode_timeout_seconds
            ),
        )
