"""Reference images: 1080p images checked, normalised and stored per second through the renderer's
PrepareReferences over gRPC, and the renderer's peak memory while it prepares one 10 MB image.

What runs:
- real PostgreSQL and S3 from `devstack.servers` (DATABASE_URL / S3_ENDPOINT in the environment
  replace them), one fresh database and bucket for the run;
- the renderer as a separate process (`python -m services.renderer`), so its CPU and memory are its
  own; the clients are in this process, on one channel, one image per request.

Phases, all in the same run:
- "service": 1920x1080 JPEG and PNG sources prepared at the target size (default 1280x720, crop)
  by concurrent clients, counted inside a fixed window after a warm-up;
- "baseline": the same decode/normalise (`prepare_image`) called in this process on one thread,
  with no gRPC, PostgreSQL or S3, which shows what the service adds around the pixel work;
- "memory": one request at a time with a ~10 MB image (noise JPEG, noise PNG, and a smooth
  40-megapixel PNG under 10 MB, the worst case the limits allow), the renderer's RSS sampled
  every 2 ms from another thread; reported as the peak over the RSS just before the request.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import random
import statistics
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
from minio.deleteobjects import DeleteObject
from PIL import Image
from servicekit.grpcclient import open_channel
from servicekit.storage import S3Settings
from vidflow.render.v1 import render_pb2, render_service_pb2, render_service_pb2_grpc

from bench.harness import LOOPBACK, SetupError, free_port, fresh_database, run_in_workdir, service_process
from devstack.servers import Infrastructure, S3Endpoint, local_infrastructure, s3_client
from services.renderer.app import migrate
from services.renderer.config import Settings
from services.renderer.domain.references import Fit, Limits, parse_target_size
from services.renderer.reference_images import prepare_image

NAME = "reference_images"
MAX_BYTES = 10 * 1024 * 1024


@dataclass(frozen=True)
class Options:
    clients: int = 4
    window_seconds: float = 8.0
    warmup_seconds: float = 1.0
    target: str = "1280x720"
    keep_logs: bool = False


def parse_options(argv: list[str], environ: Mapping[str, str] = os.environ) -> Options:
    defaults = Options()
    parser = argparse.ArgumentParser(
        prog=f"python -m bench {NAME}",
        description="1080p reference images prepared per second through the renderer, and its peak memory.",
    )

    def env(name: str, default: object) -> str:
        return environ.get(f"BENCH_{name}", str(default))

    parser.add_argument("--clients", type=int, default=int(env("CLIENTS", defaults.clients)))
    parser.add_argument(
        "--window", type=float, default=float(env("WINDOW_SECONDS", defaults.window_seconds)),
        help="measured seconds per throughput phase",
    )  # fmt: skip
    parser.add_argument("--warmup", type=float, default=float(env("WARMUP_SECONDS", defaults.warmup_seconds)))
    parser.add_argument("--target", default=env("TARGET", defaults.target), help="target_size, WIDTHxHEIGHT")
    parser.add_argument("--keep-logs", action="store_true", help="keep the work directory and its logs")
    args = parser.parse_args(argv)
    if args.clients < 1 or args.window <= 0 or args.warmup < 0:
        parser.error("need --clients >= 1, --window > 0 and --warmup >= 0")
    parse_target_size(args.target)
    return Options(args.clients, args.window, args.warmup, args.target, args.keep_logs)


# --- images ---------------------------------------------------------------------------------------


def _encode(image: Image.Image, fmt: str, **options: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def photo_like(size: tuple[int, int], seed: int) -> Image.Image:
    """Smooth gradients with some texture: compresses like a photo rather than like noise or flat colour."""
    rng = random.Random(seed)
    width, height = size
    base = Image.merge(
        "RGB",
        [Image.linear_gradient("L").rotate(rng.randrange(360)).resize(size) for _ in range(3)],
    )
    grain = Image.frombytes("L", (width // 4, height // 4), rng.randbytes((width // 4) * (height // 4)))
    return Image.blend(base, grain.resize(size).convert("RGB"), 0.15)


def noise_near(limit: int, fmt: str, seed: int) -> bytes:
    """Random pixels, as large as fits in `limit` bytes once encoded as `fmt`."""
    rng = random.Random(seed)
    bytes_per_pixel = {"JPEG": 1.1, "PNG": 3.0}[fmt]
    side = int((limit / bytes_per_pixel) ** 0.5)
    while True:
        image = Image.frombytes("RGB", (side, side), rng.randbytes(side * side * 3))
        data = _encode(image, fmt, quality=95) if fmt == "JPEG" else _encode(image, fmt, compress_level=1)
        if len(data) <= limit:
            return data
        side = int(side * 0.97)


def smooth_40mp_png(limit: int) -> bytes:
    image = Image.linear_gradient("L").resize((7680, 5200)).convert("RGB")  # 39.9 megapixels
    data = _encode(image, "PNG", compress_level=9)
    if len(data) > limit:
        raise SetupError(f"the 40-megapixel PNG came out at {len(data)} bytes, over {limit}")
    return data


# --- phases ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Throughput:
    phase: str  # service or baseline
    source: str
    clients: int
    images: int
    seconds: float
    errors: int
    median_ms: float
    p99_ms: float

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds


@dataclass(frozen=True)
class Memory:
    source: str
    bytes: int
    pixels: int
    rss_before_mb: float
    rss_peak_mb: float
    seconds: float

    @property
    def delta_mb(self) -> float:
        return self.rss_peak_mb - self.rss_before_mb


def _upload(data: bytes, content_type: str) -> render_pb2.ReferenceImageUpload:
    return render_pb2.ReferenceImageUpload(data=data, declared_content_type=content_type)


async def service_throughput(
    stub: render_service_pb2_grpc.RenderServiceStub,
    source: str,
    data: bytes,
    content_type: str,
    options: Options,
) -> Throughput:
    loop = asyncio.get_running_loop()
    start = loop.time() + options.warmup_seconds
    end = start + options.window_seconds
    latencies: list[float] = []
    errors = 0
    owner = f"own_bench_{uuid.uuid4().hex[:8]}"

    async def client() -> None:
        nonlocal errors
        while (began := loop.time()) < end:
            try:
                await stub.PrepareReferences(
                    render_service_pb2.PrepareReferencesRequest(
                        job_id=f"job_{uuid.uuid4().hex}",
                        owner_id=owner,
                        images=[_upload(data, content_type)],
                        target_size=options.target,
                        fit=render_pb2.REFERENCE_FIT_CROP,
                    )
                )
            except Exception:
                errors += 1
                continue
            finished = loop.time()
            if start <= began and finished <= end:
                latencies.append(finished - began)

    await asyncio.gather(*(client() for _ in range(options.clients)))
    return _throughput("service", source, options.clients, latencies, options.window_seconds, errors)


def baseline_throughput(source: str, data: bytes, options: Options) -> Throughput:
    """prepare_image alone, one thread: the pixel work with nothing around it."""
    target = parse_target_size(options.target)
    limits = Limits(max_bytes=MAX_BYTES, max_pixels=40_000_000)
    start = time.perf_counter() + options.warmup_seconds
    end = start + options.window_seconds
    latencies = []
    while (began := time.perf_counter()) < end:
        prepare_image(0, data, "", target, Fit.CROP, limits)
        finished = time.perf_counter()
        if start <= began and finished <= end:
            latencies.append(finished - began)
    return _throughput("baseline", source, 1, latencies, options.window_seconds, 0)


def _throughput(
    phase: str, source: str, clients: int, latencies: list[float], seconds: float, errors: int
) -> Throughput:
    latencies.sort()
    return Throughput(
        phase=phase,
        source=source,
        clients=clients,
        images=len(latencies),
        seconds=seconds,
        errors=errors,
        median_ms=1000 * statistics.median(latencies) if latencies else 0.0,
        p99_ms=1000 * latencies[int(0.99 * (len(latencies) - 1))] if latencies else 0.0,
    )


class RssSampler:
    """The peak RSS of a process, sampled on a thread every `interval` seconds between start and stop."""

    def __init__(self, pid: int, interval: float = 0.002) -> None:
        self._process = psutil.Process(pid)
        self._interval = interval
        self._done = threading.Event()
        self.peak = 0
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._done.is_set():
            self.peak = max(self.peak, self._process.memory_info().rss)
            self._done.wait(self._interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)


async def memory_phase(
    stub: render_service_pb2_grpc.RenderServiceStub,
    pid: int,
    source: str,
    data: bytes,
    content_type: str,
    target: str,
) -> Memory:
    before = psutil.Process(pid).memory_info().rss
    started = time.perf_counter()
    with RssSampler(pid) as sampler:
        response = await stub.PrepareReferences(
            render_service_pb2.PrepareReferencesRequest(
                job_id=f"job_{uuid.uuid4().hex}",
                owner_id="own_bench_memory",
                images=[_upload(data, content_type)],
                target_size=target,
                fit=render_pb2.REFERENCE_FIT_CROP,
            )
        )
    ref = response.references[0]
    return Memory(
        source=source,
        bytes=len(data),
        pixels=ref.original_width * ref.original_height,
        rss_before_mb=before / 2**20,
        rss_peak_mb=sampler.peak / 2**20,
        seconds=time.perf_counter() - started,
    )


# --- servers --------------------------------------------------------------------------------------


@contextlib.contextmanager
def fresh_bucket(infrastructure: Infrastructure) -> Iterator[str]:
    client = s3_client(
        S3Endpoint(
            infrastructure.s3_endpoint,
            infrastructure.s3_access_key,
            infrastructure.s3_secret_key,
            infrastructure.s3_region,
        )
    )
    name = f"bench-{uuid.uuid4().hex[:16]}"
    client.make_bucket(name)
    try:
        yield name
    finally:
        leftovers = [DeleteObject(o.object_name) for o in client.list_objects(name, recursive=True)]
        for _ in client.remove_objects(name, leftovers):
            pass
        with contextlib.suppress(Exception):
            client.remove_bucket(name)


@contextlib.asynccontextmanager
async def renderer_process(env: Mapping[str, str], port: int, log_path: Path) -> AsyncIterator[int]:
    async with service_process("renderer", env, port, log_path) as process:
        yield process.pid


# --- report ---------------------------------------------------------------------------------------


def report(options: Options, phases: list[Throughput], memory: list[Memory]) -> str:
    lines = [
        f"{NAME}: 1920x1080 sources prepared at {options.target} (crop), one image per request, "
        f"{options.window_seconds:.0f}s window after {options.warmup_seconds:.0f}s warm-up",
        "",
        f"{'phase':<9} {'source':<11} {'clients':>7} {'images':>7} {'images/s':>9} "
        f"{'median ms':>10} {'p99 ms':>8} {'errors':>7}",
    ]
    for p in phases:
        lines.append(
            f"{p.phase:<9} {p.source:<11} {p.clients:>7} {p.images:>7,} {p.images_per_second:>9,.1f} "
            f"{p.median_ms:>10.1f} {p.p99_ms:>8.1f} {p.errors:>7}"
        )
    lines += ["", "renderer RSS while preparing one image (sampled every 2 ms):"]
    for m in memory:
        lines.append(
            f"  {m.source:<22} {m.bytes / 2**20:5.1f} MB, {m.pixels / 1e6:5.1f} MP: "
            f"peak {m.rss_peak_mb:7.1f} MB, +{m.delta_mb:6.1f} MB over {m.rss_before_mb:6.1f} MB before, "
            f"{m.seconds * 1000:6.0f} ms"
        )
    return "\n".join(lines)


def summary_json(options: Options, phases: list[Throughput], memory: list[Memory]) -> str:
    def rounded(values: dict[str, Any]) -> dict[str, Any]:
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in values.items()}

    return json.dumps(
        {
            "benchmark": NAME,
            "options": {k: v for k, v in options.__dict__.items() if k != "keep_logs"},
            "throughput": [
                {**rounded(p.__dict__), "images_per_second": round(p.images_per_second, 2)} for p in phases
            ],
            "memory": [{**rounded(m.__dict__), "delta_mb": round(m.delta_mb, 1)} for m in memory],
        },
        separators=(",", ":"),
    )


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- entry point ----------------------------------------------------------------------------------


async def run(options: Options, workdir: Path) -> tuple[list[Throughput], list[Memory]]:
    _progress("making images")
    sources = {
        "jpeg-1080p": (_encode(photo_like((1920, 1080), 1), "JPEG", quality=90), "image/jpeg"),
        "png-1080p": (_encode(photo_like((1920, 1080), 2), "PNG"), "image/png"),
    }
    big = {
        "jpeg noise 10MB": (noise_near(MAX_BYTES, "JPEG", 3), "image/jpeg"),
        "png noise 10MB": (noise_near(MAX_BYTES, "PNG", 4), "image/png"),
        "png smooth 40MP": (smooth_40mp_png(MAX_BYTES), "image/png"),
    }
    with (
        local_infrastructure(workdir / "servers") as infrastructure,
        fresh_database(infrastructure) as url,
        fresh_bucket(infrastructure) as bucket,
    ):
        s3 = S3Settings(
            infrastructure.s3_endpoint,
            infrastructure.s3_access_key,
            infrastructure.s3_secret_key,
            infrastructure.s3_region,
            bucket,
        )
        await asyncio.to_thread(migrate, Settings(database_url=url, s3=s3))
        port = free_port()
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "S3_ENDPOINT": s3.endpoint,
            "S3_ACCESS_KEY": s3.access_key,
            "S3_SECRET_KEY": s3.secret_key,
            "S3_REGION": s3.region,
            "S3_BUCKET": bucket,
            "GRPC_LISTEN_ADDRESS": f"{LOOPBACK}:{port}",
            "LOG_LEVEL": "WARNING",
        }
        _progress("starting the renderer")
        async with (
            renderer_process(env, port, workdir / "renderer.log") as pid,
            open_channel(f"{LOOPBACK}:{port}", tracer_name="bench.references", default_timeout=60) as channel,
        ):
            stub = render_service_pb2_grpc.RenderServiceStub(channel)
            phases = []
            for source, (data, content_type) in sources.items():
                _progress(f"[service] {source}, {options.clients} clients: {options.window_seconds:.0f}s")
                phases.append(await service_throughput(stub, source, data, content_type, options))
            memory = []
            for source, (data, content_type) in big.items():
                _progress(f"[memory] {source}")
                memory.append(await memory_phase(stub, pid, source, data, content_type, options.target))
    for source, (data, _) in sources.items():
        _progress(f"[baseline] {source}, in process: {options.window_seconds:.0f}s")
        phases.append(await asyncio.to_thread(baseline_throughput, source, data, options))
    return phases, memory


def main(argv: list[str]) -> int:
    options = parse_options(argv)
    return run_in_workdir(
        NAME,
        lambda workdir: run(options, workdir),
        lambda result: (report(options, *result), summary_json(options, *result)),
        keep_logs=options.keep_logs,
    )
