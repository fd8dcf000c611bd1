"""Which offset of each partition may be committed: just past the longest prefix of finished records.

Records are read in order but finish in any order (one notification retries while the ones behind it
are delivered). G3 for the notifier: a partition's committed offset never passes a record whose
notifications are not all delivered or given up, so a crash re-reads every unfinished one (at least
once). Pure bookkeeping, no Kafka.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass
class _Partition:
    unfinished: set[int] = field(default_factory=set)
    next_unread: int | None = None  # one past the highest offset read
    committed: int | None = None  # the last offset committed (or None before the first commit)

    def committable(self) -> int | None:
        if self.next_unread is None:
            return None
        return min(self.unfinished) if self.unfinished else self.next_unread


class OffsetBook:
    """The records read and finished, per partition of one topic."""

    def __init__(self) -> None:
        self._partitions: dict[int, _Partition] = {}

    def read(self, partition: int, offset: int) -> None:
        """A record was read; it is unfinished until `finish`."""
        state = self._partitions.setdefault(partition, _Partition())
        state.unfinished.add(offset)
        state.next_unread = max(state.next_unread or 0, offset + 1)

    def finish(self, partition: int, offset: int) -> None:
        """Everything the record asked for is done (or given up)."""
        state = self._partitions.get(partition)
        if state is not None:
            state.unfinished.discard(offset)

    def to_commit(self) -> dict[int, int]:
        """Partition -> offset to commit, for each partition whose committable offset moved."""
        moved: dict[int, int] = {}
        for partition, state in self._partitions.items():
            offset = state.committable()
            if offset is not None and offset != state.committed:
                moved[partition] = offset
        return moved

    def committed(self, partition: int, offset: int) -> None:
        """Kafka took `offset` as the partition's committed offset."""
        state = self._partitions.get(partition)
        if state is not None:
            state.committed = offset

    def forget(self, partitions: Iterable[int]) -> None:
        """The partitions were revoked: their next owner starts from their committed offsets."""
        for partition in partitions:
            self._partitions.pop(partition, None)

    def unfinished(self) -> int:
        """How many records are unfinished, over every partition."""
        return sum(len(state.unfinished) for state in self._partitions.values())
