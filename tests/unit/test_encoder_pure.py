"""The encoder's pure parts: ladder choice, progress parsing, claim decisions, error classification."""

from __future__ import annotations

import struct
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import psycopg
import pytest
from botocore.exceptions import ClientError, ConnectTimeoutError, EndpointConnectionError, ReadTimeoutError
from confluent_kafka import KafkaError, KafkaException

from services.core import mediaprobe
from services.core.bus import DeliveryFailedError
from services.core.jobs import JobStatus
from services.core.object_headers import cache_control, content_type
from services.encoder.attempt import retry_delay
from services.encoder.claims import Claim, JobView, Verdict, decide
from services.encoder.errors import (
    PermanentError,
    SourceReadError,
    TimeLimitError,
    TransientError,
    classify,
    ffmpeg_killed,
    for_people,
    unreadable_media,
    without_paths,
)
from services.encoder.ladder import Source, choose_ladder, hls_command, parse_master
from services.encoder.probe import check_limits, describe
from services.encoder.progress import ProgressParser, Step, overall_percent
from services.encoder.thumbnails import frame_images_command, frame_offset, normalise_command

# --- ladder ------------------------------------------------------------------------------------


def test_a_1080p_source_gets_the_whole_ladder_best_first() -> None:
    ladder = choose_ladder(Source(1920, 1080, 60))
    assert [(r.name, r.width, r.height) for r in ladder] == [
        ("1080p", 1920, 1080),
        ("720p", 1280, 720),
        ("480p", 854, 480),
        ("360p", 640, 360),
        ("240p", 426, 240),
    ]
    assert [r.video_bitrate for r in ladder] == sorted((r.video_bitrate for r in ladder), reverse=True)


def test_a_720p_source_is_never_upscaled() -> None:
    assert max(r.height for r in choose_ladder(Source(1280, 720, 60))) == 720


def test_a_portrait_source_keeps_its_orientation() -> None:
    ladder = choose_ladder(Source(1080, 1920, 60))
    assert (ladder[0].width, ladder[0].height) == (1080, 1920)
    assert all(r.height > r.width for r in ladder)


def test_a_source_below_the_lowest_rung_keeps_its_own_size_rounded_down_to_even() -> None:
    (only,) = choose_ladder(Source(321, 181, 10))
    assert (only.width, only.height) == (320, 180)


def test_an_audio_only_source_gets_one_audio_rendition() -> None:
    (only,) = choose_ladder(Source(0, 0, 10, has_video=False))
    assert (only.width, only.height, only.audio_bitrate) == (0, 0, 128_000)


def test_the_hls_command_decodes_once_and_maps_every_rendition() -> None:
    ladder = choose_ladder(Source(1280, 720, 60))
    argv = hls_command(Path("/in.mp4"), Path("/out"), ladder, preset="ultrafast")
    assert argv.count("-i") == 1
    graph = argv[argv.index("-filter_complex") + 1]
    assert f"split={len(ladder)}" in graph
    assert f"asplit={len(ladder)}" in graph
    var_map = argv[argv.index("-var_stream_map") + 1]
    assert var_map.split() == [f"v:{i},a:{i},name:{i}" for i in range(len(ladder))]
    assert argv[argv.index("-hls_time") + 1] == "6"
    assert argv[argv.index("-force_key_frames") + 1] == "expr:gte(t,n_forced*6)"
    assert argv[argv.index("-master_pl_name") + 1] == "master.m3u8"
    assert "-re" not in argv
    assert "-re" in hls_command(Path("/in.mp4"), Path("/out"), ladder, realtime_input=True)


def test_the_master_playlist_is_parsed_into_variants() -> None:
    text = (
        "#EXTM3U\n#EXT-X-VERSION:6\n"
        '#EXT-X-STREAM-INF:BANDWIDTH=1020800,RESOLUTION=640x360,CODECS="avc1.64001e,mp4a.40.2"\n0/index.m3u8\n\n'
        '#EXT-X-STREAM-INF:BANDWIDTH=580800,RESOLUTION=426x240,CODECS="avc1.640015,mp4a.40.2"\n1/index.m3u8\n'
    )
    variants = parse_master(text)
    assert [(v.uri, v.bandwidth, v.width, v.height) for v in variants] == [
        ("0/index.m3u8", 1020800, 640, 360), ("1/index.m3u8", 580800, 426, 240),
    ]  # fmt: skip
    assert variants[0].codecs == "avc1.64001e,mp4a.40.2"


