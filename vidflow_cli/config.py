"""Where the CLI talks to and with which key: a flag wins, then the environment, then the default."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from servicekit.config import env_str

DEFAULT_BASE_URL = "http://127.0.0.1:8080/v1"
BASE_URL_VARIABLE = "VIDFLOW_BASE_URL"
# The openai SDK's variable is the fallback, so a shell already set up for the SDK just works.
API_KEY_VARIABLES = ("VIDFLOW_API_KEY", "OPENAI_API_KEY")


class ConfigProblem(ValueError):
    """The command line and environment do not say where to go or which key to use (exit 2)."""


@dataclass(frozen=True)
class ClientConfig:
    base_url: str  # ".../v1", without a trailing slash
    api_key: str = field(repr=False)  # never printed, not even in a traceback's locals


def resolve_config(
    *, base_url_flag: str | None, api_key_flag: str | None, environ: Mapping[str, str]
) -> ClientConfig:
    base_url = base_url_flag or env_str(BASE_URL_VARIABLE, DEFAULT_BASE_URL, environ=environ)
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigProblem(f"The base URL must be an http(s) URL such as {DEFAULT_BASE_URL}.")
    api_key = api_key_flag or next(
        (key for name in API_KEY_VARIABLES if (key := env_str(name, "", environ=environ))), ""
    )
    if not api_key:
        raise ConfigProblem("No API key: set VIDFLOW_API_KEY (or OPENAI_API_KEY), or pass --api-key.")
    return ClientConfig(base_url=base_url.rstrip("/"), api_key=api_key)
