from servicekit.entrypoint import run_service

from services.jobs.app import migrate, serve
from services.jobs.config import Settings

run_service("jobs", Settings.from_env, serve, migrate)
