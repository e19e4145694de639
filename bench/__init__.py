"""Benchmarks: each one starts what it needs, measures, and prints figures from that same run.

`python -m bench` runs them all; `python -m bench <name> [options]` runs one. They report goals
as met or not met and fail only when they cannot set up; wall-clock numbers never go in tests.
"""

from __future__ import annotations

# Benchmark name -> module with `main(argv) -> int`; imported only when that benchmark runs.
BENCHMARKS = {
    "provider_tracking": "bench.provider_tracking",
    "billing_throughput": "bench.billing_throughput",
    "reference_images": "bench.reference_images",
    "renditions_ladder": "bench.renditions_ladder",
    "live_latency": "bench.live_latency",
    "gateway_throughput": "bench.gateway_throughput",
    "load": "bench.load",
    "outbox_relay": "bench.outbox_relay",
}
