"""Base URL and API key: a flag wins over the environment, which wins over the default."""

from __future__ import annotations

import io

import pytest

from vidflow_cli.commands import EXIT_USAGE, main
from vidflow_cli.config import DEFAULT_BASE_URL, ClientConfig, ConfigProblem, resolve_config


def resolve(environ: dict[str, str], base_url: str | None = None, api_key: str | None = None) -> ClientConfig:
    return resolve_config(base_url_flag=base_url, api_key_flag=api_key, environ=environ)


def test_defaults_to_the_local_gateway() -> None:
    assert resolve({"VIDFLOW_API_KEY": "k"}).base_url == DEFAULT_BASE_URL == "http://127.0.0.1:8080/v1"


def test_environment_beats_the_default_and_flags_beat_the_environment() -> None:
    environ = {"VIDFLOW_BASE_URL": "https://env.example/v1", "VIDFLOW_API_KEY": "env-key"}
    assert resolve(environ) == ClientConfig("https://env.example/v1", "env-key")
    assert resolve(environ, base_url="https://flag.example/v1", api_key="flag-key") == ClientConfig(
        "https://flag.example/v1", "flag-key"
    )


def test_the_openai_key_is_the_fallback() -> None:
    assert resolve({"OPENAI_API_KEY": "sdk-key"}).api_key == "sdk-key"
    assert resolve({"OPENAI_API_KEY": "sdk-key", "VIDFLOW_API_KEY": "ours"}).api_key == "ours"
    # An empty variable counts as unset, as everywhere in Vidflow's configuration.
    assert resolve({"OPENAI_API_KEY": "sdk-key", "VIDFLOW_API_KEY": ""}).api_key == "sdk-key"


def test_a_trailing_slash_is_dropped() -> None:
    assert resolve({"VIDFLOW_API_KEY": "k"}, base_url="http://h:8080/v1/").base_url == "http://h:8080/v1"


def test_no_key_anywhere_is_a_problem() -> None:
    with pytest.raises(ConfigProblem, match="VIDFLOW_API_KEY"):
        resolve({"VIDFLOW_API_KEY": "", "OPENAI_API_KEY": ""})


@pytest.mark.parametrize("url", ["127.0.0.1:8080/v1", "ftp://h/v1", "http://", "/v1"])
def test_a_base_url_must_be_http(url: str) -> None:
    with pytest.raises(ConfigProblem, match="http"):
        resolve({"VIDFLOW_API_KEY": "k"}, base_url=url)


def test_the_key_stays_out_of_the_config_repr() -> None:
    assert "sk-secret" not in repr(resolve({"VIDFLOW_API_KEY": "sk-secret"}))


def test_main_exits_2_without_a_key() -> None:
    stdout, stderr = io.StringIO(), io.StringIO()
    assert main(["balance"], environ={}, stdout=stdout, stderr=stderr) == EXIT_USAGE
    assert "No API key" in stderr.getvalue() and stdout.getvalue() == ""
