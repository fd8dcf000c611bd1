"""A job's lane: the number that picks its partition, so a course's tasks go round the partitions.

Every message of a job is keyed by the job (messages.job_key), so its messages share one partition
and keep their order. Which partition that is, librdkafka's default partitioner (consistent_random)
decides: CRC-32 of the key, modulo the topic's partition count. Hashing spreads many random jobs
evenly, but it spreads the few tasks of one course by chance: 7 tasks on 4 partitions often leave a
partition with 3 and another with none, and as each partition belongs to one encoder of the group,
one encoder then runs most of the course while another idles (docs/fan-out.md).

So a job has a lane, the last 32 bits of its id, and its key ends in four bytes chosen so that the
key's CRC-32 is exactly the lane. A job's partition is then its lane modulo the partition count, for
any count. A random id has a random lane, as before; the planner gives a course's tasks consecutive
lanes (course_plan.task_id_for), so they take the partitions in turn: n tasks on p partitions put
n // p or n // p + 1 on each.

The four bytes are found, not searched for: CRC-32 is linear, so the register after four more bytes
can be steered to any value (the reverse-table method of Stigge et al., "Reversing CRC", 2006).
"""

from __future__ import annotations

import zlib
from typing import Final
from uuid import UUID

LANE_BITS: Final = 32
LANE_MASK: Final = (1 << LANE_BITS) - 1
_POLYNOMIAL: Final = 0xEDB88320  # CRC-32 (IEEE 802.3), reflected: zlib's and librdkafka's


def _table() -> tuple[int, ...]:
    entries = []
    for byte in range(256):
        register = byte
        for _ in range(8):
            register = (register >> 1) ^ (_POLYNOMIAL if register & 1 else 0)
        entries.append(register)
    return tuple(entries)


_TABLE: Final = _table()
# The top byte of the 256 table entries is a permutation of 0..255: the entry is known by its top byte.
_BY_TOP_BYTE: Final = {entry >> 24: index for index, entry in enumerate(_TABLE)}


def lane_of(job_id: UUID) -> int:
    """The job's lane: the last 32 bits of its id."""
    return job_id.int & LANE_MASK


def in_lane(job_id: UUID, lane: int) -> UUID:
    """`job_id` with its last 32 bits replaced by `lane` (taken modulo 2^32)."""
    return UUID(int=(job_id.int & ~LANE_MASK) | (lane & LANE_MASK))


def crc32_suffix(prefix: bytes, crc: int) -> bytes:
    """The four bytes that, appended to `prefix`, make `zlib.crc32(prefix + suffix) == crc`."""
    # Walk back from the wanted register: each step's table entry is the one whose top byte matches.
    wanted = crc ^ 0xFFFFFFFF
    entries = []
    for _ in range(4):
        index = _BY_TOP_BYTE[wanted >> 24]
        entries.append(index)
        wanted = ((wanted ^ _TABLE[index]) << 8) & 0xFFFFFFFF
    # Walk forward from the register after the prefix, choosing each byte to hit that entry.
    register = zlib.crc32(prefix) ^ 0xFFFFFFFF
    suffix = bytearray()
    for index in reversed(entries):
        suffix.append((register ^ index) & 0xFF)
        register = (register >> 8) ^ _TABLE[index]
    return bytes(suffix)


def lane_key(job_id: UUID) -> bytes:
    """The job's Kafka key: its id as text, then four bytes that make the key's CRC-32 its lane."""
    text = str(job_id).encode("ascii")
    return text + crc32_suffix(text, lane_of(job_id))