# --- progress ----------------------------------------------------------------------------------


def test_progress_blocks_become_fractions_of_the_duration() -> None:
    parser = ProgressParser(duration_s=10)
    assert parser.feed("frame=10") is None
    assert parser.feed("out_time_us=N/A") is None
    assert parser.feed("progress=continue") == 0.0
    parser.feed("out_time_us=2500000")
    assert parser.feed("progress=continue") == 0.25
    parser.feed("out_time_ms=99000000")
    assert parser.feed("progress=continue") == 1.0
    assert parser.feed("progress=end") == 1.0
    assert parser.ended


def test_overall_percent_moves_through_steps_and_videos() -> None:
    assert overall_percent(0, 1, Step.PROBING, 0) == 0
    assert overall_percent(0, 1, Step.TRANSCODING, 1) == 85
    assert overall_percent(0, 2, Step.UPLOADING, 1) == 50
    assert overall_percent(1, 2, Step.UPLOADING, 1) == 100


# --- claims ------------------------------------------------------------------------------------


def _claim(
    attempt: int,
    state: str = "running",
    *,
    expired: bool = False,
    started: bool = True,
    origin: int | None = None,
) -> Claim:
    return Claim(
        uuid4(), attempt, origin or attempt, "encoder@b:1", state, started, None, datetime.now(UTC), expired
    )


def test_an_unclaimed_attempt_runs() -> None:
    assert decide(1, None, JobView(JobStatus.QUEUED, 1), 3).verdict is Verdict.RUN
    assert decide(1, None, None, 3).verdict is Verdict.RUN  # the projector may not have seen it yet


@pytest.mark.parametrize("status", [JobStatus.COMPLETED, JobStatus.CANCELED, JobStatus.FAILED])
def test_a_redelivered_command_of_an_ended_job_is_skipped(status: JobStatus) -> None:
    decision = decide(1, _claim(1, "done"), JobView(status, 1), 3)
    assert decision.verdict is Verdict.SKIP
    assert str(status) in decision.reason


def test_a_redelivered_command_of_a_finished_attempt_is_skipped_even_before_the_projector_knows() -> None:
    assert decide(1, _claim(1, "done"), JobView(JobStatus.PROCESSING, 1), 3).verdict is Verdict.SKIP


def test_a_command_of_a_stale_attempt_is_skipped() -> None:
    assert decide(1, _claim(2), JobView(JobStatus.PROCESSING, 2), 3).verdict is Verdict.SKIP
    assert decide(1, _claim(2, origin=2), None, 3).verdict is Verdict.SKIP


def test_a_command_whose_attempt_runs_on_a_live_worker_waits() -> None:
    assert decide(1, _claim(1), JobView(JobStatus.PROCESSING, 1), 3).verdict is Verdict.WAIT


def test_a_dead_workers_started_attempt_is_stalled_and_the_next_attempt_is_commanded() -> None:
    decision = decide(1, _claim(1, expired=True), JobView(JobStatus.PROCESSING, 1), 3)
    assert (decision.verdict, decision.attempt, decision.stalled_attempt) == (Verdict.TAKE_OVER, 1, 1)
    assert decision.next_attempt == 2


def test_a_dead_worker_on_the_last_attempt_fails_the_job_as_stalled() -> None:
    decision = decide(3, _claim(3, expired=True), JobView(JobStatus.PROCESSING, 3), 3)
    assert (decision.verdict, decision.stalled_attempt) == (Verdict.FAIL_STALLED, 3)


def test_a_dead_worker_that_never_started_is_simply_run_again() -> None:
    decision = decide(1, _claim(1, expired=True, started=False), JobView(JobStatus.QUEUED, 1), 3)
    assert (decision.verdict, decision.attempt, decision.stalled_attempt) == (Verdict.RUN, 1, None)


def test_a_retry_command_runs_after_the_previous_attempt_scheduled_it() -> None:
    assert decide(2, _claim(1, "done"), JobView(JobStatus.QUEUED, 2), 3).verdict is Verdict.RUN


