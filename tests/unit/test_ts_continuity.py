"""TS continuity counters across stitched chunks (services/encoder/ts_continuity.py), pure."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.core.ts_continuity import (
    NULL_PID,
    PACKET_SIZE,
    Break,
    PidCounters,
    TsError,
    breaks,
    plan_shifts,
    shift_counters,
    summarize,
)
from services.encoder import chunk_encode

VIDEO, PAT, PMT = 0x100, 0x000, 0x1000
PAYLOAD, ADAPTATION_ONLY, BOTH = 0b01, 0b10, 0b11


def packet(pid: int, counter: int, control: int = PAYLOAD, fill: int = 0xAB) -> bytes:
    """One 188-byte TS packet: header, then (if the control says so) an adaptation field, then
    `fill` bytes standing for the payload."""
    header = bytes([0x47, (pid >> 8) & 0x1F, pid & 0xFF, (control << 4) | counter])
    body = bytes([fill]) * (PACKET_SIZE - 4)
    if control & 0b10:
        length = 183 if control == ADAPTATION_ONLY else 7
        body = bytes([length, 0x10]) + bytes([fill]) * (PACKET_SIZE - 6)
    return header + body


def mux(plan: list[tuple[int, int]], start: dict[int, int], fill: int = 0xAB) -> bytes:
    """Packets (pid, control) as a muxer writes them: per PID, +1 on a packet with a payload, the
    same counter without one, from `start[pid]` (the counter before the first packet)."""
    counters = dict(start)
    out = b""
    for pid, control in plan:
        if control & PAYLOAD and pid != NULL_PID:
            counters[pid] = (counters[pid] + 1) % 16
        out += packet(pid, counters.get(pid, 0), control, fill)
    return out


def counters(data: bytes) -> list[int]:
    return [data[at + 3] & 0x0F for at in range(0, len(data), PACKET_SIZE)]


def test_a_seam_where_every_pid_restarts_at_0_is_shifted_to_continue() -> None:
    # Two chunks of a rendition as ffmpeg writes them: each muxer's first packet has counter 0.
    first = mux([(PAT, PAYLOAD), (PMT, PAYLOAD)] + [(VIDEO, PAYLOAD)] * 10, {PAT: 15, PMT: 15, VIDEO: 15})
    second = mux([(PAT, PAYLOAD), (PMT, PAYLOAD)] + [(VIDEO, PAYLOAD)] * 3, {PAT: 15, PMT: 15, VIDEO: 15})
    assert breaks([first, second]) == [
        Break(12, PAT, 1, 0),
        Break(13, PMT, 1, 0),
        Break(14, VIDEO, 10, 0),
    ]
    plans = plan_shifts([summarize(first), summarize(second)])
    assert plans == [{}, {PAT: 1, PMT: 1, VIDEO: 10}]
    fixed = shift_counters(second, plans[1])
    assert counters(fixed) == [1, 1, 10, 11, 12]
    assert breaks([first, fixed]) == []


def test_a_part_opening_with_an_adaptation_only_packet_repeats_the_counter_before_it() -> None:
    # ffmpeg writes a PCR-only packet (no payload) with the counter it last used (15 before any).
    first = mux([(VIDEO, PAYLOAD)] * 4, {VIDEO: 15})  # 0..3
    second = mux([(VIDEO, ADAPTATION_ONLY), (VIDEO, BOTH), (VIDEO, PAYLOAD)], {VIDEO: 15})
    assert counters(second) == [15, 0, 1]
    assert summarize(second) == {VIDEO: PidCounters(first=15, first_has_payload=False, last=1)}
    (shifts,) = plan_shifts([summarize(first), summarize(second)])[1:]
    assert counters(shift_counters(second, shifts)) == [3, 4, 5]


def test_a_pid_new_in_a_later_part_and_the_null_pid_are_left_alone() -> None:
    first = mux([(VIDEO, PAYLOAD)], {VIDEO: 15})
    second = mux([(VIDEO, PAYLOAD), (0x101, PAYLOAD), (NULL_PID, PAYLOAD)], {VIDEO: 15, 0x101: 6})
    plans = plan_shifts([summarize(first), summarize(second)])
    assert plans == [{}, {VIDEO: 1}]
    assert NULL_PID not in summarize(second)
    fixed = shift_counters(second, {VIDEO: 1, NULL_PID: 5})
    assert counters(fixed) == [1, 7, 0]


def test_running_the_plan_again_on_shifted_parts_changes_nothing() -> None:
    parts = [mux([(VIDEO, PAYLOAD)] * n, {VIDEO: 15}) for n in (5, 7, 3)]
    shifted = [
        shift_counters(p, s) for p, s in zip(parts, plan_shifts([summarize(p) for p in parts]), strict=True)
    ]
    assert plan_shifts([summarize(p) for p in shifted]) == [{}, {}, {}]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (packet(VIDEO, 0)[:-1], "not a whole number"),
        (packet(VIDEO, 0) + b"\x00" + packet(VIDEO, 1)[1:], "sync lost at byte 188"),
        (b"\x47" * PACKET_SIZE * 2 + b"<html>" + bytes(182), "packet 2"),
    ],
)
def test_what_is_not_aligned_ts_is_refused(data: bytes, message: str) -> None:
    with pytest.raises(TsError, match=message):
        summarize(data)
    with pytest.raises(TsError, match=message):
        shift_counters(data, {VIDEO: 3})
    with pytest.raises(TsError, match=message):
        breaks([data])


# --- properties ----------------------------------------------------------------------------------

PIDS = [PAT, PMT, 0x11, VIDEO, 0x101, NULL_PID]
packets_plan = st.lists(
    st.tuples(st.sampled_from(PIDS), st.sampled_from([PAYLOAD, ADAPTATION_ONLY, BOTH])),
    min_size=1,
    max_size=40,
)


@st.composite
def chunks(draw: st.DrawFn) -> list[list[bytes]]:
    """Chunks of segments, each chunk muxed on its own from its own starting counters (as separate
    encoders would), its segments continuing one another; random payload bytes per chunk."""
    out: list[list[bytes]] = []
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        start = {pid: draw(st.integers(min_value=0, max_value=15)) for pid in PIDS}
        fill = draw(st.integers(min_value=0, max_value=255))
        plans = draw(st.lists(packets_plan, min_size=1, max_size=3))
        segments: list[bytes] = []
        for plan in plans:
            data = mux(plan, start, fill)
            for at in range(0, len(data), PACKET_SIZE):  # the next segment continues this one
                pid = (data[at + 1] & 0x1F) << 8 | data[at + 2]
                start[pid] = data[at + 3] & 0x0F
            segments.append(data)
        out.append(segments)
    return out


@given(chunks())
def test_shifting_as_planned_makes_every_pid_continuous_and_touches_only_the_counters(
    chunked: list[list[bytes]],
) -> None:
    # Planned from one small summary per chunk, as a stitcher would from its encoders' records.
    plans = plan_shifts([summarize(*segments) for segments in chunked])
    fixed = [
        [shift_counters(s, shifts) for s in segments] for segments, shifts in zip(chunked, plans, strict=True)
    ]
    everything = [s for segments in fixed for s in segments]
    assert breaks(everything) == []
    before = b"".join(s for segments in chunked for s in segments)
    after = b"".join(everything)
    assert len(after) == len(before)
    for at in range(0, len(before), PACKET_SIZE):
        old, new = before[at : at + PACKET_SIZE], after[at : at + PACKET_SIZE]
        # Everything but the counter nibble is kept, payload, flags and adaptation field alike.
        assert old[:3] == new[:3]
        assert old[4:] == new[4:]
        assert old[3] & 0xF0 == new[3] & 0xF0
        pid = (old[1] & 0x1F) << 8 | old[2]
        if pid == NULL_PID:
            assert old == new
    # One shift per PID per chunk, payload or not (a payload-less packet must keep repeating the
    # counter before it, so it moves with the rest), and the plan per segment agrees with it.
    per_segment = plan_shifts([summarize(s) for segments in chunked for s in segments])
    by_segment = [
        shift_counters(s, p) for s, p in zip([s for c in chunked for s in c], per_segment, strict=True)
    ]
    assert by_segment == everything
    # And planning again over the result finds nothing left to do.
    assert all(not shifts for shifts in plan_shifts([summarize(s) for s in everything]))


# --- on files: chunk_encode.make_counters_continuous ---------------------------------------------


def test_make_counters_continuous_rewrites_later_chunks_once_and_is_idempotent(tmp_path: Path) -> None:
    names = ["c00000_00000.ts", "c00000_00001.ts", "c00001_00000.ts", "c00001_00001.ts"]
    start = {PAT: 15, VIDEO: 15}
    first = mux([(PAT, PAYLOAD)] + [(VIDEO, PAYLOAD)] * 5, start)
    second = mux([(PAT, PAYLOAD)] + [(VIDEO, PAYLOAD)] * 5, {PAT: 0, VIDEO: 4})
    (tmp_path / names[0]).write_bytes(first)
    (tmp_path / names[1]).write_bytes(second)
    (tmp_path / names[2]).write_bytes(first)  # chunk 1 restarts at 0, like ffmpeg
    (tmp_path / names[3]).write_bytes(second)
    assert chunk_encode.make_counters_continuous(tmp_path, names) == 2
    assert breaks([(tmp_path / n).read_bytes() for n in names]) == []
    assert (tmp_path / names[0]).read_bytes() == first  # chunk 0 untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == names  # nothing left aside
    assert chunk_encode.make_counters_continuous(tmp_path, names) == 0


def test_make_counters_continuous_refuses_a_segment_that_is_not_ts(tmp_path: Path) -> None:
    (tmp_path / "a.ts").write_bytes(packet(VIDEO, 0))
    (tmp_path / "b.ts").write_bytes(b"<html>" + bytes(182))
    with pytest.raises(TsError, match="sync lost"):
        chunk_encode.make_counters_continuous(tmp_path, ["a.ts", "b.ts"])
    assert (tmp_path / "a.ts").read_bytes() == packet(VIDEO, 0)
