"""subject_token: any id becomes exactly one NATS subject token, one-to-one."""

from __future__ import annotations

import re

import nats
import pytest
from hypothesis import given
from hypothesis import strategies as st

from servicekit.bus import subject_token

_TOKEN = re.compile(r"(?:[A-Za-z0-9_-]|%[0-9A-F]{2})+")


def _decoded(token: str) -> str:
    """The inverse, written independently of the encoder: proves no two ids share a token."""
    raw = bytearray()
    index = 0
    while index < len(token):
        if token[index] == "%":
            raw.append(int(token[index + 1 : index + 3], 16))
            index += 3
        else:
            raw.append(ord(token[index]))
            index += 1
    return raw.decode()


def test_plain_ids_stay_as_they_are():
    assert subject_token("user_alice") == "user_alice"
    assert subject_token("video_0f3a-B") == "video_0f3a-B"


def test_dots_wildcards_spaces_and_the_escape_itself_are_escaped():
    assert subject_token("auth0|abc.def") == "auth0%7Cabc%2Edef"
    assert subject_token("a*b>c d") == "a%2Ab%3Ec%20d"
    assert subject_token("a%2Eb") == "a%252Eb"  # differs from subject_token("a.b") == "a%2Eb"
    assert subject_token("é") == "%C3%A9"


def test_an_empty_id_is_refused():
    with pytest.raises(ValueError):
        subject_token("")


@given(st.text(min_size=1))
def test_any_id_is_one_safe_token_and_can_be_told_apart_from_every_other(value: str):
    token = subject_token(value)
    assert _TOKEN.fullmatch(token)
    assert _decoded(token) == value


@pytest.mark.integration
async def test_a_real_server_takes_escaped_tokens_and_filters_each_owner_apart(infrastructure, unique_name):
    prefix = unique_name("tokens")
    dotted, plain = "tenant.eu|user 1", "tenant"

    def subject(owner: str, job: str) -> str:
        return f"{prefix}.{subject_token(owner)}.{subject_token(job)}"

    connection = await nats.connect(infrastructure.nats_url)
    try:
        dotted_sub = await connection.subscribe(f"{prefix}.{subject_token(dotted)}.*")
        plain_sub = await connection.subscribe(f"{prefix}.{subject_token(plain)}.*")
        await connection.publish(subject(dotted, "job.1"), b"dotted")
        await connection.publish(subject(plain, "job.1"), b"plain")
        await connection.flush()
        got = await dotted_sub.next_msg(timeout=5)
        assert (got.subject, got.data) == (f"{prefix}.tenant%2Eeu%7Cuser%201.job%2E1", b"dotted")
        # One publisher's order is kept: had "dotted" matched the plain owner's filter, it came first.
        assert (await plain_sub.next_msg(timeout=5)).data == b"plain"
    finally:
        await connection.close()
