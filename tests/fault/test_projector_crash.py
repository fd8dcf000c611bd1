"""G3 under crashes: kill -9 a projector at chosen instants; after restart nothing is lost or doubled.

Also G3 under concurrency: two projector processes sharing a 6-partition log build the same table
as one process replaying it.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

from services.core.settings import Settings
from services.tools.synthetic import history
from tests.integration.projection_checks import assert_table_is_the_log
from tests.integration.projector_harness import isolated, produce, start_projector, stop, wait_caught_up


@pytest.fixture
def own(settings: Settings) -> Iterator[Settings]:
    # A short session timeout lets the group notice the killed member in seconds rather than 45 s.
    quick = settings.model_copy(update={"projector_batch_size": 100, "session_timeout_ms": 6000})
    with isolated(quick, partitions=3) as scoped:
        yield scoped


@pytest.mark.parametrize("point", ["projector.after_db_commit", "projector.mid_batch"])
def test_projector_killed_at_any_point_resumes_without_loss_or_duplicate(own: Settings, point: str) -> None:
    events = history(jobs=150, events_per_job=8, seed=11)
    produce(own, events)

    doomed = start_projector(own, COURSECAST_FAULT_POINT=f"{point}:3")
    assert doomed.wait(120) == -signal.SIGKILL, "the fault hook did not kill the projector"

    survivor = start_projector(own)
    try:
        wait_caught_up(own, timeout_s=120, processes=[survivor])
    finally:
        assert stop(survivor) == 0
    assert_table_is_the_log(own, events)


def test_two_projector_processes_build_the_table_one_process_rebuilds(settings: Settings) -> None:
    with isolated(settings, partitions=6) as own:
        events = history(jobs=500, events_per_job=20, seed=5)
        assert len(events) >= 10_000
        produce(own, events)
        first, second = start_projector(own), start_projector(own)
        try:
            wait_caught_up(own, timeout_s=240, processes=[first, second])
        finally:
            codes = stop(first), stop(second)
        assert codes == (0, 0)
        assert_table_is_the_log(own, events)
