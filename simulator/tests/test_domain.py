"""Pure rules: request validation, the status timeline, polling hints and list paging."""

from __future__ import annotations

import re

import pytest

from simulator.domain import (
    DEFAULT_LIST_LIMIT,
    MAX_PROMPT_CHARS,
    PRO_ONLY_SIZES,
    SECONDS_CHOICES,
    STANDARD_SIZES,
    FailedPrecondition,
    Failure,
    ImageReference,
    InvalidArgument,
    ListParams,
    Status,
    Timing,
    Video,
    VideoSpec,
    new_video_id,
    observe,
    paginate,
    parse_create_request,
    parse_list_params,
    parse_remix_request,
    poll_after_ms,
    progress_at,
    remix_spec,
    require_downloadable,
    sniff_image_format,
    uploaded_image,
)

TIMING = Timing(generation_seconds=10.0, asset_ttl_seconds=3600.0)
CREATED_AT = 1_700_000_000.0


def _video(**changes: object) -> Video:
    video = Video(id=new_video_id(), spec=VideoSpec(prompt="p"), created_at=CREATED_AT)
    for name, value in changes.items():
        setattr(video, name, value)
    return video


# --- create validation --------------------------------------------------------------------------


def test_defaults_follow_the_spec() -> None:
    spec = parse_create_request({"prompt": "a cat"})
    assert spec == VideoSpec(prompt="a cat", model="sora-2", seconds="4", size="720x1280")
    assert (spec.width, spec.height, spec.duration_seconds) == (720, 1280, 4)


@pytest.mark.parametrize("model", ["sora-2", "sora-2-2025-10-06", "sora-2-2025-12-08"])
@pytest.mark.parametrize("size", STANDARD_SIZES)
@pytest.mark.parametrize("seconds", SECONDS_CHOICES)
def test_every_standard_combination_is_accepted(model: str, size: str, seconds: str) -> None:
    spec = parse_create_request({"prompt": "x", "model": model, "size": size, "seconds": seconds})
    assert (spec.model, spec.size, spec.seconds) == (model, size, seconds)
    assert f"{spec.width}x{spec.height}" == size


@pytest.mark.parametrize("model", ["sora-2-pro", "sora-2-pro-2025-10-06"])
@pytest.mark.parametrize("size", PRO_ONLY_SIZES)
def test_1080p_sizes_need_a_pro_model(model: str, size: str) -> None:
    assert parse_create_request({"prompt": "x", "model": model, "size": size}).size == size
    with pytest.raises(InvalidArgument) as refused:
        parse_create_request({"prompt": "x", "model": "sora-2", "size": size})
    assert refused.value.param == "size"
    assert "sora-2-pro" in refused.value.message


@pytest.mark.parametrize(
    ("fields", "param", "code"),
    [
        ({}, "prompt", "missing_required_parameter"),
        ({"prompt": ""}, "prompt", "string_below_min_length"),
        ({"prompt": "x" * (MAX_PROMPT_CHARS + 1)}, "prompt", "string_above_max_length"),
        ({"prompt": 7}, "prompt", "invalid_type"),
        ({"prompt": "x", "model": "sora-3"}, "model", "invalid_value"),
        ({"prompt": "x", "seconds": "5"}, "seconds", "invalid_value"),
        ({"prompt": "x", "seconds": 4}, "seconds", "invalid_type"),
        ({"prompt": "x", "size": "640x480"}, "size", "invalid_value"),
        ({"prompt": "x", "size": "1280X720"}, "size", "invalid_value"),
        ({"prompt": "x", "quality": "high"}, "quality", "unknown_parameter"),
        ({"prompt": "x", "input_reference": "cat.png"}, "input_reference", "invalid_type"),
        ({"prompt": "x", "input_reference": {}}, "input_reference", "invalid_value"),
        (
            {"prompt": "x", "input_reference": {"image_url": "https://e.x/a.png", "file_id": "file-1"}},
            "input_reference",
            "invalid_value",
        ),
        (
            {"prompt": "x", "input_reference": {"image_url": "ftp://e.x/a.png"}},
            "input_reference.image_url",
            "invalid_value",
        ),
        (
            {"prompt": "x", "input_reference": {"url": "https://e.x"}},
            "input_reference.url",
            "unknown_parameter",
        ),
    ],
)
def test_invalid_create_requests_name_the_offending_field(
    fields: dict[str, object], param: str, code: str
) -> None:
    with pytest.raises(InvalidArgument) as refused:
        parse_create_request(fields)
    assert (refused.value.param, refused.value.code) == (param, code)
    assert refused.value.message


