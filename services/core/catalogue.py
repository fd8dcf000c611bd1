"""The published course (the catalogue read model): a pure fold of the log, as jobs.py is for publish_jobs.

What it folds, all of it from the log (G4):
- an accepted JobQueued: the course the job publishes (`course_id`), its owner, name, curriculum and
  lecture titles — a `CourseJob`;
- an accepted JobCompleted: the job's published videos; its course appears in the catalogue, or, for
  a later job of the same course (a re-encode), the course's lectures point at the new objects;
- CourseUnpublished: the course leaves the catalogue for good (its history stays in job_events).

The projector runs this very code (services/projector/catalogue.py) in the transaction that applies
the batch, so the catalogue and the status table never disagree, and `replay --rebuild` rebuilds it.

Every rule commutes. A course's jobs are keyed by their own ids, so they sit on different partitions,
and live reading and a replay may interleave those partitions differently; the catalogue is the same
for every interleaving that keeps each partition's order:
- the course's current publication is the completion with the greatest (completed_at, job_id);
- its `published_at` is its earliest completion;
- an unpublished course stays unpublished, whatever completions are read after its CourseUnpublished.
Within a partition the order is the log's: a job's JobQueued precedes its JobCompleted, and a course's
CourseUnpublished (keyed by the course id, the id of its first job) follows that job's completion.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Final
from uuid import UUID

from services.core.messages import Envelope, MessageType, carries
from services.core.payloads import CourseUnpublished, JobCompleted, JobQueued, QueuedLecture

__all__ = [
    "CATALOGUE_EVENTS",
    "CATALOGUE_INPUTS",
    "MAX_TITLE_CHARS",
    "Course",
    "CourseJob",
    "InMemoryCatalogue",
    "Lecture",
    "Unpublished",
    "default_title",
    "lecture_id",
]

CATALOGUE_EVENTS: Final[frozenset[MessageType]] = frozenset({MessageType.COURSE_UNPUBLISHED})
"""Events about a course, not a job: the job state machine never sees them (they would be rejected
as a TerminalState of the course's completed first job); the catalogue alone applies them."""

CATALOGUE_INPUTS: Final[frozenset[MessageType]] = CATALOGUE_EVENTS | {
    MessageType.JOB_QUEUED,
    MessageType.JOB_COMPLETED,
}
"""Every type the catalogue reads; job events among them count only once the state machine accepted them."""


def lecture_id(course_id: UUID, index: int) -> UUID:
    """A lecture's stable id: the same for every job that (re)publishes the course (pure)."""
    return uuid.uuid5(course_id, f"lecture/{index}")


MAX_TITLE_CHARS: Final = 200
"""The longest lecture title (JobQueued v2's schema)."""


def default_title(filename: str) -> str:
    """A lecture's title when none was given: the file's name without its extension, cut to
    MAX_TITLE_CHARS (pure)."""
    stem, dot, extension = filename.rpartition(".")
    title = stem.strip() if dot and stem.strip() and 0 < len(extension) <= 10 else filename
    return title if len(title) <= MAX_TITLE_CHARS else title[: MAX_TITLE_CHARS - 1] + "…"


@dataclass(frozen=True, slots=True)
class CourseJob:
    """A job as its JobQueued described the course it publishes."""

    job_id: UUID
    course_id: UUID
    owner: str
    course_name: str
    curriculum: str
    lectures: tuple[QueuedLecture, ...]

    @classmethod
    def of(cls, event: Envelope[JobQueued]) -> CourseJob:
        """The course data of a JobQueued."""
        data = event.data
        return cls(event.job_id, data.course_id, data.owner, data.course_name, data.curriculum, data.lectures)


@dataclass(frozen=True, slots=True)
class Lecture:
    """One published lecture: a row of `lectures`."""

    lecture_id: UUID
    index: int
    title: str
    filename: str | None
    duration_s: float
    master_playlist_url: str
    thumbnail_url: str
    poster_url: str | None


@dataclass(frozen=True, slots=True)
class Course:
    """One published course: a row of `courses` and its lectures, in order."""

    course_id: UUID
    owner: str
    name: str
    curriculum: str
    published_at: datetime  # its first completion
    updated_at: datetime  # the completion of the job its lectures come from
    job_id: UUID  # that job
    lectures: tuple[Lecture, ...]


@dataclass(frozen=True, slots=True)
class Unpublished:
    """A course taken down: it never comes back into the catalogue."""

    course_id: UUID
    unpublished_at: datetime
    requested_by: str


def published(job: CourseJob, event: Envelope[JobCompleted]) -> Course:
    """The course as a completed job publishes it (pure)."""
    titles = {lecture.index: lecture for lecture in job.lectures}
    # One lecture per video index (the first, should a malformed completion repeat one).
    videos = {v.video_index: v for v in reversed(event.data.outputs.videos)}
    lectures = []
    for video in sorted(videos.values(), key=lambda v: v.video_index):
        queued = titles.get(video.video_index)
        lectures.append(
            Lecture(
                lecture_id=lecture_id(job.course_id, video.video_index),
                index=video.video_index,
                title=queued.title if queued is not None else f"Lecture {video.video_index + 1}",
                filename=queued.filename if queued is not None else None,
                duration_s=video.duration_s,
                master_playlist_url=video.master_playlist_url,
                thumbnail_url=video.thumbnail_url,
                poster_url=video.poster_url,
            )
        )
    return Course(
        course_id=job.course_id,
        owner=job.owner,
        name=job.course_name,
        curriculum=job.curriculum,
        published_at=event.occurred_at,
        updated_at=event.occurred_at,
        job_id=job.job_id,
        lectures=tuple(lectures),
    )


def merge(current: Course | None, candidate: Course) -> Course:
    """The course after another completion of it: the latest publication wins, the first date stays (pure)."""
    if current is None:
        return candidate
    later = (candidate.updated_at, candidate.job_id) > (current.updated_at, current.job_id)
    newest = candidate if later else current
    return replace(newest, published_at=min(current.published_at, candidate.published_at))


@dataclass
class InMemoryCatalogue:
    """The catalogue folded in memory: the reference the Postgres projector must equal, and the code it
    runs on the rows a batch touches.

    `handle` takes events the job state machine accepted (JobQueued, JobCompleted) and catalogue
    events (CourseUnpublished), each once, in log order; anything else is ignored.
    """

    jobs: dict[UUID, CourseJob] = field(default_factory=dict)
    courses: dict[UUID, Course] = field(default_factory=dict)
    unpublished: dict[UUID, Unpublished] = field(default_factory=dict)

    def handle(self, event: Envelope) -> UUID | None:
        """Fold one event; returns the id of the course it changed, if any."""
        if carries(event, JobQueued):
            self.jobs[event.job_id] = CourseJob.of(event)
            return None
        if carries(event, JobCompleted):
            job = self.jobs.get(event.job_id)
            if job is None or job.course_id in self.unpublished:
                return None
            before = self.courses.get(job.course_id)
            after = merge(before, published(job, event))
            self.courses[job.course_id] = after
            return job.course_id if after != before else None
        if carries(event, CourseUnpublished):
            data = event.data
            if data.course_id not in self.unpublished:
                self.unpublished[data.course_id] = Unpublished(
                    data.course_id, event.occurred_at, data.requested_by
                )
            self.courses.pop(data.course_id, None)
            return data.course_id
        return None

    def handle_all(self, events: Iterable[Envelope]) -> InMemoryCatalogue:
        """Fold events in log order; returns self for chaining."""
        for event in events:
            self.handle(event)
        return self
