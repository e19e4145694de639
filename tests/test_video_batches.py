"""Video batches through the gateway on the in-process stack: per-item refusals, idempotent replays,
the aggregate status settling, paging, and tenant isolation."""

from __future__ import annotations

import uuid
from typing import Any

import aiohttp
import pytest

from tests.helpers import balance, eventually, new_user

pytestmark = pytest.mark.e2e

CHEAP = {"model": "sora-2", "seconds": "4"}  # 40 credits
# A refusal that costs nothing and makes no video: seconds must be a multiple of 4.
INVALID = {"prompt": "A fox in the snow", "seconds": "7"}


async def _call(stack, user: str, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {stack.key(user)}", **kwargs.pop("headers", {})}
    async with aiohttp.ClientSession() as http:
        async with http.request(method, f"{stack.gateway_url}{path}", headers=headers, **kwargs) as response:
            return response.status, await response.json()


async def _settled(stack, user: str, batch_id: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        status, batch = await _call(stack, user, "GET", f"/v1/video_batches/{batch_id}")
        assert status == 200, batch
        return batch if batch["status"] != "in_progress" else None

    return await eventually(check, deadline_seconds=90, interval=0.5)


async def test_a_batch_makes_each_video_and_refuses_bad_or_unfunded_items_on_their_own(stack):
    user = await new_user(stack, "batch", credits=200)
    requests = [
        {**CHEAP, "prompt": "A lighthouse at dusk"},
        INVALID,
        # 20 s of 1080p sora-2-pro is 1,400 credits: more than the account has, whatever the order.
        {"model": "sora-2-pro", "prompt": "A storm at sea", "seconds": "20", "size": "1920x1080"},
        {**CHEAP, "prompt": "A kite over a beach"},
        "not a create body",
    ]
    status, batch = await _call(stack, user, "POST", "/v1/video_batches", json={"requests": requests})
    assert status == 200, batch
    assert batch["object"] == "video_batch" and batch["id"].startswith("batch_")
    items = batch["data"]
    assert [item["index"] for item in items] == [0, 1, 2, 3, 4]
    assert items[1]["video"] is None and items[1]["error"]["param"] == "seconds"
    assert items[1]["error"]["type"] == "invalid_request_error"
    assert items[2]["video"] is None and items[2]["error"]["code"] == "insufficient_quota"
    assert items[2]["error"]["needed"] == 1_400 and items[2]["error"]["available"] <= 200
    assert items[4]["video"] is None and items[4]["error"]["type"] == "invalid_request_error"
    made = [items[0]["video"], items[3]["video"]]
    assert all(
        video["status"] in ("queued", "in_progress") and item_error is None
        for video, item_error in zip(made, (items[0]["error"], items[3]["error"]), strict=True)
    )
    assert [video["prompt"] for video in made] == ["A lighthouse at dusk", "A kite over a beach"]
    assert batch["counts"]["total"] == 5 and batch["counts"]["rejected"] == 3
    assert batch["status"] == "in_progress"

    settled = await _settled(stack, user, batch["id"])
    assert settled["status"] == "partially_failed"
    assert settled["counts"] == {
        "total": 5,
        "queued": 0,
        "in_progress": 0,
        "completed": 2,
        "failed": 0,
        "rejected": 3,
        "deleted": 0,
    }
    for index in (0, 3):
        video = settled["data"][index]["video"]
        status, own = await _call(stack, user, "GET", f"/v1/videos/{video['id']}")
        assert status == 200 and own == video and video["status"] == "completed"
    assert await balance(stack.billing_address, user) == (200 - 2 * 40, 0)


async def test_a_batch_whose_videos_all_complete_is_completed(stack):
    user = await new_user(stack, "batchok", credits=100)
    requests = [{**CHEAP, "prompt": "A paper boat"}, {**CHEAP, "prompt": "A red balloon"}]
    status, batch = await _call(stack, user, "POST", "/v1/video_batches", json={"requests": requests})
    assert status == 200 and batch["counts"]["rejected"] == 0
    settled = await _settled(stack, user, batch["id"])
    assert settled["status"] == "completed"
    assert settled["counts"]["completed"] == 2
    assert [item["error"] for item in settled["data"]] == [None, None]


async def test_a_batch_where_every_item_is_refused_has_failed_at_once(stack):
    user = await new_user(stack, "batchbad", credits=0)
    # A webhook_url needs the owner's webhook secret first, in a batch as on its own.
    with_webhook = {"prompt": "A comet", "webhook_url": "http://127.0.0.1:9/hook"}
    status, batch = await _call(
        stack, user, "POST", "/v1/video_batches", json={"requests": [INVALID, with_webhook]}
    )
    assert status == 200
    assert batch["status"] == "failed" and batch["counts"]["rejected"] == 2
    assert batch["data"][1]["error"]["code"] == "webhook_secret_required"


async def test_repeating_a_batch_with_its_idempotency_key_makes_no_video_twice(stack):
    user = await new_user(stack, "batchkey", credits=200)
    key = f"batch-{uuid.uuid4()}"
    body = {"requests": [{**CHEAP, "prompt": "A windmill"}, INVALID, {**CHEAP, "prompt": "A tram at night"}]}
    headers = {"Idempotency-Key": key}
    status, first = await _call(stack, user, "POST", "/v1/video_batches", json=body, headers=headers)
    assert status == 200, first
    status, again = await _call(stack, user, "POST", "/v1/video_batches", json=body, headers=headers)
    assert status == 200, again
    assert again["id"] == first["id"]
    ids = [item["video"] and item["video"]["id"] for item in first["data"]]
    assert [item["video"] and item["video"]["id"] for item in again["data"]] == ids
    assert again["data"][1]["error"] == first["data"][1]["error"]

    status, listing = await _call(stack, user, "GET", "/v1/videos")
    assert sorted(video["id"] for video in listing["data"]) == sorted(
        video_id for video_id in ids if video_id
    )
    available, held = await balance(stack.billing_address, user)
    assert available + held == 200 and available == 200 - 2 * 40  # held or charged once per video

    other = {"requests": [{**CHEAP, "prompt": "Something else"}]}
    status, refused = await _call(stack, user, "POST", "/v1/video_batches", json=other, headers=headers)
    assert status == 409 and refused["error"]["code"] == "idempotency_key_reused"
    status, fresh = await _call(stack, user, "POST", "/v1/video_batches", json={"requests": [INVALID]})
    assert status == 200 and fresh["id"] != first["id"]


async def test_batches_are_listed_newest_first_with_a_cursor(stack):
    user = await new_user(stack, "batchlist", credits=0)
    made = []
    for _ in range(3):
        status, batch = await _call(stack, user, "POST", "/v1/video_batches", json={"requests": [INVALID]})
        assert status == 200
        made.append(batch["id"])
    status, page = await _call(stack, user, "GET", "/v1/video_batches?limit=2")
    assert status == 200 and page["object"] == "list" and page["has_more"] is True
    assert [batch["id"] for batch in page["data"]] == made[::-1][:2]
    assert page["data"][0] == {
        "id": made[2],
        "object": "video_batch",
        "created_at": page["data"][0]["created_at"],
        "total": 1,
    }
    status, rest = await _call(stack, user, "GET", f"/v1/video_batches?limit=2&after={page['last_id']}")
    assert status == 200 and [batch["id"] for batch in rest["data"]] == [made[0]]
    assert rest["has_more"] is False


async def test_another_users_batch_answers_404_and_is_not_listed(stack):
    owner = await new_user(stack, "batchowner", credits=0)
    other = await new_user(stack, "batchother", credits=0)
    status, batch = await _call(stack, owner, "POST", "/v1/video_batches", json={"requests": [INVALID]})
    assert status == 200
    status, body = await _call(stack, other, "GET", f"/v1/video_batches/{batch['id']}")
    assert status == 404 and body["error"]["code"] == "video_batch_not_found"
    status, listing = await _call(stack, other, "GET", "/v1/video_batches")
    assert status == 200 and batch["id"] not in [item["id"] for item in listing["data"]]
    status, body = await _call(stack, owner, "GET", "/v1/video_batches/batch_nothex")
    assert status == 404


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "requests"),
        ({"requests": []}, "requests"),
        ({"requests": "a cat"}, "requests"),
        ({"requests": [INVALID] * 101}, "requests"),
        ({"requests": [INVALID], "extra": True}, "extra"),
    ],
)
async def test_a_malformed_batch_is_a_400_naming_the_field(stack, body, param):
    status, answer = await _call(stack, "user_broke", "POST", "/v1/video_batches", json=body)
    assert status == 400 and answer["error"]["param"] == param
    assert set(answer["error"]) >= {"message", "type", "param", "code"}


async def test_a_batch_body_that_is_not_json_is_a_400(stack):
    status, answer = await _call(stack, "user_broke", "POST", "/v1/video_batches", data=b"{nope")
    assert status == 400 and answer["error"]["type"] == "invalid_request_error"
