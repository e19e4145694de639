"""Chaos decisions, without HTTP: probabilities, ordering, and reproducibility from a seed."""

from __future__ import annotations

from collections import Counter

import pytest

from simulator.chaos import Chaos, ChaosConfigError, ChaosSettings, Fault, JobPlan, RequestPlan, parse_terms

SAMPLES = 4000


def _faults(chaos: Chaos, n: int = SAMPLES, *, creates_video: bool = False) -> Counter[Fault | None]:
    return Counter(chaos.plan_request(creates_video=creates_video).fault for _ in range(n))


def test_everything_is_off_by_default() -> None:
    chaos = Chaos()
    assert all(chaos.plan_request(creates_video=True) == RequestPlan() for _ in range(100))
    assert all(chaos.plan_job() == JobPlan() for _ in range(100))
    assert chaos.refused_term("anything at all") is None


@pytest.mark.parametrize(
    ("knob", "fault"),
    [
        ("rate_limit", Fault.RATE_LIMIT),
        ("server_error", Fault.SERVER_ERROR),
        ("unavailable", Fault.UNAVAILABLE),
        ("drop", Fault.DROP),
    ],
)
def test_a_certain_fault_always_happens(knob: str, fault: Fault) -> None:
    chaos = Chaos(ChaosSettings.from_dict({"seed": 1, knob: 1.0}))
    assert _faults(chaos, 50) == Counter({fault: 50})


def test_fault_probabilities_are_respected_when_combined() -> None:
    chaos = Chaos(ChaosSettings(seed=3, rate_limit=0.2, server_error=0.1, unavailable=0.1, drop=0.05))
    counts = _faults(chaos)
    expected = {Fault.RATE_LIMIT: 0.2, Fault.SERVER_ERROR: 0.1, Fault.UNAVAILABLE: 0.1, Fault.DROP: 0.05}
    for fault, probability in expected.items():
        assert abs(counts[fault] / SAMPLES - probability) < 0.03, (fault, counts)
    assert abs(counts[None] / SAMPLES - 0.55) < 0.03


def test_rate_limits_carry_the_configured_retry_hint() -> None:
    plan = Chaos(ChaosSettings(rate_limit=1.0, retry_after_ms=2500)).plan_request(creates_video=False)
    assert (plan.fault, plan.retry_after_ms, plan.after_handler) == (Fault.RATE_LIMIT, 2500, False)


def test_slow_adds_the_configured_latency_with_its_probability() -> None:
    chaos = Chaos(ChaosSettings(seed=5, slow=0.25, slow_ms=750))
    delays = Counter(chaos.plan_request(creates_video=False).delay_ms for _ in range(SAMPLES))
    assert set(delays) == {0, 750}
    assert abs(delays[750] / SAMPLES - 0.25) < 0.03


@pytest.mark.parametrize("knob", ["server_error", "unavailable", "drop"])
def test_failures_on_create_come_after_the_video_exists_about_half_the_time(knob: str) -> None:
    chaos = Chaos(ChaosSettings.from_dict({"seed": 11, knob: 1.0}))
    after = sum(chaos.plan_request(creates_video=True).after_handler for _ in range(SAMPLES))
    assert abs(after / SAMPLES - 0.5) < 0.03


def test_only_creates_can_fail_after_the_handler_and_never_for_rate_limits() -> None:
    reads = Chaos(ChaosSettings(seed=2, server_error=1.0))
    assert not any(reads.plan_request(creates_video=False).after_handler for _ in range(200))
    limited = Chaos(ChaosSettings(seed=2, rate_limit=1.0))
    assert not any(limited.plan_request(creates_video=True).after_handler for _ in range(200))


def test_job_fates_follow_their_probabilities() -> None:
    chaos = Chaos(ChaosSettings(seed=9, fail_job=0.3, early_expiry=0.6, early_expiry_seconds=2))
    plans = [chaos.plan_job() for _ in range(SAMPLES)]
    assert abs(sum(plan.fail for plan in plans) / SAMPLES - 0.3) < 0.03
    early = [plan.expires_after_seconds for plan in plans if plan.expires_after_seconds is not None]
    assert set(early) == {2.0}
    assert abs(len(early) / SAMPLES - 0.6) < 0.03


def test_the_same_seed_and_sequence_give_the_same_outcomes() -> None:
    knobs = ChaosSettings(
        seed=42, rate_limit=0.2, server_error=0.2, unavailable=0.1, drop=0.1, slow=0.3, fail_job=0.5
    )

    def run(chaos: Chaos) -> list[object]:
        outcomes: list[object] = []
        for index in range(300):
            creates = index % 3 == 0
            outcomes.append(chaos.plan_request(creates_video=creates))
            if creates:
                outcomes.append(chaos.plan_job())
        return outcomes

    first, second = run(Chaos(knobs)), run(Chaos(knobs))
    assert first == second
    assert len({plan.fault for plan in first if isinstance(plan, RequestPlan)}) == 5  # all four + None
    assert run(Chaos(ChaosSettings(**{**knobs.as_dict(), "seed": 43, "refuse_terms": ()}))) != first


def test_replacing_the_knobs_restarts_the_sequence_from_the_seed() -> None:
    knobs = ChaosSettings(seed=7, server_error=0.5)
    chaos = Chaos(knobs)
    first = [chaos.plan_request(creates_video=False) for _ in range(20)]
    chaos.replace(knobs)
    assert [chaos.plan_request(creates_video=False) for _ in range(20)] == first
    chaos.replace(ChaosSettings())
    assert chaos.plan_request(creates_video=False) == RequestPlan()


def test_refused_terms_match_case_insensitively_and_anywhere() -> None:
    chaos = Chaos(ChaosSettings(refuse_terms=("violence", "Gore")))
    assert chaos.refused_term("A scene of VIOLENCE at dawn") == "violence"
    assert chaos.refused_term("gory gore") == "Gore"
    assert chaos.refused_term("a calm lake") is None


def test_refuse_terms_parse_from_a_comma_separated_list() -> None:
    assert parse_terms(" violence, ,gore ,") == ("violence", "gore")
    assert parse_terms("") == ()


def test_settings_round_trip_through_json_shaped_dicts() -> None:
    knobs = ChaosSettings(seed=7, rate_limit=0.2, refuse_terms=("x",), slow_ms=10, early_expiry_seconds=1.5)
    assert ChaosSettings.from_dict(knobs.as_dict()) == knobs
    assert ChaosSettings.from_dict({}) == ChaosSettings()
    assert ChaosSettings.from_dict({"unavailable": 1}) == ChaosSettings(unavailable=1.0)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"rate_limit": 1.5}, "probability"),
        ({"drop": -0.1}, "probability"),
        ({"server_error": "0.5"}, "must be a number"),
        ({"slow": True}, "must be a number"),
        ({"seed": "seven"}, "seed"),
        ({"slow_ms": 1.5}, "integer"),
        ({"retry_after_ms": -1}, "negative"),
        ({"refuse_terms": "violence"}, "list of strings"),
        ({"refuse_terms": [" "]}, "empty"),
        ({"rateLimit": 0.1}, "unknown chaos knob"),
    ],
)
def test_bad_settings_are_refused_with_a_reason(data: dict[str, object], message: str) -> None:
    with pytest.raises(ChaosConfigError, match=message):
        ChaosSettings.from_dict(data)
