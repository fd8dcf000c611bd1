"""A video's pipeline, planned without ffmpeg: its runs, local paths, output keys and events."""

from __future__ import annotations

from pathlib import Path
from uuid import uuid4

from services.core.manifest import StagedFile, StagedVideo
from services.core.mediaprobe import remote_input
from services.core.payloads import PublishedVideo, Rendition, ThumbnailSaved, VideoEncoded
from services.core.settings import Settings
from services.encoder.ladder import Source, Variant, choose_ladder
from services.encoder.pipeline import (
    LadderSettings,
    VideoPlan,
    ladder_settings,
    output_keys,
    plan_video,
    rendition_list,
    video_events,
    video_outputs,
    work_paths,
)

JOB = uuid4()
WORK = Path("/work/attempt")
LADDER = LadderSettings(preset="ultrafast", realtime_input=False, max_image_pixels=1_000_000)
CDN = "https://cdn.example/"
# The presigned URL encode.py streams a source through (its query string is the credential).
SOURCE_URL = "https://s3.example/coursecast/staging/x/videos/2.mov?X-Amz-Signature=abc"


def staged(index: int = 2, thumbnail: bool = True) -> StagedVideo:
    image = StagedFile(
        key=f"staging/{JOB}/thumbnails/{index}.png",
        filename="Title card.png",
        size_bytes=10,
        content_type="image/png",
    )
    return StagedVideo(
        key=f"staging/{JOB}/videos/{index}.mov",
        filename="Lecture 3 — Graphs.mov",
        size_bytes=100,
        content_type="video/quicktime",
        index=index,
        thumbnail=image if thumbnail else None,
    )


def plan(video: StagedVideo, source: Source, ladder: LadderSettings = LADDER, attempt: int = 3) -> VideoPlan:
    source_input = remote_input(SOURCE_URL, video.filename)
    return plan_video(JOB, attempt, video, work_paths(WORK, video), source, ladder, source_input=source_input)


def url(key: str) -> str:
    return CDN + key


def test_downloads_keep_the_staged_suffix_in_a_folder_per_video() -> None:
    paths = work_paths(WORK, staged(index=2))
    assert paths.uploaded_thumbnail == WORK / "2" / "uploaded.png"
    assert (paths.hls, paths.images) == (WORK / "2" / "hls", WORK / "2" / "images")
    assert (paths.thumbnail, paths.poster) == (paths.images / "thumbnail.webp", paths.images / "poster.webp")
    assert work_paths(WORK, staged(thumbnail=False)).uploaded_thumbnail is None


def test_outputs_live_under_a_prefix_unique_to_the_job_attempt_and_video() -> None:
    keys = output_keys(JOB, 3, 2, has_poster=True)
    assert keys.prefix == f"hls/{JOB}/3/2"
    assert (keys.master, keys.thumbnail, keys.poster) == (
        f"hls/{JOB}/3/2/master.m3u8",
        f"hls/{JOB}/3/2/thumbnail.webp",
        f"hls/{JOB}/3/2/poster.webp",
    )
    assert output_keys(JOB, 4, 2, has_poster=False).poster is None


def test_a_video_with_an_uploaded_image_gets_the_ladder_a_frame_poster_and_the_uploaded_thumbnail() -> None:
    video = staged()
    source = Source(1280, 720, 61.5)
    planned = plan(video, source)
    paths = planned.paths

    assert planned.renditions == choose_ladder(source)
    transcode = planned.transcode.argv
    assert transcode.count("-i") == 1
    # The source is streamed from its URL, over exactly the protocols that URL needs.
    assert transcode[transcode.index("-i") + 1] == SOURCE_URL
    assert transcode[transcode.index("-protocol_whitelist") + 1] == "https,tls,tcp"
    assert "-threads" not in transcode
    assert transcode[transcode.index("-preset") + 1] == "ultrafast"
    assert str(paths.hls / "%v" / "index.m3u8") in transcode
    assert "-re" not in transcode
    assert planned.transcode.what == "video 'Lecture 3 — Graphs.mov'"

    # One run writes the frame thumbnail and the poster; the uploaded image then replaces the thumbnail.
    assert SOURCE_URL in planned.frame_images.argv
    assert str(paths.thumbnail) in planned.frame_images.argv
    assert str(paths.poster) in planned.frame_images.argv
    uploaded = planned.uploaded_thumbnail
    assert uploaded is not None
    assert (uploaded.path, uploaded.filename) == (paths.uploaded_thumbnail, "Title card.png")
    assert f"file:{paths.uploaded_thumbnail}" in uploaded.convert.argv
    assert str(paths.thumbnail) in uploaded.convert.argv
    assert uploaded.convert.argv[uploaded.convert.argv.index("-max_pixels") + 1] == "1000000"
    assert planned.image_source == "uploaded"
    assert planned.image_files() == {
        f"hls/{JOB}/3/2/thumbnail.webp": paths.thumbnail,
        f"hls/{JOB}/3/2/poster.webp": paths.poster,
    }


