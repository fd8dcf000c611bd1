"""ffmpeg for a chunked lecture: one chunk's video renditions, and the lecture's audio (once).

Layout under a lecture's output folder (the stitched files are written by `write_stitched`):
    <v>/chunk_<k>.m3u8, <v>/c<k>_<n>.ts   video rendition v of chunk k (v = 0.. in ladder order)
    audio/chunk.m3u8, audio/a_<n>.ts      the lecture's audio, one encode
    <v>/index.m3u8, audio/index.m3u8, master.m3u8   stitched

Timestamps are continuous across chunks without re-encoding at stitch time:
- the input is seeked accurately (`-ss` before `-i` while transcoding: ffmpeg decodes from the input
  keyframe before the start and drops the frames before it), and read for the chunk's span (`-t`);
- the output is shifted by `-output_ts_offset start + TIMELINE_OFFSET_S`, so a frame at source time
  t carries the same PTS whichever chunk encodes it;
- TIMELINE_OFFSET_S (also given to the audio) keeps every timestamp positive, B-frame reordering
  delay and AAC priming included. Without it the muxer shifts only what would be negative — chunk 0
  by the reordering delay (0.2 s with veryfast's B-frames at 10 fps), later chunks not at all, the
  audio by its priming — and the seams would jump.
Keyframes are forced every SEGMENT_S seconds of the chunk's own time (`t` in force_key_frames is
before the offset); as chunks start at multiples of SEGMENT_S, those are the lecture's segment
boundaries, and every segment (TS, self-contained: PAT/PMT and SPS/PPS at each keyframe) starts one.

TS continuity counters, which every chunk's muxer starts at 0, are made to run on across the seams
at stitch time by shifting them in the segment files (make_counters_continuous, ts_continuity): a
rewrite of one nibble per packet, not an encode.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

from services.core import mediaprobe, ts_continuity
from services.core.chunking import Chunk
from services.core.stitch import AUDIO_CHUNK_NAME as AUDIO_CHUNK_NAME
from services.core.stitch import AUDIO_DIR as AUDIO_DIR
from services.core.stitch import (
    ChunkPlaylist,
    master_playlist,
    parse_media_playlist,
    stitch,
)
from services.core.stitch import chunk_playlist_name as chunk_playlist_name
from services.encoder.errors import AttemptError
from services.encoder.ladder import (
    AUDIO_BITRATE,
    MASTER_NAME,
    PLAYLIST_NAME,
    SEGMENT_S,
    Rendition,
    as_reported,
    thread_global_args,
)
from services.encoder.process import run_ffmpeg
from services.encoder.progress import ProgressParser

# Added to every timestamp of a chunked lecture, video and audio alike (see the module docstring).
TIMELINE_OFFSET_S: Final = 10


def _segment_pattern(index: int) -> str:
    # Unique per chunk: all chunks of a rendition share its folder and its stitched playlist.
    return f"c{index:05d}_%05d.ts"


def _ffmpeg_head(threads: int = 0) -> list[str]:
    return ["ffmpeg", "-hide_banner", "-nostats", "-progress", "pipe:1", "-y", *thread_global_args(threads)]


def _input(source: Path | mediaprobe.MediaInput, threads: int) -> list[str]:
    # The source on the leash: video demuxers, and the `file` protocol only or only the protocols of
    # its URL (mediaprobe); then the decoder's threads (0: ffmpeg's choice).
    args = mediaprobe.input_args(source, mediaprobe.VIDEO_DEMUXERS)
    return [*args[:-2], *_threads(threads), *args[-2:]]


def _threads(threads: int) -> list[str]:
    # `-threads N` where it stands: before -i for the decoder, before the output for the encoder.
    return ["-threads", str(threads)] if threads > 0 else []


def _hls_output(segment_s: int) -> list[str]:
    return [
        "-f", "hls",
        "-hls_time", str(segment_s),
        "-hls_playlist_type", "vod",
        # temp_file: a segment gets its name only once complete, so a live upload never reads half of one.
        "-hls_flags", "independent_segments+temp_file",
        "-hls_segment_type", "mpegts",
    ]  # fmt: skip


def video_chunk_command(
    source: Path | mediaprobe.MediaInput,
    out_dir: Path,
    chunk: Chunk,
    ladder: Sequence[Rendition],
    *,
    preset: str = "veryfast",
    threads: int = 0,
) -> list[str]:
    """The ffmpeg argv that encodes `chunk` of the source (a local file or a remote input: read from
    the chunk's start, one seek) into every video rendition of `ladder`, video only, as
    `out_dir/<v>/chunk_<k>.m3u8` and its segments; `threads` as ladder.hls_command."""
    videos = [r for r in ladder if r.width]
    if not videos:
        raise ValueError("the ladder has no video rendition")
    graph = f"[0:v]split={len(videos)}" + "".join(f"[s{v}]" for v in range(len(videos)))
    graph += "".join(f";[s{v}]scale={r.width}:{r.height}[v{v}]" for v, r in enumerate(videos))
    argv = [
        *_ffmpeg_head(threads),
        # Before -i: an accurate input seek, and read only the chunk's span of the source.
        "-ss", _seconds(chunk.start_s),
        "-t", _seconds(chunk.duration_s),
        *_input(source, threads),
        "-filter_complex", graph,
    ]  # fmt: skip
    for v, rendition in enumerate(videos):
        argv += [
            "-map", f"[v{v}]",
            f"-b:v:{v}", str(rendition.video_bitrate),
            f"-maxrate:v:{v}", str(int(rendition.video_bitrate * 1.07)),
            f"-bufsize:v:{v}", str(int(rendition.video_bitrate * 1.5)),
        ]  # fmt: skip
    argv += [
        "-an",
        "-c:v", "libx264",
        "-preset", preset,
        "-profile:v", "high",
        "-pix_fmt", "yuv420p",
        # Keyframes exactly on segment boundaries, in every rendition (as ladder.hls_command).
        "-force_key_frames", f"expr:gte(t,n_forced*{SEGMENT_S})",
        "-sc_threshold", "0",
        *_threads(threads),
        "-output_ts_offset", _seconds(chunk.start_s + TIMELINE_OFFSET_S),
        *_hls_output(SEGMENT_S),
        "-hls_segment_filename", str(out_dir / "%v" / _segment_pattern(chunk.index)),
        "-var_stream_map", " ".join(f"v:{v},name:{v}" for v in range(len(videos))),
        str(out_dir / "%v" / chunk_playlist_name(chunk.index)),
    ]  # fmt: skip
    return argv


def audio_command(
    source: Path | mediaprobe.MediaInput,
    out_dir: Path,
    *,
    bitrate: int = AUDIO_BITRATE,
    threads: int = 0,
) -> list[str]:
    """The ffmpeg argv that encodes the whole lecture's audio once (AAC-LC stereo 48 kHz) as an HLS
    rendition `out_dir/audio/chunk.m3u8`: not chunked, so no AAC priming at a seam. `source` is a
    local file or a remote input; `threads` as ladder.hls_command."""
    return [
        *_ffmpeg_head(threads),
        *_input(source, threads),
        "-map", "0:a:0",
        "-vn",
        "-c:a", "aac",
        "-b:a", str(bitrate),
        "-ac", "2",
        "-ar", "48000",
        *_threads(threads),
        "-output_ts_offset", str(TIMELINE_OFFSET_S),
        *_hls_output(SEGMENT_S),
        "-hls_segment_filename", str(out_dir / AUDIO_DIR / "a_%05d.ts"),
        str(out_dir / AUDIO_DIR / AUDIO_CHUNK_NAME),
    ]  # fmt: skip


def encode_video_chunk(
    source: Path | mediaprobe.MediaInput,
    out_dir: Path,
    chunk: Chunk,
    ladder: Sequence[Rendition],
    *,
    deadline: float,
    time_limit_s: int,
    should_stop: Callable[[], AttemptError | None],
    on_progress: Callable[[float], None] | None = None,
    preset: str = "veryfast",
    threads: int = 0,
) -> None:
    """Encode one chunk's video renditions (run_ffmpeg: G2, killed with its group however it ends;
    a remote source that fails to read raises errors.SourceReadError, G5)."""
    for v in range(sum(1 for r in ladder if r.width)):
        (out_dir / str(v)).mkdir(parents=True, exist_ok=True)
    run_ffmpeg(
        video_chunk_command(source, out_dir, chunk, ladder, preset=preset, threads=threads),
        source=mediaprobe.media_input(source),
        deadline=deadline,
        time_limit_s=time_limit_s,
        should_stop=should_stop,
        parser=ProgressParser(chunk.duration_s),
        on_progress=on_progress,
        what=f"video chunk {chunk.index}",
    )


def encode_audio(
    source: Path | mediaprobe.MediaInput,
    out_dir: Path,
    duration_s: float,
    *,
    deadline: float,
    time_limit_s: int,
    should_stop: Callable[[], AttemptError | None],
    on_progress: Callable[[float], None] | None = None,
    threads: int = 0,
) -> None:
    """Encode the lecture's audio rendition, once (run_ffmpeg: G2; G5 as encode_video_chunk)."""
    (out_dir / AUDIO_DIR).mkdir(parents=True, exist_ok=True)
    run_ffmpeg(
        audio_command(source, out_dir, threads=threads),
        source=mediaprobe.media_input(source),
        deadline=deadline,
        time_limit_s=time_limit_s,
        should_stop=should_stop,
        parser=ProgressParser(duration_s),
        on_progress=on_progress,
        what="audio",
    )