# --- errors and limits -------------------------------------------------------------------------


def _client_error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "GetObject")  # type: ignore[typeddict-item]


def test_a_missing_object_is_permanent_and_says_what_is_missing() -> None:
    error = classify(_client_error("NoSuchKey", 404), "'lecture.mp4'")
    assert isinstance(error, PermanentError)
    assert error.error_type == "NoSuchKey"
    assert "'lecture.mp4' could not be found" in error.message


@pytest.mark.parametrize(("code", "status"), [("SlowDown", 503), ("InternalError", 500), ("Whatever", 502)])
def test_storage_5xx_and_throttling_are_transient(code: str, status: int) -> None:
    assert isinstance(classify(_client_error(code, status)), TransientError)


def test_a_connection_error_is_transient_and_an_unknown_bug_is_not() -> None:
    assert classify(EndpointConnectionError(endpoint_url="http://s3")).retryable
    assert not classify(ValueError("boom")).retryable


def test_a_timeout_keeps_its_type() -> None:
    error = TimeLimitError("too long")
    assert classify(error) is error
    assert error.error_type == "timeout"


def test_retry_delay_doubles_caps_and_jitters() -> None:
    assert [retry_delay(a, 10, 600, 0) for a in (1, 2, 3)] == [10, 20, 40]
    assert retry_delay(10, 10, 600, 0) == 600
    assert retry_delay(1, 10, 600, 1) == 15


def test_probe_results_become_a_source_or_a_readable_refusal() -> None:
    info = {
        "format": {"duration": "12.5"},
        "streams": [
            {"codec_type": "video", "codec_name": "h264", "width": 1920, "height": 1080,
             "avg_frame_rate": "30/1", "side_data_list": [{"rotation": -90}]},
            {"codec_type": "audio", "codec_name": "aac"},
        ],
    }  # fmt: skip
    assert describe(info, "a.mp4") == Source(1080, 1920, 12.5, True, True, 30.0)
    with pytest.raises(PermanentError, match="no video or audio"):
        describe({"format": {"duration": "1"}, "streams": []}, "a.mp4")
    with pytest.raises(PermanentError, match="cannot convert") as caught:
        describe(
            {"format": {"duration": "1"}, "streams": [{"codec_type": "video", "codec_name": "cinepak"}]},
            "a.avi",
        )
    assert caught.value.error_type == "unsupported_codec"


def test_inputs_over_limits_are_refused_with_the_limit_in_the_message() -> None:
    with pytest.raises(PermanentError, match="limit is 60 minutes"):
        check_limits(Source(1280, 720, 7200), "long.mp4", 3600, 4096, 2160)
    with pytest.raises(PermanentError, match="7680x4320"):
        check_limits(Source(7680, 4320, 60), "8k.mp4", 3600, 4096, 2160)
    check_limits(Source(2160, 3840, 60), "portrait-4k.mp4", 3600, 4096, 2160)


def test_outputs_get_the_content_type_and_cache_control_players_expect() -> None:
    assert content_type(Path("master.m3u8")) == "application/vnd.apple.mpegurl"
    assert content_type(Path("seg_00001.ts")) == "video/mp2t"
    assert content_type(Path("poster.webp")) == "image/webp"
    assert "immutable" in cache_control(Path("seg.ts"))
    assert "immutable" not in cache_control(Path("a.m3u8"))


def test_the_representative_frame_is_looked_for_past_the_intro() -> None:
    assert frame_offset(1) == 0
    assert frame_offset(60) == 6
    assert frame_offset(3600) == 30


# --- ffmpeg is given only what it should read ----------------------------------------------------


def _input_flags(argv: list[str], name: str) -> dict[str, str]:
    """The `-flag value` options given to the input `name` (between the previous input and its -i)."""
    at = argv.index(mediaprobe.local_input(Path(name))) - 1
    assert argv[at] == "-i"
    first = max((i + 2 for i in range(at) if argv[i] == "-i"), default=0)
    return {arg: argv[i + 1] for i, arg in enumerate(argv[first:at], first) if arg.startswith("-")}


