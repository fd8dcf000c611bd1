"""Every fault point the code can reach is named in faults.POINTS, so each one has a crash test."""

from __future__ import annotations

import re
from pathlib import Path

from services.core import faults
from services.core.settings import PROJECT_ROOT

REACH = re.compile(r"""faults\.reach\(\s*["']([^"']+)["']\s*\)""")


def reached_points() -> set[str]:
    """The point named by every `faults.reach("...")` in the services' code."""
    names: set[str] = set()
    for path in Path(PROJECT_ROOT, "services").rglob("*.py"):
        names.update(REACH.findall(path.read_text(encoding="utf-8")))
    return names


def test_every_fault_point_in_the_code_is_registered_and_every_registered_point_is_in_the_code() -> None:
    assert reached_points() == set(faults.POINTS)


# Points whose crash test needs a scenario of its own (a cancel, the claim transaction's inside).
ENCODER_POINTS_TESTED_ELSEWHERE = {
    "encoder.final_events_acked": "test_a_crash_after_a_tasks_final_event_is_acknowledged_but_before",
    "encoder.cancel_acked": "test_a_crash_after_jobcanceled_is_acknowledged_but_before",
}


def test_every_encoder_fault_point_has_a_crash_test() -> None:
    from tests.fault.test_encoder_crash_points import ENCODER_POINTS

    elsewhere = Path(PROJECT_ROOT, "tests", "integration", "test_encoder_robustness.py").read_text("utf-8")
    for point, test_name in ENCODER_POINTS_TESTED_ELSEWHERE.items():
        assert test_name in elsewhere, point
        assert f'"{point}' in elsewhere, point
    encoder_points = {p for p in faults.POINTS if p.startswith("encoder.")}
    assert set(ENCODER_POINTS) | set(ENCODER_POINTS_TESTED_ELSEWHERE) == encoder_points
    assert not set(ENCODER_POINTS) & set(ENCODER_POINTS_TESTED_ELSEWHERE)


def test_every_projector_fault_point_has_a_crash_test() -> None:
    crash_tests = Path(PROJECT_ROOT, "tests", "fault").glob("test_projector*.py")
    text = "\n".join(path.read_text(encoding="utf-8") for path in crash_tests)
    for point in (p for p in faults.POINTS if p.startswith("projector.")):
        assert f'"{point}"' in text, point
