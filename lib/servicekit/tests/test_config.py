"""Environment parsing: defaults, required variables, and values of the wrong shape."""

from __future__ import annotations

import pytest

from servicekit.config import ConfigError, env_bool, env_float, env_int, env_str


def test_env_str_reads_the_value_or_the_default() -> None:
    assert env_str("NAME", environ={"NAME": "jobs"}) == "jobs"
    assert env_str("NAME", "fallback", environ={}) == "fallback"


@pytest.mark.parametrize("environ", [{}, {"DATABASE_URL": ""}])
def test_required_variable_missing_or_empty_is_a_config_error(environ: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="DATABASE_URL"):
        env_str("DATABASE_URL", environ=environ)


def test_empty_value_falls_back_to_the_default() -> None:
    assert env_int("PORT", 8080, environ={"PORT": ""}) == 8080


def test_config_error_is_a_value_error_so_the_entrypoint_reports_it() -> None:
    assert issubclass(ConfigError, ValueError)


def test_env_str_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVICEKIT_TEST_VALUE", "from-env")
    assert env_str("SERVICEKIT_TEST_VALUE") == "from-env"


def test_env_int() -> None:
    assert env_int("PORT", 1, environ={"PORT": "50051"}) == 50051
    assert env_int("PORT", 1, environ={}) == 1
    with pytest.raises(ConfigError, match=r"PORT must be an integer, got '5o'"):
        env_int("PORT", 1, environ={"PORT": "5o"})
    with pytest.raises(ConfigError, match="PORT"):
        env_int("PORT", 1, environ={"PORT": "1.5"})


def test_env_float() -> None:
    assert env_float("GRACE", 5.0, environ={"GRACE": "2.5"}) == 2.5
    assert env_float("GRACE", 5.0, environ={}) == 5.0
    with pytest.raises(ConfigError, match="GRACE must be a number"):
        env_float("GRACE", 5.0, environ={"GRACE": "soon"})


@pytest.mark.parametrize("raw", ["1", "true", "TRUE", " yes ", "on"])
def test_env_bool_true(raw: str) -> None:
    assert env_bool("FLAG", False, environ={"FLAG": raw}) is True


@pytest.mark.parametrize("raw", ["0", "false", "No", "off"])
def test_env_bool_false(raw: str) -> None:
    assert env_bool("FLAG", True, environ={"FLAG": raw}) is False


def test_env_bool_default_and_bad_value() -> None:
    assert env_bool("FLAG", True, environ={}) is True
    assert env_bool("FLAG", False, environ={}) is False
    with pytest.raises(ConfigError, match="FLAG must be a boolean"):
        env_bool("FLAG", False, environ={"FLAG": "maybe"})