def write_stitched(
    out_dir: Path,
    chunks: Sequence[Chunk],
    ladder: Sequence[Rendition],
    duration_s: float,
    *,
    has_audio: bool,
) -> Path:
    """Stitch every video rendition's chunk playlists into `<v>/index.m3u8`, rewrite the audio's as
    `audio/index.m3u8` (same header rules), and write the master; returns the master's path.
    Before a rendition's playlist is written, its segments' TS continuity counters are made to run
    on across the seams (make_counters_continuous), so the playlist only ever names a continuous
    stream. Raises stitch.StitchError if a chunk is missing or does not last its planned span
    (before any segment is touched), ts_continuity.TsError if a segment is not MPEG-TS."""
    videos = [r for r in ladder if r.width]
    video_uris: list[str] = []
    for v in range(len(videos)):
        folder = out_dir / str(v)
        parts = [ChunkPlaylist(c, (folder / chunk_playlist_name(c.index)).read_text()) for c in chunks]
        text = stitch(parts)
        make_counters_continuous(folder, [s.uri for s in parse_media_playlist(text)])
        (folder / PLAYLIST_NAME).write_text(text)
        video_uris.append(f"{v}/{PLAYLIST_NAME}")
    audio_uri = None
    if has_audio:
        whole = Chunk(0, 0.0, duration_s)
        text = (out_dir / AUDIO_DIR / AUDIO_CHUNK_NAME).read_text()
        (out_dir / AUDIO_DIR / PLAYLIST_NAME).write_text(stitch([ChunkPlaylist(whole, text)]))
        audio_uri = f"{AUDIO_DIR}/{PLAYLIST_NAME}"
    master = out_dir / MASTER_NAME
    master.write_text(master_playlist([as_reported(r) for r in ladder], video_uris, audio_uri))
    return master


def make_counters_continuous(folder: Path, uris: Sequence[str]) -> int:
    """Shift the TS continuity counters of the segments `uris` (in playlist order, relative to
    `folder`) so that each PID's counter runs on from one segment to the next, as one muxer would
    have written them (ts_continuity); returns how many segment files were rewritten.

    Planned per segment, not per chunk: inside a chunk the shift is the same for every segment, and
    the plan is made from the files as they are, so running this again, after a crash between two
    segments or after it finished, rewrites only what is still off (nothing the second time). Each
    file is replaced whole (written aside, then renamed), never left half-rewritten."""
    paths = [folder / uri for uri in uris]
    summaries = [ts_continuity.summarize(path.read_bytes()) for path in paths]
    rewritten = 0
    for path, shifts in zip(paths, ts_continuity.plan_shifts(summaries), strict=True):
        if shifts:
            aside = path.with_name(path.name + ".part")
            aside.write_bytes(ts_continuity.shift_counters(path.read_bytes(), shifts))
            os.replace(aside, path)
            rewritten += 1
    return rewritten


def _seconds(value: float) -> str:
    """A time for ffmpeg's command line, exact to the microsecond (no float noise like 300.0000001)."""
    return f"{value:.6f}".rstrip("0").rstrip(".")