def test_every_ffmpeg_input_is_limited_to_accepted_demuxers_and_local_files() -> None:
    source = Source(1280, 720, 30.0)
    video_demuxers = ",".join(mediaprobe.VIDEO_DEMUXERS)
    image_demuxers = ",".join(mediaprobe.IMAGE_DEMUXERS)
    ladder_argv = hls_command(Path("/w/source.mp4"), Path("/w/out"), choose_ladder(source))
    frames_argv = frame_images_command(Path("/w/source.mp4"), source, Path("/w/t.webp"), Path("/w/p.webp"))
    image_argv = normalise_command(Path("/w/uploaded.png"), Path("/w/t.webp"), max_pixels=1_000_000)
    for argv, name, demuxers in (
        (ladder_argv, "/w/source.mp4", video_demuxers),
        (frames_argv, "/w/source.mp4", video_demuxers),
        (image_argv, "/w/uploaded.png", image_demuxers),
    ):
        flags = _input_flags(argv, name)
        assert flags["-format_whitelist"] == demuxers
        assert flags["-protocol_whitelist"] == "file"
    assert _input_flags(image_argv, "/w/uploaded.png")["-max_pixels"] == "1000000"
    for demuxer in ("hls", "dash", "concat", "webm_dash_manifest", "lavfi", "image2"):
        assert demuxer not in video_demuxers.split(",")


def test_the_probe_is_bounded_and_reads_only_a_local_file_through_accepted_demuxers() -> None:
    argv = mediaprobe.probe_argv(Path("/w/upload.mp4"), mediaprobe.VIDEO_DEMUXERS)
    flags = dict(zip(argv[4:14:2], argv[5:14:2], strict=True))
    assert flags == {
        "-format_whitelist": "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi,mpegts,mpeg,flv",
        "-protocol_whitelist": "file",
        "-probesize": str(mediaprobe.PROBE_SIZE_BYTES),
        "-analyzeduration": str(mediaprobe.ANALYZE_DURATION_US),
        "-show_streams": "-show_format",
    }
    assert argv[-1] == "file:/w/upload.mp4"
    assert "-timeout" not in argv  # the timeout is the subprocess's, not an ffprobe flag


def test_a_refusal_names_the_refused_format_and_never_a_local_path() -> None:
    path = Path("/tmp/coursecast-x/0/source.mp4")
    whitelisted = (
        "[dash @ 0x55d] Format not on whitelist 'mov,mp4'\nfile:/tmp/coursecast-x/0/source.mp4: Invalid"
    )
    assert mediaprobe.refusal_reason(whitelisted, path) == (
        "its content is in the dash format, which we do not accept"
    )
    damaged = "[mov,mp4 @ 0x55f] moov atom not found\nfile:/tmp/coursecast-x/0/source.mp4: Invalid data"
    assert mediaprobe.refusal_reason(damaged, path) == "moov atom not found"
    text = "file:/tmp/coursecast-x/0/source.mp4: Invalid data found when processing input"
    assert mediaprobe.refusal_reason(text, path) == "Invalid data found when processing input"
    assert mediaprobe.refusal_reason("", path) == ""


# A presigned URL as S3 (here moto on loopback) gives it: the query string is the credential.
PRESIGNED = (
    "http://127.0.0.1:9000/coursecast/staging/j/videos/0.mp4?AWSAccessKeyId=k&Signature=s%2B&Expires=9"
)


def test_a_streamed_source_may_use_only_the_protocols_its_own_url_needs() -> None:
    assert mediaprobe.remote_input(PRESIGNED, "a.mp4").protocols == "http,tcp"
    secure = PRESIGNED.replace("http://", "https://")
    assert mediaprobe.remote_input(secure, "a.mp4").protocols == "https,tls,tcp"
    for refused in ("file:/etc/passwd", "ftp://h/a.mp4", "/tmp/a.mp4", "concat:a|b"):
        with pytest.raises(ValueError, match="http or https"):
            mediaprobe.remote_input(refused, "a.mp4")
    source = mediaprobe.remote_input(PRESIGNED, "a.mp4")
    ladder_argv = hls_command(source, Path("/w/out"), choose_ladder(Source(1280, 720, 30.0)))
    frames_argv = frame_images_command(source, Source(1280, 720, 30.0), Path("/w/t.webp"), Path("/w/p.webp"))
    probe_argv = mediaprobe.probe_argv(source, mediaprobe.VIDEO_DEMUXERS)
    for argv in (ladder_argv, frames_argv, probe_argv):
        at = argv.index(PRESIGNED)
        flags = {arg: argv[i + 1] for i, arg in enumerate(argv[:at]) if arg.startswith("-") and i + 1 < at}
        assert flags["-protocol_whitelist"] == "http,tcp"
        assert flags["-format_whitelist"] == ",".join(mediaprobe.VIDEO_DEMUXERS)
        # Ranged reads that resume after a dropped connection or a 5xx, and a stalled read times out.
        assert (flags["-reconnect"], flags["-reconnect_on_http_error"]) == ("1", "5xx")
        assert int(flags["-rw_timeout"]) > 0
    assert probe_argv[-1] == PRESIGNED