def test_an_audio_only_lecture_gets_one_audio_rendition_a_placeholder_card_and_no_poster() -> None:
    planned = plan(staged(thumbnail=False), Source(0, 0, 30.0, has_video=False))
    assert [(r.name, r.width, r.height) for r in planned.renditions] == [("audio", 0, 0)]
    assert "libx264" not in planned.transcode.argv
    assert "lavfi" in planned.frame_images.argv
    assert str(planned.paths.poster) not in planned.frame_images.argv
    assert planned.uploaded_thumbnail is None
    assert planned.image_source == "frame"
    assert planned.keys.poster is None
    assert list(planned.image_files()) == [f"hls/{JOB}/3/2/thumbnail.webp"]


def test_realtime_input_reads_the_source_at_its_own_pace() -> None:
    realtime = LadderSettings(preset="veryfast", realtime_input=True, max_image_pixels=1)
    argv = plan(staged(), Source(640, 360, 5.0), realtime).transcode.argv
    assert "-re" in argv[: argv.index("-i")]  # an input option
    assert argv[argv.index("-preset") + 1] == "veryfast"


def test_the_ladder_settings_come_from_the_configuration() -> None:
    settings = Settings(encoder_x264_preset="medium", encoder_realtime_input=True, max_image_pixels=42)
    assert ladder_settings(settings) == LadderSettings("medium", True, 42, threads=0)
    assert ladder_settings(settings.model_copy(update={"encoder_threads": 1})).threads == 1


def test_encoder_threads_reach_the_decoder_the_filters_and_every_encoder() -> None:
    one = LadderSettings(preset="veryfast", realtime_input=False, max_image_pixels=1, threads=1)
    argv = plan(staged(), Source(1280, 720, 5.0), one).transcode.argv
    decoder_threads = argv.index("-threads")
    assert decoder_threads < argv.index("-i")  # before -i: the input's decoder
    assert argv[decoder_threads + 1] == "1"
    assert argv.count("-threads") == 2  # and once for the outputs: every x264 and aac encoder
    assert argv[argv.index("-filter_complex_threads") + 1] == "1"


def test_renditions_report_what_the_master_playlist_says_and_fall_back_to_the_plan() -> None:
    renditions = choose_ladder(Source(640, 360, 10.0))
    variants = [Variant("0/index.m3u8", 999_000, 0, 0, "")]
    assert rendition_list(renditions, variants) == (
        Rendition(name="360p", width=640, height=360, bandwidth=999_000, codecs="avc1.640028,mp4a.40.2"),
    )


def test_the_outputs_and_events_name_the_planned_keys_under_the_cdn() -> None:
    planned = plan(staged(), Source(640, 360, 12.34567))
    variants = [Variant("0/index.m3u8", 1_000_000, 640, 360, "avc1.64001e,mp4a.40.2")]
    outputs = video_outputs(planned, variants, 12.34567, url)
    prefix = f"{CDN}hls/{JOB}/3/2"
    renditions = (
        Rendition(name="360p", width=640, height=360, bandwidth=1_000_000, codecs="avc1.64001e,mp4a.40.2"),
    )
    assert outputs == PublishedVideo(
        video_index=2,
        master_playlist_url=f"{prefix}/master.m3u8",
        renditions=renditions,
        duration_s=12.346,
        thumbnail_url=f"{prefix}/thumbnail.webp",
        poster_url=f"{prefix}/poster.webp",
    )
    assert video_events(planned, outputs) == [
        VideoEncoded(
            video_index=2,
            master_playlist_url=f"{prefix}/master.m3u8",
            renditions=renditions,
            duration_s=12.346,
        ),
        ThumbnailSaved(video_index=2, kind="thumbnail", source="uploaded", url=f"{prefix}/thumbnail.webp"),
        ThumbnailSaved(video_index=2, kind="poster", source="frame", url=f"{prefix}/poster.webp"),
    ]


def test_an_audio_only_lecture_announces_its_thumbnail_and_no_poster() -> None:
    planned = plan(staged(thumbnail=False), Source(0, 0, 30.0, has_video=False))
    outputs = video_outputs(planned, [], 30.0, url)
    assert outputs.poster_url is None
    assert outputs.renditions == ()
    events = video_events(planned, outputs)
    assert [type(event) for event in events] == [VideoEncoded, ThumbnailSaved]
    assert isinstance(events[1], ThumbnailSaved)
    assert (events[1].kind, events[1].source) == ("thumbnail", "frame")
