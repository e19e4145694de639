"""devstack: the real backing servers (PostgreSQL, NATS JetStream, S3) for `make run` and tests.

See `devstack.servers` for how they are found, started, probed and stopped.
"""

from devstack.servers import (
    Infrastructure,
    S3Endpoint,
    ServerStartError,
    local_infrastructure,
    run_nats,
    run_postgres,
    run_seaweedfs,
    s3_client,
)

__all__ = [
    "Infrastructure",
    "S3Endpoint",
    "ServerStartError",
    "local_infrastructure",
    "run_nats",
    "run_postgres",
    "run_seaweedfs",
    "s3_client",
]
