"""Fan-out (issue #10): a course through planner, encoder group and conductor, against bare ffmpeg.

    python -m bench fanout [--quick] [--lectures 4] [--lecture-s 60] [--long-s 720] [--size 1280x720]
                           [--chunk-s 300] [--scale-chunk-s 120] [--partitions 4]

Each figure against a baseline of the same run:
a. Overhead, one encoder: a course of `--lectures` × `--lecture-s` and a course of one `--long-s`
   lecture (chunked at `--chunk-s`), each published by one encoder + the conductor + a projector on
   isolated topics. Wall time is the course's JobQueued → JobCompleted, read from the log (as
   bench/encoder.py does); the baseline is the bare ffmpeg ladder (ladder.hls_command, the command the
   encoder would build for a whole lecture) run on the same files one after the other. Target ≤ 1.05.
b. Scale-out: the long lecture with COURSECAST_ENCODER_THREADS=1 on every encoder, chunked at
   `--scale-chunk-s` (7 tasks for 12 minutes at 120 s: at 300 s the 4 tasks 300, 300, 120 s and the
   audio cannot be split over 2 encoders better than 1.7) on topics of 2 partitions, 1 encoder
   against 2 encoder processes: speedup wall(1) ÷ wall(2), target ≥ 1.7.
c. From (a)'s long lecture: tasks per course, the longest task (its JobStarted → TaskCompleted), and
   a projection (arithmetic, bench/projection.py) of a 2-hour lecture over 16 encoders.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from uuid import UUID

import orjson
from psycopg import sql

from bench.encoder import raw_ffmpeg
from bench.projection import (
    CourseRun,
    Event,
    Projection,
    fold_course,
    held_partitions,
    makespan,
    project,
    rates,
)
from bench.report import Check, Section, Table
from services.core.settings import Settings
from services.core.storage import s3_client
from services.projector.store import JobStore
from tests.support.encoder import queue_job
from tests.support.observe import log_lines, wait_for
from tests.support.projector import isolated
from tests.support.services import running, wait_until
from tests.support.staging import make_clip, new_job_id, stage_course

OVERHEAD_TARGET = 1.05
SPEEDUP_TARGET = 1.7
# The projection of section "N encoders on N machines" (bench/text/fanout.md).
PROJECTED_LECTURE_S = 7200.0
PROJECTED_CHUNK_S = 300
PROJECTED_ENCODERS = 16
# (b) runs on topics of one partition per encoder. A course's tasks take the partitions in turn
# (services/core/lanes.py), but cooperative-sticky gives each of 2 encoders 2 *adjacent* partitions of
# 4: 6 chunks on 4 partitions are 2, 2, 1, 1, and whether an encoder gets 4 of them or 3 then depends
# on where the course's lanes start. With a partition per encoder the split is always 3 and 3.
SCALE_PARTITIONS = 2


def course_events(settings: Settings, course_id: UUID) -> list[Event]:
    """Every accepted event of the course and of its tasks, in log order (one partition: docs/fan-out.md)."""
    store = JobStore.open(settings.database_url, settings.database_schema, settings.events_topic)
    try:
        rows = store.connection.execute(
            sql.SQL(
                "SELECT e.job_id, e.type, e.attempt, extract(epoch FROM e.occurred_at), e.data, p.task"
                " FROM job_events e LEFT JOIN publish_jobs p USING (job_id)"
                " LEFT JOIN rejected_events r USING (event_id)"
                " WHERE r.event_id IS NULL AND (e.job_id = %(course)s OR p.course_job_id = %(course)s)"
                " ORDER BY e.kafka_partition, e.kafka_offset"
            ),
            {"course": course_id},
        ).fetchall()
    finally:
        store.close()
    return [Event(str(row[0]), row[1], row[2], float(row[3]), row[4], row[5]) for row in rows]


@dataclass(frozen=True)
class Published:
    """A measured course, its tasks' workers named `encoder-<n>`, and the commands topic's partitions
    each encoder held when the course was queued (from its log): tasks reach an encoder only through
    those (an EncodeTask is keyed by its task's id, docs/fan-out.md)."""

    run: CourseRun
    partitions: dict[str, list[int]]

    def describe(self) -> str:
        """`5 tasks (audio 1, video 4); encoder-0: 3 on commands partitions [0, 1], …`."""
        kinds: dict[str, int] = {}
        for task in self.run.tasks:
            kinds[task.media] = kinds.get(task.media, 0) + 1
        ran = self.run.per_worker()
        return (
            f"{len(self.run.tasks)} tasks ({', '.join(f'{k} {v}' for k, v in sorted(kinds.items()))}); "
            + ", ".join(
                f"{name}: {len(ran.get(name, []))} on commands partitions {held}"
                for name, held in self.partitions.items()
            )
        )


def publish(settings: Settings, clips: list[Path], workdir: Path, encoders: int, **env: str) -> Published:
    """Publish `clips` as one course through `encoders` encoder processes, the conductor and a
    projector on isolated topics; the course's figures from its log."""
    s3 = s3_client(settings)
    with isolated(settings, partitions=settings.topic_partitions) as own:
        course_id = new_job_id()
        manifest = stage_course(own, s3, course_id, clips)
        logs = workdir / f"logs-{course_id}"
        logs.mkdir()
        # A projector, the encoders and (with the first encoder) the conductor that completes the course.
        with running(own, logs) as run:
            run.projector()
            names = [f"encoder-{n}" for n in range(encoders)]
            # JobStarted names its worker `encoder@<host>:<pid>`.
            workers = {f":{run.encoder(name, **env).pid}": name for name in names}
            # The clock starts at JobQueued: every encoder holds its share of the commands topic (read
            # in a group of its own, services/encoder/consumer.py) before that.
            wait_until(
                "every encoder holds a commands partition",
                lambda: all(held_partitions(log_lines(run.log(n)), own.commands_topic) for n in names),
                120,
                run.processes,
            )
            time.sleep(3 if encoders == 1 else 8)  # a second member's rebalance settles
            held = {n: held_partitions(log_lines(run.log(n)), own.commands_topic) for n in names}
            queue_job(own, manifest)
            job = wait_for(own, course_id, {"completed", "failed"}, 7200, run.processes)
        if job.status.value != "completed":
            raise SystemExit(f"bench course failed: {job.error_type}: {job.error_message}")
        measured = fold_course(str(course_id), course_events(own, course_id))

    def name(worker: str) -> str:
        return next((n for pid, n in workers.items() if worker.endswith(pid)), worker)

    tasks = tuple(replace(t, worker=name(t.worker)) for t in measured.tasks)
    return Published(replace(measured, tasks=tasks), held)


@dataclass(frozen=True)
class Overhead:
    """One course published by one encoder against the bare ladder on its files."""

    label: str
    raw_s: float
    course: Published

    @property
    def run(self) -> CourseRun:
        return self.course.run

    @property
    def ratio(self) -> float:
        return self.run.wall_s / self.raw_s


def overhead(label: str, settings: Settings, clips: list[Path], workdir: Path) -> Overhead:
    """Bare ffmpeg on every clip in turn, then the course through the pipeline."""
    raw = sum(raw_ffmpeg(clip, settings) for clip in clips)
    course = publish(settings, clips, workdir, 1)
    run = course.run
    result = Overhead(label, raw, course)
    print(
        f"  {label}: bare ffmpeg {raw:.2f} s, PublishCourse → JobCompleted {run.wall_s:.2f} s,"
        f" ratio {result.ratio:.3f} (target ≤ {OVERHEAD_TARGET}); {breakdown(run)}",
        flush=True,
    )
    return result


def breakdown(run: CourseRun) -> str:
    """Plan, the tasks' runs, completion, and the rest (hand-offs between them), for one encoder."""
    tasks = sum(t.run_s for t in run.tasks)
    rest = run.wall_s - run.plan_s - tasks - run.stitch_s
    return (
        f"plan {run.plan_s:.2f} s + tasks {tasks:.2f} s + stitch/complete {run.stitch_s:.2f} s"
        f" + hand-offs {rest:.2f} s"
    )


def main(argv: list[str]) -> Section:
    """Run (a), (b) and (c), print the figures (one JSON line at the end) and return them."""
    parser = argparse.ArgumentParser(prog="python -m bench fanout")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke test: 2 × 20 s, 120 s at 30 s chunks (18 s for the scale-out), 640x360",
    )
    parser.add_argument("--lectures", type=int, help="lectures of the short course (default 4)")
    parser.add_argument("--lecture-s", type=float, help="length of each (default 60)")
    parser.add_argument("--long-s", type=float, help="the long lecture (default 720)")
    parser.add_argument("--chunk-s", type=int, help="COURSECAST_CHUNK_S (default 300)")
    parser.add_argument("--scale-chunk-s", type=int, help="COURSECAST_CHUNK_S of (b) (default 120)")
    parser.add_argument("--size", help="picture size of every clip (default 1280x720)")
    parser.add_argument("--partitions", type=int, default=4, help="partitions of the isolated topics")
    args = parser.parse_args(argv)
    quick = args.quick
    lectures = args.lectures or (2 if quick else 4)
    lecture_s = args.lecture_s or (20.0 if quick else 60.0)
    long_s = args.long_s or (120.0 if quick else 720.0)
    chunk_s = args.chunk_s or (30 if quick else 300)
    scale_chunk_s = args.scale_chunk_s or (18 if quick else 120)
    size = args.size or ("640x360" if quick else "1280x720")
    settings = Settings().model_copy(update={"chunk_s": chunk_s, "topic_partitions": args.partitions})
    single = {"COURSECAST_ENCODER_THREADS": "1"}
    print(
        f"fanout bench: {lectures} × {lecture_s:g} s and 1 × {long_s:g} s lectures, {size},"
        f" chunks of {chunk_s} s ({scale_chunk_s} s for the scale-out),"
        f" preset {settings.encoder_x264_preset}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="bench-fanout-") as tmp:
        workdir = Path(tmp)
        # A 12-minute 720p clip takes 80 s to generate on 2 cores at a load of 3: no 120 s limit here.
        shorts = [
            make_clip(workdir / f"lecture-{n}.mp4", seconds=lecture_s, size=size, timeout_s=120 + lecture_s)
            for n in range(lectures)
        ]
        long = make_clip(workdir / "long.mp4", seconds=long_s, size=size, timeout_s=120 + long_s)
        short_course = overhead(f"{lectures} × {lecture_s:g} s course", settings, shorts, workdir)
        long_course = overhead(f"1 × {long_s:g} s lecture", settings, [long], workdir)
        scaled = settings.model_copy(update={"chunk_s": scale_chunk_s, "topic_partitions": SCALE_PARTITIONS})
        one = publish(scaled, [long], workdir, 1, **single)
        print(f"  1 encoder, 1 thread: {one.run.wall_s:.2f} s; {one.describe()}", flush=True)
        two = publish(scaled, [long], workdir, 2, **single)
        print(f"  2 encoders, 1 thread each: {two.run.wall_s:.2f} s; {two.describe()}", flush=True)
    speedup = one.run.wall_s / two.run.wall_s
    # What two encoders would take had the tasks spread over both: the 1-encoder run's tasks split as
    # evenly as their lengths allow, plus its plan, its stitch and half its hand-offs (each encoder
    # hands off its own tasks). A projection, not a measurement.
    task_runs = [t.run_s for t in one.run.tasks]
    hand_offs = one.run.wall_s - one.run.plan_s - sum(task_runs) - one.run.stitch_s
    spread_s = one.run.plan_s + makespan(task_runs, 2) + one.run.stitch_s + hand_offs / 2
    measured = long_course.run
    longest = measured.longest
    projection = project(
        PROJECTED_LECTURE_S,
        PROJECTED_CHUNK_S,
        PROJECTED_ENCODERS,
        rates(measured.tasks),
        plan_s=measured.plan_s,
        stitch_s_per_s=measured.stitch_s / long_s,
    )
    print(f"  speedup 2 encoders ÷ 1: {speedup:.2f} × (target ≥ {SPEEDUP_TARGET})")
    print(
        f"  projection, 2 encoders with the tasks spread: {spread_s:.2f} s,"
        f" speedup {one.run.wall_s / spread_s:.2f} ×"
    )
    print(
        f"  long lecture: {long_course.course.describe()}, longest task {longest.media} {longest.span_s:g} s"
        f" of lecture in {longest.run_s:.2f} s; plan {measured.plan_s:.2f} s,"
        f" stitch {measured.stitch_s:.2f} s"
    )
    print(f"  projection: {describe_projection(projection)}")
    summary = {
        "short_raw_s": short_course.raw_s,
        "short_wall_s": short_course.run.wall_s,
        "long_raw_s": long_course.raw_s,
        "long_wall_s": measured.wall_s,
        "one_encoder_s": one.run.wall_s,
        "two_encoders_s": two.run.wall_s,
        "speedup": speedup,
        "spread_projection_s": spread_s,
        "projected_wall_s": projection.wall_s,
    }
    print(orjson.dumps(summary).decode())
    command = "python -m bench fanout" + (" --quick" if quick else "")
    for flag, value in (
        ("--lectures", args.lectures), ("--lecture-s", args.lecture_s), ("--long-s", args.long_s),
        ("--chunk-s", args.chunk_s), ("--scale-chunk-s", args.scale_chunk_s), ("--size", args.size),
    ):  # fmt: skip
        if value is not None:
            command += f" {flag} {value:g}" if isinstance(value, float) else f" {flag} {value}"
    if args.partitions != 4:
        command += f" --partitions {args.partitions}"
    return Section(
        "fanout",
        "Fan-out: a course over the encoder group",
        command,
        (
            Table(
                (
                    "course",
                    "bare ffmpeg ladder, one file after the other",
                    "PublishCourse → JobCompleted",
                    "ratio",
                    "tasks",
                    "where the time went",
                ),
                tuple(
                    (
                        o.label,
                        f"{o.raw_s:.2f} s",
                        f"{o.run.wall_s:.2f} s",
                        f"{o.ratio:.3f}",
                        o.course.describe(),
                        breakdown(o.run),
                    )
                    for o in (short_course, long_course)
                ),
            ),
            Table(
                (
                    f"1 × {long_s:g} s lecture at {scale_chunk_s} s chunks, COURSECAST_ENCODER_THREADS=1",
                    "PublishCourse → JobCompleted",
                    "tasks",
                ),
                (
                    ("1 encoder", f"{one.run.wall_s:.2f} s", one.describe()),
                    ("2 encoder processes", f"{two.run.wall_s:.2f} s", two.describe()),
                    (
                        "**projection**, not a measurement: 2 encoders, the 1-encoder run's tasks spread"
                        " as evenly as their lengths allow",
                        f"{spread_s:.2f} s (speedup {one.run.wall_s / spread_s:.2f})",
                        "plan + longest-first split of the task runs over 2 + stitch + half the hand-offs",
                    ),
                ),
            ),
            Table(
                ("1 × " + f"{long_s:g} s lecture, 1 encoder", "measured"),
                (
                    ("tasks per course", long_course.course.describe()),
                    (
                        "longest task (JobStarted → TaskCompleted)",
                        f"{longest.media}, {longest.span_s:g} s of lecture in {longest.run_s:.2f} s",
                    ),
                    ("plan (JobQueued → CoursePlanned)", f"{measured.plan_s:.2f} s"),
                    ("stitch (last TaskCompleted → JobCompleted)", f"{measured.stitch_s:.2f} s"),
                    (
                        f"**projection**, not a measurement: {projection_label(projection)}",
                        projection_figures(projection),
                    ),
                ),
            ),
        ),
        (
            Check(
                f"overhead, {short_course.label}",
                f"{short_course.ratio:.3f}",
                f"≤ {OVERHEAD_TARGET}",
                short_course.ratio <= OVERHEAD_TARGET,
            ),
            Check(
                f"overhead, {long_course.label}",
                f"{long_course.ratio:.3f}",
                f"≤ {OVERHEAD_TARGET}",
                long_course.ratio <= OVERHEAD_TARGET,
            ),
            Check(
                "speedup 2 encoders ÷ 1 (1 thread each)",
                f"{speedup:.2f}",
                f"≥ {SPEEDUP_TARGET}",
                speedup >= SPEEDUP_TARGET,
            ),
        ),
        f"{size} clips (testsrc2 + sine), chunks of {chunk_s} s ({scale_chunk_s} s for the scale-out),"
        f" preset {settings.encoder_x264_preset}, {args.partitions} partitions",
    )


def projection_label(p: Projection) -> str:
    """`2-hour lecture at 300 s chunks over 16 encoders`."""
    return f"{p.lecture_s / 3600:g}-hour lecture at {p.chunk_s} s chunks over {p.encoders} encoders"


def projection_figures(p: Projection) -> str:
    """`25 tasks, 2 wave(s) × longest task 300.0 s + plan 4.0 s + stitch 20.0 s = 628.0 s`."""
    return (
        f"{p.tasks} tasks, {p.waves} wave(s) × longest task {p.longest_task_s:.1f} s"
        f" + plan {p.plan_s:.1f} s + stitch {p.stitch_s:.1f} s = {p.wall_s:.1f} s"
    )


def describe_projection(p: Projection) -> str:
    """The projection in one line."""
    return f"{projection_label(p)}: {projection_figures(p)}"


if __name__ == "__main__":
    raise SystemExit(0 if main(sys.argv[1:]).met else 1)