def test_prompt_at_the_length_limit_is_accepted() -> None:
    assert len(parse_create_request({"prompt": "y" * MAX_PROMPT_CHARS}).prompt) == MAX_PROMPT_CHARS


@pytest.mark.parametrize(
    "reference",
    [
        {"image_url": "https://example.com/cat.png"},
        {"image_url": "data:image/png;base64,AAAA"},
        {"file_id": "f-1"},
    ],
)
def test_reference_objects_with_exactly_one_source_are_accepted(reference: dict[str, str]) -> None:
    spec = parse_create_request({"prompt": "x", "input_reference": reference})
    assert spec.input_reference == ImageReference(**reference)


def test_uploaded_images_are_recognised_by_content_not_name() -> None:
    png = b"\x89PNG\r\n\x1a\n" + b"\0" * 20
    image = uploaded_image(png)
    assert (image.format, image.size_bytes) == ("png", len(png))
    assert sniff_image_format(b"\xff\xd8\xff\xe0rest") == "jpeg"
    assert sniff_image_format(b"RIFF\0\0\0\0WEBPVP8 ") == "webp"
    with pytest.raises(InvalidArgument) as refused:
        uploaded_image(b"GIF89a...")
    assert refused.value.param == "input_reference"


def test_remix_keeps_everything_but_the_prompt() -> None:
    source = parse_create_request(
        {"prompt": "old", "model": "sora-2-pro", "size": "1920x1080", "seconds": "8"}
    )
    remixed = remix_spec(source, parse_remix_request({"prompt": "new"}))
    assert (remixed.model, remixed.size, remixed.seconds, remixed.prompt) == (
        "sora-2-pro",
        "1920x1080",
        "8",
        "new",
    )
    with pytest.raises(InvalidArgument):
        parse_remix_request({"prompt": "new", "seconds": "4"})


def test_video_ids_are_unique_and_openai_shaped() -> None:
    ids = {new_video_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(re.fullmatch(r"video_[0-9a-f]{32}", video_id) for video_id in ids)


# --- lifecycle ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("elapsed", "expected"), [(-1.0, 0), (0.0, 0), (2.5, 25), (9.99, 99), (10.0, 99), (50.0, 99)]
)
def test_progress_follows_elapsed_time_and_never_claims_100(elapsed: float, expected: int) -> None:
    assert progress_at(elapsed, 10.0) == expected


def test_progress_never_goes_backwards() -> None:
    values = [progress_at(step / 10, 10.0) for step in range(0, 150)]
    assert values == sorted(values)


def test_status_timeline_of_a_successful_render() -> None:
    video = _video()
    assert observe(video, CREATED_AT, TIMING).status is Status.QUEUED
    halfway = observe(video, CREATED_AT + 5, TIMING)
    assert (halfway.status, halfway.progress) == (Status.IN_PROGRESS, 50)
    video.rendered_at = CREATED_AT + 3
    assert observe(video, CREATED_AT + 9, TIMING).status is Status.IN_PROGRESS
    done = observe(video, CREATED_AT + 10, TIMING)
    assert (done.status, done.progress, done.finished) == (Status.COMPLETED, 100, True)
    assert done.completed_at == CREATED_AT + 10
    assert done.expires_at == CREATED_AT + 10 + TIMING.asset_ttl_seconds


