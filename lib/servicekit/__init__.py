"""servicekit: what several Vidflow services share, and nothing domain-specific.

Modules: `config` (environment parsing), `logging` (JSON lines), `telemetry` (OpenTelemetry
and context propagation), `errors` (the one error table), `grpcserver` (server bootstrap and
graceful shutdown), `grpcclient` (channels with tracing and timeouts), `db` (engines and
migrations), `bus` (NATS JetStream), `outbox` (transactional outbox relay), `lifecycle`
(signals), `storage` (S3 client), `metrics` (OpenTelemetry metrics served to Prometheus).
"""
