import pytest
from servicekit.errors import ServiceError

from services.jobs.domain.job_error import JobError
from services.jobs.domain.segments import (
    CLIP_SECONDS,
    LONGEST_CLIP_SECONDS,
    MAX_VIDEO_SECONDS,
    Segment,
    SegmentStatus,
    first_unfinished,
    overall_progress,
    plan,
    reset_for_retry,
    split_prompt,
    split_seconds,
    with_segment,
)


@pytest.mark.parametrize("total", range(24, MAX_VIDEO_SECONDS + 1, 4))
def test_split_seconds_uses_few_even_clips_that_the_api_accepts(total):
    lengths = split_seconds(total)
    assert sum(lengths) == total
    assert all(length in CLIP_SECONDS for length in lengths)
    assert len(lengths) == -(-total // LONGEST_CLIP_SECONDS)  # no more clips than needed
    assert max(lengths) - min(lengths) <= 4
    assert lengths == sorted(lengths, reverse=True)


def test_a_single_clip_video_has_no_segments():
    assert plan("a cat", 20) == ()
    assert plan("a cat", 4) == ()


def test_a_long_video_is_planned_from_its_prompt():
    prompt = "A fox wakes at dawn. It trots through the snow. It finds the river. It drinks and rests."
    segments = plan(prompt, 40)
    assert [segment.seconds for segment in segments] == [20, 20]
    assert [segment.index for segment in segments] == [0, 1]
    # Consecutive sentences, in order, nothing lost or repeated.
    assert " ".join(segment.prompt for segment in segments) == prompt
    assert all(segment.status is SegmentStatus.PENDING for segment in segments)


def test_a_prompt_with_fewer_sentences_than_clips_goes_whole_to_every_clip():
    assert (
        split_prompt("One long continuous tracking shot of a city at night", 3)
        == ["One long continuous tracking shot of a city at night"] * 3
    )


def test_split_prompt_never_leaves_a_clip_empty():
    sentences = ["A very long opening sentence that goes on and on for a while." * 3, "B.", "C."]
    parts = split_prompt(" ".join(sentences), 3)
    assert len(parts) == 3
    assert all(parts)
    assert parts[1:] == ["B.", "C."]


@pytest.mark.parametrize("seconds", [22, 124, 200])
def test_long_lengths_must_be_whole_clips_within_the_maximum(seconds):
    with pytest.raises(ServiceError) as caught:
        plan("a cat", seconds)
    assert caught.value.param == "seconds"


def test_client_segments_are_kept_as_sent():
    segments = plan("", 0, [("A cat sleeps", 4), ("The cat wakes", 8)])
    assert [(s.prompt, s.seconds) for s in segments] == [("A cat sleeps", 4), ("The cat wakes", 8)]


@pytest.mark.parametrize(
    ("requested", "param"),
    [
        ([("ok", 4), ("  ", 4)], "segments[1].prompt"),
        ([("ok", 5)], "segments[0].seconds"),
        ([("ok", 20)] * 7, "segments"),
        ([("ok", 4)] * 13, "segments"),
        ([("bad\x00", 4)], "segments[0].prompt"),
    ],
)
def test_bad_client_segments_are_refused_with_the_field_named(requested, param):
    with pytest.raises(ServiceError) as caught:
        plan("", 0, requested)
    assert caught.value.param == param


def test_overall_progress_weighs_clips_by_length():
    segments = (
        Segment(0, "a", 20, status=SegmentStatus.COMPLETED),
        Segment(1, "b", 4, status=SegmentStatus.IN_PROGRESS, progress=50),
        Segment(2, "c", 16),
    )
    assert overall_progress(segments) == (20 * 100 + 4 * 50) // 40


def test_a_retry_keeps_the_clips_it_can_and_counts_the_rest():
    error = JobError("provider_error", "boom")
    segments = (
        Segment(0, "a", 4, status=SegmentStatus.COMPLETED, progress=100, upstream_id="v0"),
        Segment(1, "b", 4, status=SegmentStatus.FAILED, error=error, upstream_id="v1"),
        Segment(2, "c", 4),
    )
    retried = reset_for_retry(segments, kept={0})
    assert retried[0] == segments[0]
    assert retried[1] == Segment(1, "b", 4, retry_count=1)
    assert retried[2] == Segment(2, "c", 4)  # never started: not a retry of it
    assert first_unfinished(retried) == 1


def test_segments_survive_their_json_form():
    segment = with_segment(
        (Segment(0, "a", 4),), 0, status=SegmentStatus.FAILED, error=JobError("x", "y"), retry_count=2
    )[0]
    assert Segment.from_json(segment.to_json()) == segment
