from servicekit.entrypoint import run_service

from services.billing.app import migrate, serve
from services.billing.config import Settings

run_service("billing", Settings.from_env, serve, migrate)
