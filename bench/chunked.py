"""CPU cost of a chunked encode against today's one-pass encode of the same lecture (issue #10).

    python -m bench.chunked [--seconds 720] [--size 640x360] [--fps 10] [--chunk 300] [--source FILE]

Generates the lecture the integration test uses (testsrc2 + a beeping stereo tone) unless --source is
given, then encodes it twice at the same settings (ladder, preset): once with ladder.hls_command (all
renditions, audio muxed, one ffmpeg), once as chunk_encode does it (one ffmpeg per chunk, video
only, plus one audio encode), one after the other so the CPU seconds are ffmpeg's alone. CPU is
user + system time of the child processes (getrusage), which load from other work inflates less
than wall time.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.report import Check, Section, Table
from services.core import mediaprobe
from services.core.chunking import plan_chunks
from services.encoder import chunk_encode, ladder


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _timed(argvs: list[list[str]]) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of running `argvs` one after the other."""
    cpu, wall = _children_cpu(), time.monotonic()
    for argv in argvs:
        done = subprocess.run(
            mediaprobe.die_with_parent(argv), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False
        )
        if done.returncode != 0:
            sys.exit(done.stderr.decode("utf-8", "replace")[-2000:])
    return _children_cpu() - cpu, time.monotonic() - wall


def main(argv: list[str]) -> Section:
    """Encode the lecture both ways, print the CPU and wall time of each and return them."""
    parser = argparse.ArgumentParser(prog="python -m bench chunked")
    parser.add_argument("--seconds", type=int, default=720)
    parser.add_argument("--size", default="640x360")
    parser.add_argument("--fps", type=int, default=10)
    parser.add_argument("--chunk", type=int, default=300)
    parser.add_argument("--source", type=Path)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="chunk-bench-") as tmp:
        folder = Path(tmp)
        source: Path = args.source or folder / "lecture.mp4"
        if args.source is None:
            subprocess.run(
                [
                    "ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
                    "-f", "lavfi", "-i", f"testsrc2=size={args.size}:rate={args.fps}:duration={args.seconds}",
                    "-f", "lavfi", "-i", f"sine=frequency=440:beep_factor=4:duration={args.seconds}",
                    "-c:v", "libx264", "-preset", "ultrafast", "-g", "100", "-pix_fmt", "yuv420p",
                    "-c:a", "aac", "-ac", "2", "-shortest", str(source),
                ],
                check=True,
            )  # fmt: skip
        info = mediaprobe.probe(source, mediaprobe.VIDEO_DEMUXERS, timeout_s=30)
        video = next(s for s in info["streams"] if s["codec_type"] == "video")
        duration = float(info["format"]["duration"])
        renditions = ladder.choose_ladder(ladder.Source(int(video["width"]), int(video["height"]), duration))
        chunks = plan_chunks(duration, args.chunk, ladder.SEGMENT_S)

        one = folder / "one-pass"
        one.mkdir()
        one_cpu, one_wall = _timed([ladder.hls_command(source, one, renditions)])

        out = folder / "chunked"
        for v in range(len(renditions)):
            (out / str(v)).mkdir(parents=True)
        (out / chunk_encode.AUDIO_DIR).mkdir()
        video_cmds = [chunk_encode.video_chunk_command(source, out, c, renditions) for c in chunks]
        video_cpu, video_wall = _timed(video_cmds)
        audio_cpu, audio_wall = _timed([chunk_encode.audio_command(source, out)])
        chunk_encode.write_stitched(out, chunks, renditions, duration, has_audio=True)

    names = [r.name for r in renditions]
    print(f"lecture {duration:.1f} s, {args.size} at {args.fps} fps; renditions {names}")
    print(f"chunks {[(c.start_s, c.end_s) for c in chunks]}")
    print(f"one-pass: cpu {one_cpu:.1f} s, wall {one_wall:.1f} s")
    chunked_cpu = video_cpu + audio_cpu
    print(f"chunked:  cpu {chunked_cpu:.1f} s (video {video_cpu:.1f}, audio {audio_cpu:.1f}), ", end="")
    print(f"wall {video_wall + audio_wall:.1f} s one after the other")
    print(f"chunked / one-pass cpu: {chunked_cpu / one_cpu:.3f}")
    rows = (
        (f"one pass (`ladder.hls_command`: {len(names)} video renditions, audio muxed into each)",
         f"{one_cpu:.1f} s", f"{one_wall:.1f} s"),
        (f"chunked: {len(chunks)} video chunk encodes + 1 audio encode",
         f"{chunked_cpu:.1f} s (video {video_cpu:.1f} s, audio {audio_cpu:.1f} s)",
         f"{video_wall + audio_wall:.1f} s serial"),
    )  # fmt: skip
    command = (
        f"python -m bench chunked --seconds {args.seconds} --size {args.size}"
        f" --fps {args.fps} --chunk {args.chunk}"
    )
    return Section(
        "chunked",
        "Chunked encode: CPU against a one-pass encode",
        command + (f" --source {args.source}" if args.source else ""),
        (Table(("encode", "CPU (user + system)", "wall"), rows),),
        (Check("CPU chunked ÷ one pass", f"{chunked_cpu / one_cpu:.3f}"),),
        f"{duration:.1f} s lecture, {args.size} at {args.fps} fps, renditions {', '.join(names)}",
    )


if __name__ == "__main__":
    main(sys.argv[1:])
