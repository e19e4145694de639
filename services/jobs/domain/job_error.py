"""Why a job failed, as clients see it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class JobError:
    # Machine-readable, for example "moderation_blocked" or "provider_error".
    code: str
    message: str
