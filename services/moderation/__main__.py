from servicekit.entrypoint import run_service

from services.moderation.app import migrate, serve
from services.moderation.config import Settings

run_service("moderation", Settings.from_env, serve, migrate)
