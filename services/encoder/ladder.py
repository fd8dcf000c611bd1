"""The HLS ladder: which renditions a source gets (pure), and the one ffmpeg command that makes them all.

One decode feeds every rendition through a `split` filter; the hls muxer writes one media playlist
per rendition (`var_stream_map`) and a master playlist listing them with BANDWIDTH, RESOLUTION and
CODECS. Keyframes are forced every SEGMENT_S seconds in every rendition, so all renditions cut their
segments at the same instants and a player can switch between them at any segment boundary.

Every file is written aside (`<name>.tmp`) and renamed once complete (hls_flags temp_file), so a
segment that has its final name is finished: the encoder uploads it while ffmpeg writes the next
(upload.LiveUpload). The playlists of a VOD encode are written once, at the end.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import ffmpeg

from services.core import mediaprobe, payloads

# The output layout is core's (the conductor stitches what the encoder writes); re-exported here.
from services.core.stitch import MASTER_NAME as MASTER_NAME
from services.core.stitch import PLAYLIST_NAME as PLAYLIST_NAME
from services.core.stitch import SEGMENT_S as SEGMENT_S

AUDIO_BITRATE: Final = 128_000
# H.264 High profile, level 4.0 and AAC-LC: what ffmpeg's hls muxer announces for these encodes.
AUDIO_CODEC: Final = "mp4a.40.2"


@dataclass(frozen=True, slots=True)
class Rung:
    """A rung of the standard ladder: the short side of the picture and its video bit rate."""

    name: str
    short_side: int
    video_bitrate: int


# Landscape heights (or portrait widths) and bit rates of the standard ladder, best first.
STANDARD_LADDER: Final = (
    Rung("1080p", 1080, 5_000_000),
    Rung("720p", 720, 2_800_000),
    Rung("480p", 480, 1_400_000),
    Rung("360p", 360, 800_000),
    Rung("240p", 240, 400_000),
)


@dataclass(frozen=True, slots=True)
class Rendition:
    """One rendition to produce: its label, exact size and bit rates."""

    name: str
    width: int
    height: int
    video_bitrate: int
    audio_bitrate: int

    @property
    def bandwidth(self) -> int:
        """Peak bit rate as HLS BANDWIDTH counts it (video maxrate + audio)."""
        return int(self.video_bitrate * 1.07) + self.audio_bitrate


@dataclass(frozen=True, slots=True)
class Source:
    """What ffprobe found in a staged video."""

    width: int
    height: int
    duration_s: float
    has_video: bool = True
    has_audio: bool = True
    fps: float = 25.0


def _even(value: float) -> int:
    """H.264 with 4:2:0 chroma needs even dimensions."""
    return max(2, round(value / 2) * 2)


def choose_ladder(source: Source) -> list[Rendition]:
    """The renditions for `source`: standard rungs no larger than the source (never upscaled).

    The short side decides, so a portrait 1080x1920 phone video gets 1080p/720p/… with the same
    orientation. A source smaller than the lowest rung gets one rendition at its own size. An
    audio-only source gets one audio rendition (width and height 0).
    """
    audio = AUDIO_BITRATE if source.has_audio else 0
    if not source.has_video:
        return [Rendition("audio", 0, 0, 0, AUDIO_BITRATE)]
    portrait = source.height > source.width
    short, long_ = (source.width, source.height) if portrait else (source.height, source.width)
    aspect = long_ / short
    rungs = [r for r in STANDARD_LADDER if r.short_side <= short]
    if not rungs:
        # Smaller than every rung: keep the source size, with a bit rate scaled from the lowest rung.
        lowest = STANDARD_LADDER[-1]
        bitrate = max(150_000, int(lowest.video_bitrate * short / lowest.short_side))
        rungs = [Rung(f"{short}p", short, bitrate)]
    renditions = []
    for rung in rungs:
        side = max(2, rung.short_side // 2 * 2)  # rounded down: never above the source
        other = _even(side * aspect)
        width, height = (side, other) if portrait else (other, side)
        renditions.append(Rendition(rung.name, width, height, rung.video_bitrate, audio))
    return renditions


def as_reported(rendition: Rendition) -> payloads.Rendition:
    """A rung as the events report it and the master playlist names it: bandwidth and codecs count
    the audio that plays along with the rung."""
    return payloads.Rendition(
        name=rendition.name,
        width=rendition.width,
        height=rendition.height,
        bandwidth=rendition.bandwidth,
        codecs=codecs_string(rendition),
    )


def codecs_string(rendition: Rendition) -> str:
    """The RFC 6381 CODECS attribute of a rendition (High profile, level 4.0; AAC-LC)."""
    parts = []
    if rendition.width:
        parts.append("avc1.640028")
    if rendition.audio_bitrate:
        parts.append(AUDIO_CODEC)
    return ",".join(parts)


def thread_options(threads: int) -> dict[str, Any]:
    """ffmpeg-python options that give a decoder or an encoder `threads` threads; 0 leaves the
    choice to ffmpeg (one per core, and x264's own lookahead threads) (pure)."""
    return {"threads": threads} if threads > 0 else {}


def thread_global_args(threads: int) -> list[str]:
    """Global ffmpeg arguments that give its filter graphs `threads` threads; 0 is ffmpeg's choice."""
    if threads <= 0:
        return []
    return ["-filter_threads", str(threads), "-filter_complex_threads", str(threads)]


def hls_command(
    source: Path | mediaprobe.MediaInput,
    out_dir: Path,
    ladder: list[Rendition],
    *,
    preset: str = "veryfast",
    realtime_input: bool = False,
    threads: int = 0,
) -> list[str]:
    """The ffmpeg argv that writes the whole ladder into `out_dir/<i>/` plus `out_dir/master.m3u8`;
    `source` is a local file or a remote input (mediaprobe.remote_input); `threads` 0 is ffmpeg's
    own choice, else the threads of the decoder, of the filters and of each encoder."""
    # The source is opened on the leash: video demuxers, and the `file` protocol only (a local file)
    # or only the protocols of its URL (a remote input).
    opened = mediaprobe.media_input(source)
    input_args: dict[str, Any] = mediaprobe.input_options(mediaprobe.VIDEO_DEMUXERS, source=opened)
    input_args.update(thread_options(threads))
    if realtime_input:
        input_args["re"] = None
    stream = ffmpeg.input(opened.url, **input_args)
    outputs: list[Any] = []
    options: dict[str, Any] = {}
    var_map: list[str] = []
    video_count = sum(1 for r in ladder if r.width)
    audio_count = sum(1 for r in ladder if r.audio_bitrate)
    videos = stream.video.filter_multi_output("split", video_count) if video_count > 1 else None
    audios = stream.audio.filter_multi_output("asplit", audio_count) if audio_count > 1 else None
    v_index = a_index = 0
    for rendition in ladder:
        entry: list[str] = []
        if rendition.width:
            branch = videos[v_index] if videos is not None else stream.video
            outputs.append(branch.filter("scale", rendition.width, rendition.height))
            options[f"b:v:{v_index}"] = rendition.video_bitrate
            options[f"maxrate:v:{v_index}"] = int(rendition.video_bitrate * 1.07)
            options[f"bufsize:v:{v_index}"] = int(rendition.video_bitrate * 1.5)
            entry.append(f"v:{v_index}")
            v_index += 1
        if rendition.audio_bitrate:
            outputs.append(audios[a_index] if audios is not None else stream.audio)
            options[f"b:a:{a_index}"] = rendition.audio_bitrate
            entry.append(f"a:{a_index}")
            a_index += 1
        entry.append(f"name:{len(var_map)}")
        var_map.append(",".join(entry))
    if video_count:
        options.update(
            {
                "c:v": "libx264",
                "preset": preset,
                "profile:v": "high",
                "pix_fmt": "yuv420p",
                # Keyframes exactly on segment boundaries, in every rendition (aligned switching).
                "force_key_frames": f"expr:gte(t,n_forced*{SEGMENT_S})",
                "sc_threshold": 0,
            }
        )
    if audio_count:
        options.update({"c:a": "aac", "ac": 2, "ar": 48_000})
    output = ffmpeg.output(
        *outputs,
        str(out_dir / "%v" / PLAYLIST_NAME),
        f="hls",
        hls_time=SEGMENT_S,
        hls_playlist_type="vod",
        # temp_file: a segment (or playlist) gets its name only once it is complete (see the docstring).
        hls_flags="independent_segments+temp_file",
        hls_segment_type="mpegts",
        hls_segment_filename=str(out_dir / "%v" / "seg_%05d.ts"),
        master_pl_name=MASTER_NAME,
        var_stream_map=" ".join(var_map),
        **options,
        **thread_options(threads),
    )
    # -progress pipe:1 streams key=value progress blocks on stdout; -nostats keeps stderr for errors.
    with_progress = output.global_args(
        "-hide_banner", "-nostats", "-progress", "pipe:1", *thread_global_args(threads)
    )
    args: list[str] = ffmpeg.compile(with_progress, overwrite_output=True)
    return args


@dataclass(frozen=True, slots=True)
class Variant:
    """One #EXT-X-STREAM-INF entry of a master playlist."""

    uri: str
    bandwidth: int
    width: int
    height: int
    codecs: str


_ATTRIBUTE = re.compile(r'([A-Z0-9-]+)=("[^"]*"|[^,]*)')


def parse_master(text: str) -> list[Variant]:
    """The variants a master playlist lists, in order (pure)."""
    variants: list[Variant] = []
    pending: dict[str, str] | None = None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("#EXT-X-STREAM-INF:"):
            pending = {k: v.strip('"') for k, v in _ATTRIBUTE.findall(line.partition(":")[2])}
        elif line and not line.startswith("#") and pending is not None:
            width, _, height = pending.get("RESOLUTION", "0x0").partition("x")
            variants.append(
                Variant(
                    line, int(pending.get("BANDWIDTH", 0)), int(width), int(height), pending.get("CODECS", "")
                )
            )
            pending = None
    return variants
