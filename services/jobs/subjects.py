"""The NATS stream and subjects the jobs service publishes on: part of its contract, like
`vidflow.jobs.v1`.

A status event goes to `jobs.v1.video.status_changed.<owner>.<job>`, so a subscriber picks one
owner (`....<owner>.*`) or one job by subject, and JetStream finds a job's events from its subject
index without reading anyone else's. Ids pass through `servicekit.bus.subject_token`, so an owner
id with dots (a JWT subject, say) stays one token and cannot match another owner's filter.

This module imports nothing else from the jobs service: subscribers such as the gateway import it,
and the publisher (`store.py`) uses the same functions, so the two cannot drift apart.
"""

from __future__ import annotations

from servicekit.bus import StreamSpec, subject_token

# Every jobs event. The jobs service's outbox relay converges it; the gateway's consumers create it
# when NATS has lost it, so they can resume before the next event is published.
JOBS_STREAM = StreamSpec("JOBS", ("jobs.v1.>",))
STATUS_SUBJECT_PREFIX = "jobs.v1.video.status_changed"
# Every status event of every owner.
ALL_STATUS_SUBJECTS = f"{STATUS_SUBJECT_PREFIX}.>"


def status_subject(owner_id: str, job_id: str) -> str:
    """Where the status events of one job are published."""
    return f"{STATUS_SUBJECT_PREFIX}.{subject_token(owner_id)}.{subject_token(job_id)}"


def owner_status_subjects(owner_id: str) -> str:
    """A filter matching the status events of every job of one owner."""
    return f"{STATUS_SUBJECT_PREFIX}.{subject_token(owner_id)}.*"