def test_a_read_broken_off_in_transport_is_told_from_a_damaged_file_and_never_shows_the_url() -> None:
    source = mediaprobe.remote_input(PRESIGNED, "a.mp4")
    cut_short = [
        "[mov,mp4,m4a,3gp,3g2,mj2 @ 0x55] stream 1, offset 0x35b4c0: partial file",
        f"{PRESIGNED}: Input/output error",
    ]
    # ffmpeg exits 0 after that: the read failure is what says the output is short.
    assert mediaprobe.read_failure(cut_short, source, failed=False) == "Input/output error"
    gone = [f"{PRESIGNED}: Server returned 404 Not Found"]
    assert mediaprobe.read_failure(gone, source, failed=True) == "Server returned 404 Not Found"
    # A read that failed as "invalid data" while the protocol complained: the transport's failure.
    refused_reconnect = [
        "[http @ 0x55] HTTP error 503 Service Unavailable",
        f"{PRESIGNED}: Invalid data found when processing input",
    ]
    assert mediaprobe.read_failure(refused_reconnect, source, failed=True) == (
        "HTTP error 503 Service Unavailable"
    )
    # A reconnect that helped, then a clean end: no failure. A damaged file on a healthy connection
    # is the file's (invalid media), and a local file never has a transport failure.
    recovered = ["[http @ 0x55] Will reconnect at 4096 in 0 second(s), error=Input/output error."]
    assert mediaprobe.read_failure(recovered, source, failed=False) is None
    damaged = [f"{PRESIGNED}: Invalid data found when processing input"]
    assert mediaprobe.read_failure(damaged, source, failed=True) is None
    local = mediaprobe.media_input(Path("/w/a.mp4"))
    assert mediaprobe.read_failure(["file:/w/a.mp4: Input/output error"], local, failed=True) is None
    # Messages name the file, never the presigned URL.
    assert mediaprobe.refusal_reason(f"{PRESIGNED}: Invalid data found", source) == "Invalid data found"
    assert source.hide(f"opening {PRESIGNED} failed") == "opening a.mp4 failed"
    error = SourceReadError("video 'a.mp4'", "Server returned 5XX Server Error reply")
    assert error.retryable
    assert error.error_type == "storage_unavailable"
    assert "'a.mp4'" in error.message


def _png_head(width: int, height: int) -> bytes:
    return (
        b"\x89PNG\r\n\x1a\n"
        + b"\x00\x00\x00\rIHDR"
        + struct.pack(">II", width, height)
        + b"\x08\x02\x00\x00\x00"
    )


def test_image_sizes_are_read_from_png_jpeg_and_webp_headers_without_decoding() -> None:
    assert mediaprobe.image_dimensions(_png_head(16_000, 16_000)) == (16_000, 16_000)
    # JPEG: SOI, an APP0 segment, then a baseline SOF0 with height 480 and width 640.
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00" + bytes(9)
    sof0 = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, 480, 640, 3) + bytes(9)
    assert mediaprobe.image_dimensions(b"\xff\xd8" + app0 + sof0) == (640, 480)
    # WebP extended (VP8X): 24-bit width-1 and height-1.
    vp8x = (
        b"RIFF"
        + bytes(4)
        + b"WEBPVP8X"
        + bytes(4)
        + bytes(4)
        + (9999).to_bytes(3, "little")
        + (4999).to_bytes(3, "little")
    )
    assert mediaprobe.image_dimensions(vp8x) == (10_000, 5_000)
    # WebP lossless (VP8L): 14-bit width-1 and height-1 after the 0x2f signature.
    bits = (1919) | (1079 << 14)
    vp8l = b"RIFF" + bytes(4) + b"WEBPVP8L" + bytes(4) + b"\x2f" + bits.to_bytes(4, "little") + bytes(5)
    assert mediaprobe.image_dimensions(vp8l) == (1920, 1080)
    assert mediaprobe.image_dimensions(b"GIF89a" + bytes(40)) is None
    assert mediaprobe.image_dimensions(_png_head(1, 1)[:20]) is None  # too short to tell


