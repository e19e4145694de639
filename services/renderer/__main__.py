from servicekit.entrypoint import run_service

from services.renderer.app import migrate, serve
from services.renderer.config import Settings

run_service("renderer", Settings.from_env, serve, migrate)
