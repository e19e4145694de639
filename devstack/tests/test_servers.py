"""The local servers are real: each is driven with the client the services use."""

from __future__ import annotations

import io
import os
import socket
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import nats
import psycopg
import pytest
from minio import Minio
from servicekit.config import ConfigError

from devstack.servers import Infrastructure, ServerStartError, local_infrastructure, run_nats

integration = pytest.mark.integration


# --- PostgreSQL ---


@integration
def test_fresh_database_is_empty_and_usable(fresh_database_url: str) -> None:
    expected_name = urlsplit(fresh_database_url).path.lstrip("/")
    with psycopg.connect(fresh_database_url, connect_timeout=10) as connection:
        assert connection.execute("SELECT current_database()").fetchone() == (expected_name,)
        tables = connection.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()
        assert tables == (0,)
        connection.execute("CREATE TABLE prompts (id serial PRIMARY KEY, text text NOT NULL)")
        connection.execute("INSERT INTO prompts (text) VALUES (%s), (%s)", ("a cat", "ÉTÉ à Paris"))
        rows = connection.execute("SELECT lower(text) FROM prompts ORDER BY id").fetchall()
    assert rows == [("a cat",), ("été à paris",)]


# --- NATS JetStream ---


@integration
async def test_jetstream_stores_a_message_once_per_msg_id(
    infrastructure: Infrastructure, unique_name: Callable[[str], str]
) -> None:
    stream = unique_name("DEVSTACK")
    subject = f"{unique_name('devstack')}.v1.video.created"
    connection = await nats.connect(infrastructure.nats_url, connect_timeout=5)
    try:
        jetstream = connection.jetstream(timeout=5)
        await jetstream.add_stream(name=stream, subjects=[subject])
        try:
            headers = {"Nats-Msg-Id": unique_name("msg")}
            first = await jetstream.publish(subject, b"payload", headers=headers)
            second = await jetstream.publish(subject, b"payload", headers=headers)
            info = await jetstream.stream_info(stream)
        finally:
            await jetstream.delete_stream(stream)
    finally:
        await connection.drain()
    assert not first.duplicate  # the server omits the flag, so nats-py reports None
    assert second.duplicate is True
    assert second.seq == first.seq
    assert info.state.messages == 1


# --- S3 ---


@integration
def test_object_round_trip(s3: Minio, s3_bucket: str) -> None:
    body = os.urandom(256 * 1024)
    s3.put_object(s3_bucket, "videos/v1.mp4", io.BytesIO(body), len(body), content_type="video/mp4")
    response = s3.get_object(s3_bucket, "videos/v1.mp4")
    try:
        assert response.read() == body
        assert response.headers["Content-Type"] == "video/mp4"
    finally:
        response.close()
        response.release_conn()


@integration
def test_presigned_get_is_honoured_and_cannot_be_tampered_with_or_reused_late(
    s3: Minio, s3_bucket: str
) -> None:
    s3.put_object(s3_bucket, "clip.mp4", io.BytesIO(b"frames"), 6)
    valid = s3.presigned_get_object(s3_bucket, "clip.mp4", expires=timedelta(minutes=5))
    # Signed an hour ago for one minute: already expired, with no waiting in the test.
    expired = s3.get_presigned_url(
        "GET",
        s3_bucket,
        "clip.mp4",
        expires=timedelta(minutes=1),
        request_date=datetime.now(UTC) - timedelta(hours=1),
    )
    # The classic tampering: stretch the lifetime of a URL one was given.
    tampered = _with_query_param(valid, "X-Amz-Expires", "604800")

    assert _fetch(valid) == (200, b"frames")
    tampered_status, tampered_body = _fetch(tampered)
    assert tampered_status == 403
    assert b"SignatureDoesNotMatch" in tampered_body
    expired_status, expired_body = _fetch(expired)
    assert expired_status == 403
    assert b"<Code>AccessDenied</Code>" in expired_body  # "Request has expired", on MinIO too


def _fetch(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _with_query_param(url: str, name: str, value: str) -> str:
    parts = urlsplit(url)
    query = [(key, value if key == name else old) for key, old in parse_qsl(parts.query)]
    assert name in dict(query), f"{name} not in {url}"
    return urlunsplit(parts._replace(query=urlencode(query)))


# --- Environment overrides and failures ---


def test_endpoints_from_environment_start_nothing(tmp_path: Path) -> None:
    given = Infrastructure(
        database_url="postgresql://app@db.example:5432/app",
        nats_url="nats://bus.example:4222",
        s3_endpoint="https://s3.example",
        s3_access_key="key",
        s3_secret_key="secret",
        s3_region="eu-west-3",
    )
    with local_infrastructure(tmp_path, environ=given.as_environ()) as infrastructure:
        assert infrastructure == given
        assert list(tmp_path.iterdir()) == []


def test_s3_endpoint_without_credentials_is_a_config_error(tmp_path: Path) -> None:
    environ = {"DATABASE_URL": "postgresql://db", "NATS_URL": "nats://bus", "S3_ENDPOINT": "http://s3"}
    with pytest.raises(ConfigError, match="S3_ACCESS_KEY"), local_infrastructure(tmp_path, environ=environ):
        pass


@integration
async def test_nats_url_from_environment_replaces_the_local_nats_server(
    infrastructure: Infrastructure, tmp_path: Path
) -> None:
    servers_before = _child_process_names()
    with local_infrastructure(tmp_path, environ={"NATS_URL": infrastructure.nats_url}) as second:
        servers_during = _child_process_names()
        connection = await nats.connect(second.nats_url, connect_timeout=5)
        await connection.drain()
        with psycopg.connect(second.database_url, connect_timeout=10) as database:
            assert database.execute("SELECT 1").fetchone() == (1,)

    assert second.nats_url == infrastructure.nats_url
    assert second.database_url != infrastructure.database_url
    assert servers_during["nats-server"] == servers_before["nats-server"]
    assert servers_during["postgres"] == servers_before["postgres"] + 1
    assert servers_during["weed"] == servers_before["weed"] + 1
    assert not (tmp_path / "nats.log").exists()
    assert _child_process_names() == servers_before


@integration
def test_a_server_that_cannot_start_reports_its_log(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken_port = squatter.getsockname()[1]
        with (
            pytest.raises(ServerStartError, match="address already in use"),
            run_nats(tmp_path, port=taken_port),
        ):
            pass


def _child_process_names() -> Counter[str]:
    """Names of this process's direct children, from /proc (Linux)."""
    names: Counter[str] = Counter()
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            stat = stat_file.read_text()
        except OSError:  # the process exited while we looked
            continue
        # Format: "pid (comm) state ppid ..."; comm may itself contain spaces or parentheses.
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        parent_pid = int(stat[stat.rindex(")") + 2 :].split()[1])
        if parent_pid == os.getpid():
            names[name] += 1
    return names


def test_an_unreachable_docker_engine_means_packages(monkeypatch):
    from devstack.containers import docker_engine_available

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{port}")
    assert docker_engine_available() is False