# --- what counts as transient (issue 8) ----------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "error_type"),
    [
        (DeliveryFailedError("events: Local: Message timed out"), "kafka_unavailable"),
        (KafkaException(KafkaError(KafkaError._TRANSPORT)), "kafka_unavailable"),
        (BufferError("Local: Queue full"), "kafka_unavailable"),
        (psycopg.OperationalError("server closed the connection unexpectedly"), "database_unavailable"),
        (subprocess.TimeoutExpired(["ffprobe", "/tmp/x.mp4"], 60), "step_timeout"),
        (TimeoutError("timed out"), "connection_lost"),
        (ConnectionResetError(104, "Connection reset by peer"), "connection_lost"),
        (ReadTimeoutError(endpoint_url="http://s3:9000/b/k"), "storage_unavailable"),
        (ConnectTimeoutError(endpoint_url="http://s3:9000/b/k"), "storage_unavailable"),
        (ffmpeg_killed("video 'a.mp4'", -9), "encoder_interrupted"),
    ],
)
def test_infrastructure_failures_and_a_killed_ffmpeg_are_transient_never_invalid_media(
    exc: BaseException, error_type: str
) -> None:
    error = classify(exc)
    assert isinstance(error, TransientError)
    assert error.retryable
    assert error.error_type == error_type
    assert "will be retried" in error.message


def test_an_unexpected_error_keeps_its_text_and_paths_out_of_the_message() -> None:
    error = classify(ValueError("bad value in /tmp/coursecast-1234-1-abcd/0/source.mp4 on encoder@host:4242"))
    assert error.error_type == "internal_error"
    assert not error.retryable
    for internal in ("/tmp", "ValueError", "bad value", "encoder@", "4242"):
        assert internal not in error.message


def test_a_system_error_message_does_not_repeat_the_raw_exception() -> None:
    error = classify(PermissionError(13, "Permission denied", "/tmp/coursecast-x/0/hls/index.m3u8"))
    assert error.retryable
    assert "/tmp" not in error.message
    assert "Permission denied" not in error.message


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("/tmp/coursecast-1f-1-abc/0/source.mp4: Invalid data found when processing input",
         "Invalid data found when processing input"),
        ("Error opening input file /work/x/y.mp4.", "Error opening input file"),
        ("Conversion failed!", "Conversion failed!"),
        ("Please upload an MP4, MOV and/or WebM file", "Please upload an MP4, MOV and/or WebM file"),
    ],
)  # fmt: skip
def test_tool_output_loses_its_absolute_paths(line: str, expected: str) -> None:
    assert without_paths(line) == expected


def test_a_probe_failure_names_the_uploaded_file_not_the_workers_copy() -> None:
    error = unreadable_media(
        "lecture.mp4", "/tmp/coursecast-3f1c-1-x/0/source.mp4: Invalid data found when processing input"
    )
    assert "'lecture.mp4'" in error.message
    assert "/tmp" not in error.message
    assert "Invalid data found when processing input" in error.message


def test_a_message_for_people_holds_no_control_character_path_or_worker_name() -> None:
    # A file name or an ffmpeg line with a NUL would make the codec refuse the final event forever.
    raw = "encoder@host-7:42 could not read /tmp/work/0/source.mp4: bad\x00name\x1b[31m"
    shown = for_people(raw, {"encoder@host-7:42"})
    assert "\x00" not in shown
    assert "\x1b" not in shown
    assert "/tmp" not in shown
    assert "host-7" not in shown
    assert shown.startswith("the encoder could not read")
    assert "\x00" not in for_people(unreadable_media("lecture\x00.mp4").message)