def test_a_slow_render_delays_completion_until_the_files_exist() -> None:
    video = _video()
    late = observe(video, CREATED_AT + 30, TIMING)
    assert (late.status, late.progress) == (Status.IN_PROGRESS, 99)
    video.rendered_at = CREATED_AT + 31
    done = observe(video, CREATED_AT + 32, TIMING)
    assert (done.status, done.completed_at) == (Status.COMPLETED, CREATED_AT + 31)


def test_a_render_failure_shows_at_once_with_its_error() -> None:
    failure = Failure("video_generation_failed", "ffmpeg exited with status 1", CREATED_AT + 4)
    video = _video(failure=failure)
    state = observe(video, CREATED_AT + 4, TIMING)
    assert (state.status, state.error, state.progress) == (Status.FAILED, failure, 40)
    assert state.completed_at is None and state.expires_at is None


def test_poll_hint_aims_at_the_due_time_within_bounds() -> None:
    video = _video()
    assert poll_after_ms(video, CREATED_AT, TIMING) == 1000
    assert poll_after_ms(video, CREATED_AT + 9.75, TIMING) == 250
    assert poll_after_ms(video, CREATED_AT + 60, TIMING) == 100


def test_content_is_downloadable_only_between_completion_and_expiry() -> None:
    video = _video()
    with pytest.raises(FailedPrecondition) as not_ready:
        require_downloadable(video, observe(video, CREATED_AT + 5, TIMING), CREATED_AT + 5)
    assert not_ready.value.code == "video_not_ready"
    video.rendered_at = CREATED_AT + 1
    done_at = CREATED_AT + 10
    require_downloadable(video, observe(video, done_at, TIMING), done_at)
    expired_at = done_at + TIMING.asset_ttl_seconds
    with pytest.raises(FailedPrecondition) as expired:
        require_downloadable(video, observe(video, expired_at, TIMING), expired_at)
    assert expired.value.code == "video_expired"


# --- listing ------------------------------------------------------------------------------------


def test_list_params_defaults_and_bounds() -> None:
    assert parse_list_params({}) == ListParams(after=None, limit=DEFAULT_LIST_LIMIT, order="desc")
    assert parse_list_params({"limit": "0", "order": "asc", "after": "video_1"}) == ListParams(
        "video_1", 0, "asc"
    )
    for query, param in [
        ({"limit": "101"}, "limit"),
        ({"limit": "-1"}, "limit"),
        ({"limit": "ten"}, "limit"),
    ]:
        with pytest.raises(InvalidArgument) as refused:
            parse_list_params(query)
        assert refused.value.param == param
    with pytest.raises(InvalidArgument):
        parse_list_params({"order": "newest"})


@pytest.mark.parametrize("order", ["asc", "desc"])
@pytest.mark.parametrize("limit", [1, 2, 3, 7])
def test_walking_pages_visits_every_video_once_in_order(order: str, limit: int) -> None:
    videos = [_video() for _ in range(7)]
    expected = [v.id for v in (videos if order == "asc" else reversed(videos))]
    seen: list[str] = []
    after = None
    while True:
        page = paginate(videos, ListParams(after=after, limit=limit, order=order))  # type: ignore[arg-type]
        seen += [v.id for v in page.videos]
        if not page.has_more:
            break
        after = page.videos[-1].id
    assert seen == expected


def test_limit_zero_reports_whether_anything_is_there() -> None:
    assert paginate([_video()], ListParams(limit=0)).has_more is True
    assert paginate([], ListParams(limit=0)).has_more is False


def test_unknown_cursor_is_rejected() -> None:
    with pytest.raises(InvalidArgument) as refused:
        paginate([_video()], ListParams(after="video_gone"))
    assert refused.value.param == "after"
