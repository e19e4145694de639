"""Pure pricing: the default table, dated snapshots, integer credit conversion, config parsing."""

from decimal import Decimal

import pytest
from servicekit.config import ConfigError
from servicekit.errors import ErrorKind, ServiceError

from services.billing.config import Settings, parse_prices
from services.billing.domain import DEFAULT_USD_PER_SECOND, PriceTable, Rate, VideoSpec, usd_to_micros

PRICES = PriceTable(DEFAULT_USD_PER_SECOND, credits_per_dollar=100)


@pytest.mark.parametrize(
    ("model", "size", "credits_per_second"),
    [
        ("sora-2", "720x1280", 10),
        ("sora-2", "1280x720", 10),
        ("sora-2-pro", "720x1280", 30),
        ("sora-2-pro", "1280x720", 30),
        ("sora-2-pro", "1024x1792", 50),
        ("sora-2-pro", "1792x1024", 50),
        ("sora-2-pro", "1080x1920", 70),
        ("sora-2-pro", "1920x1080", 70),
    ],
)
def test_default_table_prices_every_size_in_whole_cents(
    model: str, size: str, credits_per_second: int
) -> None:
    for seconds in (1, 4, 8, 12):
        assert PRICES.quote(VideoSpec(model, size, seconds)) == credits_per_second * seconds


@pytest.mark.parametrize(
    ("snapshot", "base"), [("sora-2-2025-10-06", "sora-2"), ("sora-2-pro-2025-10-06", "sora-2-pro")]
)
def test_dated_snapshots_price_like_their_base_model(snapshot: str, base: str) -> None:
    assert PRICES.quote(VideoSpec(snapshot, "1280x720", 8)) == PRICES.quote(VideoSpec(base, "1280x720", 8))
    assert PRICES.rate(snapshot, "720x1280") == PRICES.rate(base, "720x1280")


@pytest.mark.parametrize(
    ("model", "size", "param"),
    [
        ("sora-3", "1280x720", "model"),
        ("sora-2-latest", "1280x720", "model"),
        ("gpt-4o-2025-10-06", "1280x720", "model"),  # a date suffix alone does not make a known model
        ("sora-2", "1792x1024", "size"),  # pro-only size
        ("sora-2-pro", "640x480", "size"),
        ("", "1280x720", "model"),
    ],
)
def test_unknown_model_or_size_is_an_invalid_argument_naming_the_field(
    model: str, size: str, param: str
) -> None:
    with pytest.raises(ServiceError) as caught:
        PRICES.quote(VideoSpec(model, size, 4))
    assert caught.value.kind is ErrorKind.INVALID_ARGUMENT
    assert caught.value.param == param


@pytest.mark.parametrize("seconds", [0, -4])
def test_a_video_must_have_a_positive_length(seconds: int) -> None:
    with pytest.raises(ServiceError) as caught:
        PRICES.quote(VideoSpec("sora-2", "1280x720", seconds))
    assert (caught.value.kind, caught.value.param) == (ErrorKind.INVALID_ARGUMENT, "seconds")


def test_prices_convert_to_micro_dollars_exactly() -> None:
    assert usd_to_micros("0.10") == 100_000
    assert usd_to_micros(Decimal("0.7")) == 700_000
    assert usd_to_micros("0.000001") == 1
    # 0.1 + 0.2 in floats is 0.30000000000000004; the table never sees a float.
    assert usd_to_micros("0.3") == 3 * usd_to_micros("0.1")
    for bad in ("0.0000001", "0", "-0.10", "ten cents", "NaN", "Infinity"):
        with pytest.raises(ValueError):
            usd_to_micros(bad)


def test_credit_conversion_rounds_a_fraction_of_a_credit_up_and_nothing_else() -> None:
    assert Rate(100_000, 100).cost(7) == 70  # 0.10 USD/s, 1 credit = 1 cent
    assert Rate(100_000, 1000).cost(3) == 300  # 1 credit = 0.1 cent
    assert Rate(100_000, 1).cost(4) == 1  # 0.40 USD at 1 credit per dollar rounds up to 1
    assert Rate(100_000, 1).cost(10) == 1  # exactly 1 USD
    assert Rate(100_000, 1).cost(11) == 2
    assert Rate(333_333, 3).cost(1) == 1  # 0.999999 credits
    assert Rate(100_000, 100).cost(0) == 0
    # Large values stay exact (no float): a day of the dearest video at a million credits per dollar.
    assert Rate(700_000, 1_000_000).cost(86_400) == 700_000 * 86_400


def test_costs_grow_with_seconds_so_a_shorter_delivery_never_costs_more() -> None:
    for rate in (Rate(100_000, 100), Rate(333_333, 7), Rate(1, 1)):
        costs = [rate.cost(s) for s in range(0, 200)]
        assert costs == sorted(costs)


def test_table_scales_with_credits_per_dollar() -> None:
    per_mill = PriceTable(DEFAULT_USD_PER_SECOND, credits_per_dollar=1000)
    assert per_mill.quote(VideoSpec("sora-2-pro", "1920x1080", 12)) == 8400


def test_billing_prices_json_replaces_the_table_without_floats(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://localhost/x")
    monkeypatch.setenv("NATS_URL", "nats://localhost:4222")
    monkeypatch.setenv("BILLING_PRICES", '{"veo-3": {"1280x720": 0.15, "720x1280": "0.15"}}')
    monkeypatch.setenv("BILLING_CREDITS_PER_DOLLAR", "1000")
    settings = Settings.from_env()
    table = settings.price_table()
    assert table.quote(VideoSpec("veo-3", "1280x720", 8)) == 1200
    with pytest.raises(ServiceError):
        table.quote(VideoSpec("sora-2", "1280x720", 8))
    assert settings.grpc_listen_address == "127.0.0.1:50053"


def test_defaults_apply_without_billing_prices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://localhost/x")
    monkeypatch.setenv("NATS_URL", "nats://localhost:4222")
    monkeypatch.delenv("BILLING_PRICES", raising=False)
    monkeypatch.delenv("BILLING_CREDITS_PER_DOLLAR", raising=False)
    assert Settings.from_env().price_table().quote(VideoSpec("sora-2", "720x1280", 4)) == 40


@pytest.mark.parametrize(
    "raw",
    ['{"sora-2": {"1280x720": 0}}', '{"sora-2": {"1280x720": "cheap"}}', '["sora-2"]', "{", "{}"],
)
def test_bad_billing_prices_fail_at_start_up(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://localhost/x")
    monkeypatch.setenv("NATS_URL", "nats://localhost:4222")
    monkeypatch.setenv("BILLING_PRICES", raw)
    with pytest.raises(ConfigError):
        Settings.from_env()


def test_parse_prices_keeps_decimals_exact() -> None:
    assert parse_prices('{"m": {"s": 0.1}}') == {"m": {"s": Decimal("0.1")}}
    assert parse_prices("") is None
