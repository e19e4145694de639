from __future__ import annotations

from pathlib import Path

import pytest

from services.renderer.domain.renditions import Rung, hls_command, ladder_command, parse_ladder, plan_ladder

LADDER = (1080, 720, 480)


def test_parse_ladder_sorts_dedupes_and_refuses_odd_or_empty() -> None:
    assert parse_ladder("480, 1080p,720,720") == (1080, 720, 480)
    for bad in ["", "720,abc", "721", "0"]:
        with pytest.raises(ValueError):
            parse_ladder(bad)


def test_landscape_source_remuxes_its_own_rung_and_skips_higher_ones() -> None:
    assert plan_ladder(1280, 720, LADDER, upscale=False) == [
        Rung("720p", 1280, 720, remux=True),
        Rung("480p", 854, 480, remux=False),
    ]
    assert plan_ladder(1280, 720, LADDER, upscale=True)[0] == Rung("1080p", 1920, 1080, remux=False)


def test_portrait_source_is_laddered_by_its_short_side() -> None:
    assert plan_ladder(720, 1280, LADDER, upscale=False) == [
        Rung("720p", 720, 1280, remux=True),
        Rung("480p", 480, 854, remux=False),
    ]


def test_small_source_off_the_ladder_gets_no_remux_and_nothing_above_it() -> None:
    assert plan_ladder(320, 240, LADDER, upscale=False) == []
    assert plan_ladder(1000, 600, LADDER, upscale=False) == [Rung("480p", 800, 480, remux=False)]


def test_one_process_decodes_once_splits_and_copies_the_matching_rung() -> None:
    rungs = plan_ladder(1280, 720, LADDER, upscale=True)
    args = ladder_command("ffmpeg", Path("in.mp4"), rungs, Path("out"), has_audio=True)
    assert args.count("-i") == 1
    graph = args[args.index("-filter_complex") + 1]
    assert graph.startswith("[0:v]split=2[s0][s1]")
    assert "scale=1920:1080" in graph and "scale=854:480" in graph
    assert args.count("+faststart") == 3
    copy_at = args.index("copy")
    assert args[copy_at - 5 : copy_at] == ["-map", "0:v:0", "-map", "0:a:0", "-c"]
    silent = ladder_command("ffmpeg", Path("in.mp4"), rungs, Path("out"), has_audio=False)
    assert "0:a:0" not in silent and "aac" not in silent


def test_hls_maps_one_variant_per_rung() -> None:
    rungs = plan_ladder(1280, 720, LADDER, upscale=False)
    args = hls_command("ffmpeg", Path("r"), rungs, Path("h"), has_audio=False)
    assert args[args.index("-var_stream_map") + 1] == "v:0,name:720p v:1,name:480p"
    assert args[args.index("-master_pl_name") + 1] == "master.m3u8"
