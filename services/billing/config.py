from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from servicekit.bus import stream_replicas
from servicekit.config import ConfigError, env_float, env_int, env_str
from servicekit.metrics import metrics_port_from_env

from services.billing.domain import DEFAULT_USD_PER_SECOND, PriceTable


@dataclass(frozen=True)
class Settings:
    database_url: str
    nats_url: str
    grpc_listen_address: str = "127.0.0.1:50053"
    grpc_drain_seconds: float = 10.0
    # /metrics port; 0 (off) unless set, so tests and benchmarks never fight over 9464.
    metrics_port: int = 0
    # Copies of the BILLING stream in a NATS cluster.
    nats_stream_replicas: int = 1
    credits_per_dollar: int = 100
    # USD per second by model and size; BILLING_PRICES replaces the whole table.
    usd_per_second: Mapping[str, Mapping[str, str | Decimal]] = field(
        default_factory=lambda: DEFAULT_USD_PER_SECOND
    )

    def price_table(self) -> PriceTable:
        return PriceTable(self.usd_per_second, self.credits_per_dollar)

    @classmethod
    def from_env(cls) -> Settings:
        prices = parse_prices(env_str("BILLING_PRICES", ""))
        settings = cls(
            database_url=env_str("DATABASE_URL"),
            nats_url=env_str("NATS_URL"),
            grpc_listen_address=env_str("GRPC_LISTEN_ADDRESS", cls.grpc_listen_address),
            grpc_drain_seconds=env_float("GRPC_DRAIN_SECONDS", cls.grpc_drain_seconds),
            metrics_port=metrics_port_from_env(),
            nats_stream_replicas=stream_replicas(env_int("NATS_STREAM_REPLICAS", cls.nats_stream_replicas)),
            credits_per_dollar=env_int("BILLING_CREDITS_PER_DOLLAR", cls.credits_per_dollar),
            usd_per_second=DEFAULT_USD_PER_SECOND if prices is None else prices,
        )
        try:
            settings.price_table()  # refuse a bad table at start-up, not at the first quote
        except ValueError as exc:
            raise ConfigError(f"BILLING_PRICES / BILLING_CREDITS_PER_DOLLAR: {exc}") from exc
        return settings


def parse_prices(raw: str) -> dict[str, dict[str, Decimal]] | None:
    """`{"model": {"WxH": 0.10, ...}, ...}`; numbers parse as Decimal, so 0.1 stays exactly 0.1.

    The prices themselves (positive, at most micro-dollar precision) are checked when the table is built.
    """
    if not raw:
        return None
    try:
        table = json.loads(raw, parse_float=Decimal, parse_int=Decimal)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"BILLING_PRICES is not valid JSON: {exc}") from exc
    if not isinstance(table, dict) or not all(isinstance(sizes, dict) for sizes in table.values()):
        raise ConfigError('BILLING_PRICES must look like {"model": {"720x1280": 0.10}}')
    return table
