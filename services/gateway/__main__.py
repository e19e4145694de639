from servicekit.entrypoint import run_service

from services.gateway.app import migrate, serve
from services.gateway.config import Settings

run_service("gateway", Settings.from_env, serve, migrate)
