"""Chunk planning, playlist stitching and the chunk commands: the pure parts of issue #10's media core."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.core import mediaprobe
from services.core.chunking import TAIL_FRACTION, Chunk, plan_chunks
from services.core.stitch import (
    ChunkPlaylist,
    Segment,
    StitchError,
    master_playlist,
    media_playlist,
    parse_media_playlist,
    stitch,
)
from services.encoder import chunk_encode, ladder

# --- planning ---------------------------------------------------------------------------------


def test_a_twelve_minute_lecture_is_three_chunks() -> None:
    chunks = plan_chunks(720.0, 300, 6)
    assert [(c.index, c.start_s, c.end_s) for c in chunks] == [(0, 0, 300), (1, 300, 600), (2, 600, 720)]


def test_a_short_tail_joins_the_last_chunk_and_a_short_lecture_is_one_chunk() -> None:
    assert [(c.start_s, c.end_s) for c in plan_chunks(650.0, 300, 6)] == [(0, 300), (300, 650.0)]
    assert [(c.start_s, c.end_s) for c in plan_chunks(301.5, 300, 6)] == [(0, 301.5)]
    assert [(c.start_s, c.end_s) for c in plan_chunks(12.3, 300, 6)] == [(0, 12.3)]


def test_a_chunk_length_not_a_multiple_of_the_segment_is_rounded_down() -> None:
    assert [c.start_s for c in plan_chunks(100.0, 20, 6)] == [0, 18, 36, 54, 72, 90]
    assert [c.start_s for c in plan_chunks(20.0, 4, 6)] == [0, 6, 12, 18]  # at least one segment


def test_preroll_is_the_distance_back_to_the_source_keyframe() -> None:
    chunks = plan_chunks(720.0, 300, 6, keyframes_s=[0.0, 250.0, 300.0, 590.0, 700.0])
    assert [c.preroll_s for c in chunks] == [0.0, 0.0, 10.0]
    assert [c.preroll_s for c in plan_chunks(720.0, 300, 6)] == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("duration", [0.0, -1.0, math.nan, math.inf])
def test_a_lecture_without_a_duration_is_refused(duration: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        plan_chunks(duration)


@given(
    duration=st.floats(min_value=0.04, max_value=6 * 3600, allow_nan=False),
    chunk_s=st.integers(min_value=1, max_value=1800),
    segment_s=st.sampled_from([2, 4, 6, 10]),
)
def test_chunks_cover_the_lecture_exactly_on_segment_boundaries(
    duration: float, chunk_s: int, segment_s: int
) -> None:
    chunks = plan_chunks(duration, chunk_s, segment_s)
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert chunks[0].start_s == 0
    assert chunks[-1].end_s == duration
    step = max(1, chunk_s // segment_s) * segment_s
    for before, after in itertools.pairwise(chunks):
        assert before.end_s == after.start_s  # no gap, no overlap
        assert after.start_s % segment_s == 0
        assert before.duration_s == step  # only the last chunk differs
    assert all(c.duration_s > 0 for c in chunks)
    if len(chunks) > 1:
        assert step * TAIL_FRACTION <= chunks[-1].duration_s < step * (1 + TAIL_FRACTION) + 1e-9


# --- stitching ---------------------------------------------------------------------------------


def _chunk_text(index: int, durations: list[float], *, end: bool = True) -> str:
    lines = ["#EXTM3U", "#EXT-X-VERSION:6", "#EXT-X-TARGETDURATION:6", "#EXT-X-MEDIA-SEQUENCE:0"]
    lines += ["#EXT-X-PLAYLIST-TYPE:VOD", "#EXT-X-INDEPENDENT-SEGMENTS"]
    for n, duration in enumerate(durations):
        lines += [f"#EXTINF:{duration:.6f},", f"c{index:05d}_{n:05d}.ts"]
    if end:
        lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


def _lecture(durations: list[list[float]]) -> list[ChunkPlaylist]:
    parts, start = [], 0.0
    for index, own in enumerate(durations):
        end = start + sum(own)
        parts.append(ChunkPlaylist(Chunk(index, start, end), _chunk_text(index, own)))
        start = end
    return parts


def test_stitching_concatenates_the_chunks_in_order_without_a_discontinuity() -> None:
    parts = _lecture([[6.0] * 50, [6.0] * 50, [6.0] * 20])
    text = stitch(list(reversed(parts)))
    lines = text.splitlines()
    assert lines[:6] == [
        "#EXTM3U",
        "#EXT-X-VERSION:6",
        "#EXT-X-TARGETDURATION:6",
        "#EXT-X-MEDIA-SEQUENCE:0",
        "#EXT-X-PLAYLIST-TYPE:VOD",
        "#EXT-X-INDEPENDENT-SEGMENTS",
    ]
    assert lines[-1] == "#EXT-X-ENDLIST"
    assert "#EXT-X-DISCONTINUITY" not in text
    segments = parse_media_playlist(text)
    assert len(segments) == 120
    assert segments[49].uri == "c00000_00049.ts"
    assert segments[50].uri == "c00001_00000.ts"
    assert segments[-1].uri == "c00002_00019.ts"
    assert sum(s.duration_s for s in segments) == pytest.approx(720.0)


def test_the_target_duration_is_the_longest_segment_rounded_up() -> None:
    assert "#EXT-X-TARGETDURATION:7" in media_playlist([Segment("a.ts", 6.016), Segment("b.ts", 5.99)])
    assert "#EXT-X-TARGETDURATION:6" in media_playlist([Segment("a.ts", 6.0000001)])


def test_a_missing_or_repeated_chunk_is_refused() -> None:
    parts = _lecture([[6.0] * 5, [6.0] * 5, [6.0] * 2])
    with pytest.raises(StitchError, match=r"missing \[1\]"):
        stitch([parts[0], parts[2]])
    with pytest.raises(StitchError, match=r"repeated \[0\]"):
        stitch([parts[0], parts[0], parts[1]])
    with pytest.raises(StitchError, match="missing"):
        stitch(parts[1:])


def test_a_chunk_shorter_or_longer_than_planned_is_refused() -> None:
    parts = _lecture([[6.0] * 5, [6.0] * 5])
    short = ChunkPlaylist(parts[1].chunk, _chunk_text(1, [6.0] * 4))
    with pytest.raises(StitchError, match=r"chunk 1 lasts 24\.000 s, planned 30\.000 s"):
        stitch([parts[0], short])
    nearly = ChunkPlaylist(parts[1].chunk, _chunk_text(1, [6.0] * 4 + [5.9]))
    assert len(parse_media_playlist(stitch([parts[0], nearly]))) == 10  # within the tolerance


def test_chunks_that_do_not_meet_are_refused() -> None:
    first = ChunkPlaylist(Chunk(0, 0, 30), _chunk_text(0, [6.0] * 5))
    gap = ChunkPlaylist(Chunk(1, 36, 66), _chunk_text(1, [6.0] * 5))
    with pytest.raises(StitchError, match="does not start where chunk 0 ends"):
        stitch([first, gap])


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (_chunk_text(0, [6.0], end=False), "incomplete"),
        ("#EXTINF:6,\na.ts\n#EXT-X-ENDLIST\n", "no #EXTM3U"),
        ("#EXTM3U\n#EXT-X-DISCONTINUITY\n#EXTINF:6,\na.ts\n#EXT-X-ENDLIST\n", "EXT-X-DISCONTINUITY"),
        ('#EXTM3U\n#EXT-X-MAP:URI="init.mp4"\n#EXTINF:6,\na.ts\n#EXT-X-ENDLIST\n', "EXT-X-MAP"),
        ("#EXTM3U\na.ts\n#EXT-X-ENDLIST\n", "without #EXTINF"),
        ("#EXTM3U\n#EXTINF:abc,\na.ts\n#EXT-X-ENDLIST\n", "unreadable"),
        ("#EXTM3U\n#EXTINF:0,\na.ts\n#EXT-X-ENDLIST\n", "positive"),
        ("#EXTM3U\n#EXT-X-ENDLIST\n", "no segments"),
        ("#EXTM3U\n#EXTINF:6,\na.ts\n#EXT-X-ENDLIST\nb.ts\n", "after #EXT-X-ENDLIST"),
    ],
)
def test_a_chunk_playlist_stitching_cannot_carry_is_refused(text: str, reason: str) -> None:
    with pytest.raises(StitchError, match=reason):
        parse_media_playlist(text)


def test_two_chunks_naming_the_same_segment_are_refused() -> None:
    parts = _lecture([[6.0], [6.0]])
    clash = ChunkPlaylist(parts[1].chunk, parts[0].text)
    with pytest.raises(StitchError, match="same segment"):
        stitch([parts[0], clash])


# --- master ------------------------------------------------------------------------------------

_RUNGS = ladder.choose_ladder(ladder.Source(1280, 720, 720.0))
_LADDER = [ladder.as_reported(r) for r in _RUNGS]


def test_the_master_names_one_audio_rendition_for_every_video_variant() -> None:
    uris = [f"{v}/index.m3u8" for v in range(len(_LADDER))]
    text = master_playlist(_LADDER, uris, "audio/index.m3u8")
    media = [line for line in text.splitlines() if line.startswith("#EXT-X-MEDIA:")]
    assert media == [
        '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="audio",NAME="audio",DEFAULT=YES,AUTOSELECT=YES,'
        'CHANNELS="2",URI="audio/index.m3u8"'
    ]
    inf = [line for line in text.splitlines() if line.startswith("#EXT-X-STREAM-INF:")]
    assert len(inf) == len(_LADDER) == 4
    assert all(line.endswith(',AUDIO="audio"') for line in inf)
    variants = ladder.parse_master(text)  # the parser the rest of the encoder uses reads it
    assert [v.uri for v in variants] == uris
    assert [(v.width, v.height) for v in variants] == [(r.width, r.height) for r in _LADDER]
    assert [v.bandwidth for v in variants] == [r.bandwidth for r in _LADDER]
    assert [v.codecs for v in variants] == [ladder.codecs_string(r) for r in _RUNGS]


def test_a_silent_lecture_has_no_audio_group_and_an_audio_only_one_a_single_variant() -> None:
    silent = ladder.choose_ladder(ladder.Source(640, 360, 720.0, has_audio=False))
    text = master_playlist([ladder.as_reported(r) for r in silent], ["0/index.m3u8", "1/index.m3u8"], None)
    assert "EXT-X-MEDIA" not in text
    assert "AUDIO=" not in text
    assert all(v.codecs == "avc1.640028" for v in ladder.parse_master(text))
    audio_only = ladder.choose_ladder(ladder.Source(0, 0, 720.0, has_video=False))
    (variant,) = ladder.parse_master(
        master_playlist([ladder.as_reported(r) for r in audio_only], [], "audio/index.m3u8")
    )
    assert (variant.uri, variant.codecs) == ("audio/index.m3u8", "mp4a.40.2")
    with pytest.raises(ValueError, match="disagree"):
        master_playlist(_LADDER, [f"{v}/index.m3u8" for v in range(4)], None)
    with pytest.raises(ValueError, match="4 video renditions but 1"):
        master_playlist(_LADDER, ["0/index.m3u8"], "audio/index.m3u8")


# --- commands ----------------------------------------------------------------------------------


def _option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_a_chunk_command_seeks_accurately_and_offsets_its_output_to_its_start() -> None:
    chunk = Chunk(1, 300, 600)
    argv = chunk_encode.video_chunk_command(Path("/in/lecture.mp4"), Path("/out"), chunk, _RUNGS)
    source = argv.index("-i")
    # Input options (before -i): an accurate seek, and only the chunk's span is read.
    assert argv.index("-ss") < source
    assert argv.index("-t") < source
    assert (_option(argv, "-ss"), _option(argv, "-t")) == ("300", "300")
    assert _option(argv, "-i") == "file:/in/lecture.mp4"
    assert _option(argv, "-protocol_whitelist") == "file"
    assert _option(argv, "-output_ts_offset") == str(300 + chunk_encode.TIMELINE_OFFSET_S)
    assert "-an" in argv
    assert _option(argv, "-force_key_frames") == f"expr:gte(t,n_forced*{ladder.SEGMENT_S})"
    assert _option(argv, "-hls_segment_filename") == "/out/%v/c00001_%05d.ts"
    assert argv[-1] == "/out/%v/chunk_00001.m3u8"
    assert _option(argv, "-var_stream_map") == "v:0,name:0 v:1,name:1 v:2,name:2 v:3,name:3"
    assert [argv[i + 1] for i, a in enumerate(argv) if a == "-map"] == ["[v0]", "[v1]", "[v2]", "[v3]"]
    assert "scale=1280:720[v0]" in _option(argv, "-filter_complex")


def test_the_audio_command_encodes_the_whole_lecture_once_on_the_same_timeline() -> None:
    argv = chunk_encode.audio_command(Path("/in/lecture.mp4"), Path("/out"))
    assert "-ss" not in argv
    assert "-t" not in argv
    assert "-vn" in argv
    assert _option(argv, "-b:a") == str(ladder.AUDIO_BITRATE)
    assert _option(argv, "-output_ts_offset") == str(chunk_encode.TIMELINE_OFFSET_S)
    assert _option(argv, "-hls_time") == str(ladder.SEGMENT_S)
    assert argv[-1] == "/out/audio/chunk.m3u8"


def test_fractional_chunk_times_are_written_exactly() -> None:
    argv = chunk_encode.video_chunk_command(Path("/in/a.mp4"), Path("/out"), Chunk(2, 600, 720.04), _RUNGS)
    assert _option(argv, "-t") == "120.04"


def test_chunk_commands_stream_a_url_on_its_leash_and_take_the_thread_setting() -> None:
    url = "https://s3.example/b/staging/j/videos/0.mp4?X-Amz-Signature=abc"
    source = mediaprobe.remote_input(url, "lecture.mp4")
    video = chunk_encode.video_chunk_command(source, Path("/out"), Chunk(1, 300, 300), _RUNGS, threads=1)
    audio = chunk_encode.audio_command(source, Path("/out"), threads=1)
    for argv in (video, audio):
        at = argv.index("-i")
        assert argv[at + 1] == url
        assert argv[argv.index("-protocol_whitelist") + 1] == "https,tls,tcp"
        assert argv.index("-reconnect") < at
        # -threads 1 before -i (the decoder) and after it (the encoder); the filters' threads too.
        threads = [i for i, arg in enumerate(argv) if arg == "-threads"]
        assert len(threads) == 2
        assert threads[0] < at < threads[1]
        assert argv[argv.index("-filter_complex_threads") + 1] == "1"
    # The video chunk still seeks before -i (an accurate input seek, one ranged read from there).
    assert video.index("-ss") < video.index("-i")
    local = chunk_encode.audio_command(Path("/in/lecture.mp4"), Path("/out"))
    assert "-threads" not in local
    assert local[local.index("-protocol_whitelist") + 1] == "file"
