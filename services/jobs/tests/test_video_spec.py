import pytest
from servicekit.errors import ErrorKind, ServiceError

from services.jobs.domain.video_spec import MAX_PROMPT_CHARS, SIZES_BY_MODEL, validate_spec


def test_defaults_follow_the_openai_api():
    spec = validate_spec("", "a cat", 0, "")
    assert (spec.model, spec.seconds, spec.size) == ("sora-2", 4, "720x1280")
    assert (spec.width, spec.height) == (720, 1280)


@pytest.mark.parametrize("seconds", [4, 8, 12, 16, 20])
def test_every_documented_duration_is_accepted(seconds):
    assert validate_spec("sora-2", "a cat", seconds, "1280x720").seconds == seconds


@pytest.mark.parametrize(
    ("model", "prompt", "seconds", "size", "param"),
    [
        ("sora-3", "a cat", 4, "1280x720", "model"),
        ("sora-2", "", 4, "1280x720", "prompt"),
        ("sora-2", "   \n", 4, "1280x720", "prompt"),
        ("sora-2", "a cat\x00", 4, "1280x720", "prompt"),
        ("sora-2", "x" * (MAX_PROMPT_CHARS + 1), 4, "1280x720", "prompt"),
        ("sora-2", "a cat", 5, "1280x720", "seconds"),
        ("sora-2", "a cat", -4, "1280x720", "seconds"),
        ("sora-2", "a cat", 4, "640x480", "size"),
        ("sora-2", "a cat", 4, "1920x1080", "size"),  # 1080p is sora-2-pro only
        ("sora-2", "a cat", 4, "1792x1024", "size"),
    ],
)
def test_invalid_requests_name_the_field_at_fault(model, prompt, seconds, size, param):
    with pytest.raises(ServiceError) as raised:
        validate_spec(model, prompt, seconds, size)
    assert raised.value.kind is ErrorKind.INVALID_ARGUMENT
    assert raised.value.param == param
    assert raised.value.kind.http_status == 400


def test_pro_model_accepts_tall_wide_and_full_hd_sizes():
    for size in ("1024x1792", "1792x1024", "1080x1920", "1920x1080"):
        assert validate_spec("sora-2-pro", "a cat", 8, size).size == size


def test_dated_snapshots_behave_like_their_base_model():
    assert SIZES_BY_MODEL["sora-2-pro-2025-10-06"] == SIZES_BY_MODEL["sora-2-pro"]
    assert validate_spec("sora-2-2025-12-08", "a cat", 4, "720x1280").model == "sora-2-2025-12-08"


def test_prompt_at_the_limit_is_accepted():
    assert len(validate_spec("sora-2", "x" * MAX_PROMPT_CHARS, 4, "720x1280").prompt) == MAX_PROMPT_CHARS
