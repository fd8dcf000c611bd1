"""MPEG-TS continuity counters across stitched chunks, pure: summarise, plan the shifts, rewrite.

Every TS packet carries a 4-bit continuity_counter (low nibble of byte 3) per PID. ISO/IEC 13818-1
§2.4.3.3: it increments by one (mod 16) on each packet of the PID that carries a payload
(adaptation_field_control 01 or 11) and repeats the previous value on a packet without one (10:
adaptation field only, e.g. a PCR; 00 is reserved). Each chunk of a lecture is muxed by its own
ffmpeg, whose counters start at 0, so a stitched rendition jumps at every seam on every PID (video,
PAT, PMT, SDT); a demuxer reading straight through (ffmpeg's does) marks the packet there corrupt.
ffmpeg's mpegts muxer has no option to start its counters elsewhere (5.1: `ffmpeg -h muxer=mpegts`).

The fix, without re-encoding: add a constant per PID, mod 16, to the counter of EVERY packet of
that PID in a later part (a chunk, or one segment of it) — payload or not, so the relation inside
the part (a payload-less packet repeats the counter before it) is kept — such that the part's first
packet continues the previous parts' last one. Only that nibble changes; every other byte is kept.
The shift of part k depends only on small summaries of parts 0..k (per PID: first counter, whether
that first packet has a payload, last counter), so a stitcher can plan from summaries its chunk
encoders recorded, then rewrite each part on its own.

Re-running is harmless: summaries describe the bytes as they are, and a part that already continues
the parts before it gets a shift of 0 (see chunk_encode.write_stitched, which plans per segment, so a
rewrite interrupted between two segments is completed by the next run).

The null PID (0x1FFF) has no continuity and is never touched.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

PACKET_SIZE: Final = 188
SYNC_BYTE: Final = 0x47
NULL_PID: Final = 0x1FFF


class TsError(ValueError):
    """The bytes are not a 188-byte-aligned MPEG-TS stream (wrong length, or sync lost)."""


@dataclass(frozen=True, slots=True)
class PidCounters:
    """One PID's counters in a part: its first packet's counter, whether that packet carries a
    payload (then it must be the previous counter + 1; else equal to it), and the last counter."""

    first: int
    first_has_payload: bool
    last: int


# Per PID, for one part (a chunk's segments, or one segment): what planning needs to know of it.
Summary = Mapping[int, PidCounters]
# Per PID, the amount (0..15) added mod 16 to every counter of a part.
Shifts = Mapping[int, int]


@dataclass(frozen=True, slots=True)
class Break:
    """A packet whose counter does not continue its PID's previous packet."""

    packet: int  # index of the packet in the concatenation
    pid: int
    expected: int
    found: int


def _pid(data: bytes | bytearray, at: int) -> int:
    return ((data[at + 1] & 0x1F) << 8) | data[at + 2]


def _has_payload(data: bytes | bytearray, at: int) -> bool:
    return bool(data[at + 3] & 0x10)


def packet_offsets(data: bytes | bytearray) -> range:
    """The byte offsets of `data`'s packets; raises TsError unless `data` is whole 188-byte
    packets, each starting with the sync byte."""
    if len(data) % PACKET_SIZE:
        raise TsError(f"{len(data)} bytes is not a whole number of {PACKET_SIZE}-byte TS packets")
    offsets = range(0, len(data), PACKET_SIZE)
    for at in offsets:
        if data[at] != SYNC_BYTE:
            raise TsError(f"TS sync lost at byte {at} (packet {at // PACKET_SIZE})")
    return offsets


def _packets(parts: Iterable[bytes | bytearray]) -> Iterator[tuple[int, int, int, bool]]:
    """(index, pid, counter, has payload) of the packets of `parts` in order (index counts every
    packet of the concatenation), the null PID left out."""
    index = 0
    for data in parts:
        for at in packet_offsets(data):
            pid = _pid(data, at)
            if pid != NULL_PID:
                yield index, pid, data[at + 3] & 0x0F, _has_payload(data, at)
            index += 1


def summarize(*parts: bytes | bytearray) -> dict[int, PidCounters]:
    """The counters summary of the concatenation of `parts` (e.g. a chunk's segments in order)."""
    summary: dict[int, PidCounters] = {}
    for _, pid, counter, payload in _packets(parts):
        seen = summary.get(pid)
        if seen is None:
            summary[pid] = PidCounters(counter, payload, counter)
        else:
            summary[pid] = PidCounters(seen.first, seen.first_has_payload, counter)
    return summary


def plan_shifts(summaries: Sequence[Summary]) -> list[dict[int, int]]:
    """For each part in order, the shift per PID that makes it continue the parts before it as they
    will be once shifted (part 0 and a PID's first appearance: no shift). Pure; reads only the
    summaries. Only PIDs with a non-zero shift are listed."""
    last: dict[int, int] = {}  # per PID, the last counter so far, after shifting
    plans: list[dict[int, int]] = []
    for summary in summaries:
        shifts: dict[int, int] = {}
        for pid, counters in summary.items():
            shift = 0
            if pid in last:
                expected = (last[pid] + 1) % 16 if counters.first_has_payload else last[pid]
                shift = (expected - counters.first) % 16
            if shift:
                shifts[pid] = shift
            last[pid] = (counters.last + shift) % 16
        plans.append(shifts)
    return plans


def shift_counters(data: bytes | bytearray, shifts: Shifts) -> bytes:
    """`data` with `shifts[pid]` added (mod 16) to the counter of every packet of each listed PID;
    every other bit is kept. Raises TsError if `data` is not aligned TS (nothing is returned then)."""
    out = bytearray(data)
    offsets = packet_offsets(out)
    if not any(shifts.values()):
        return bytes(out)
    for at in offsets:
        pid = _pid(out, at)
        shift = shifts.get(pid, 0) if pid != NULL_PID else 0
        if shift:
            byte = out[at + 3]
            out[at + 3] = (byte & 0xF0) | ((byte + shift) & 0x0F)
    return bytes(out)


def breaks(parts: Iterable[bytes | bytearray]) -> list[Break]:
    """Every packet of the concatenation of `parts` whose counter does not continue its PID's
    previous packet (+1 with a payload, the same without). Strict: no allowance for duplicate
    packets or a discontinuity_indicator, which our encoder never writes."""
    last: dict[int, int] = {}
    found: list[Break] = []
    for index, pid, counter, payload in _packets(parts):
        if pid in last:
            expected = (last[pid] + 1) % 16 if payload else last[pid]
            if counter != expected:
                found.append(Break(index, pid, expected, counter))
        last[pid] = counter
    return found
