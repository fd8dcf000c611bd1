"""A job's lane picks its partition; a course's tasks take the partitions in turn (services/core/lanes.py)."""

from __future__ import annotations

import zlib
from collections import Counter
from uuid import UUID, uuid4

from hypothesis import given
from hypothesis import strategies as st

from services.core.course_plan import LectureSource, plan_course
from services.core.lanes import crc32_suffix, in_lane, lane_of
from services.core.messages import job_key


def partition(job_id: UUID, partitions: int) -> int:
    """Where librdkafka's default partitioner (consistent_random: CRC-32 of the key) puts the job."""
    return zlib.crc32(job_key(job_id)) % partitions


@given(st.binary(max_size=64), st.integers(min_value=0, max_value=2**32 - 1))
def test_the_suffix_steers_the_crc_of_any_prefix_to_any_value(prefix: bytes, crc: int) -> None:
    suffix = crc32_suffix(prefix, crc)
    assert len(suffix) == 4
    assert zlib.crc32(prefix + suffix) == crc


@given(st.uuids(), st.integers(min_value=1, max_value=64))
def test_a_jobs_partition_is_its_lane_modulo_the_partition_count(job_id: UUID, partitions: int) -> None:
    assert partition(job_id, partitions) == lane_of(job_id) % partitions
    assert job_key(job_id).startswith(str(job_id).encode())


def test_in_lane_changes_only_the_last_32_bits() -> None:
    job_id = uuid4()
    moved = in_lane(job_id, 7)
    assert (lane_of(moved), moved.int >> 32) == (7, job_id.int >> 32)
    assert (moved.version, moved.variant) == (job_id.version, job_id.variant)
    assert lane_of(in_lane(job_id, 2**32 + 3)) == 3


def test_random_jobs_still_spread_over_the_partitions() -> None:
    counts = Counter(partition(uuid4(), 4) for _ in range(4000))
    assert set(counts) == {0, 1, 2, 3}
    assert min(counts.values()) > 800  # 1000 each expected; hashing, not a lane plan


@given(
    st.uuids(),
    st.lists(st.floats(min_value=1, max_value=7200), min_size=1, max_size=12),
    st.integers(min_value=1, max_value=16),
)
def test_a_courses_tasks_take_the_partitions_in_turn(
    course: UUID, durations: list[float], partitions: int
) -> None:
    lectures = [LectureSource(i, f"l{i}", d, f"videos/{i}.mp4") for i, d in enumerate(durations)]
    tasks = plan_course(course, lectures, chunk_s=300, segment_s=6).tasks
    where = [partition(task.task_id, partitions) for task in tasks]
    first = where[0]
    assert where == [(first + n) % partitions for n in range(len(tasks))]
    # So no partition holds more than one task more than another.
    counts = Counter(where)
    assert max(counts.values()) - min(counts.get(p, 0) for p in range(partitions)) <= 1
    assert len({task.task_id for task in tasks}) == len(tasks)


def test_a_twelve_minute_lecture_at_two_minute_chunks_splits_evenly_over_two_encoders() -> None:
    """The scale-out case of bench/fanout.py: 7 tasks on 4 partitions, two encoders holding two each."""
    lecture = LectureSource(0, "long", 720.0, "videos/0.mp4")
    tasks = plan_course(uuid4(), [lecture], chunk_s=120, segment_s=6).tasks
    assert [t.media for t in tasks] == ["audio"] + ["video"] * 6
    counts = Counter(partition(t.task_id, 4) for t in tasks)
    assert sorted(counts.values()) == [1, 2, 2, 2]
