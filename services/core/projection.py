"""The reference projection: the job state machine folded over a log, in memory.

It is the executable meaning of "the status table is a pure function of the log" (G4): the Postgres
projector must agree with it event for event, and replay tests compare the two. It folds the
catalogue of published courses alongside (services/core/catalogue.py): from the job events the state
machine accepted, and from the catalogue's own events, which never reach the state machine.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from uuid import UUID

from services.core.catalogue import CATALOGUE_EVENTS, CATALOGUE_INPUTS, InMemoryCatalogue
from services.core.jobs import JobState, Rejection, apply
from services.core.messages import Envelope


@dataclass(frozen=True, slots=True)
class Applied:
    """The event moved its job to `state`."""

    state: JobState


@dataclass(frozen=True, slots=True)
class Duplicate:
    """The event was seen before (same event_id): a redelivery, a no-op rather than a rejection."""

    event_id: UUID


@dataclass(frozen=True, slots=True)
class Rejected:
    """The state machine refused the event; `met` is the state it found, unchanged."""

    event: Envelope
    rejection: Rejection
    met: JobState | None


@dataclass(frozen=True, slots=True)
class Catalogued:
    """A catalogue event (CourseUnpublished): applied to the catalogue, not to any job."""

    event_id: UUID


Handled = Applied | Duplicate | Rejected | Catalogued


@dataclass
class InMemoryJobProjection:
    """Jobs, rejections and seen event ids, built by applying events one at a time."""

    jobs: dict[UUID, JobState] = field(default_factory=dict)
    rejected: list[Rejected] = field(default_factory=list)
    seen: set[UUID] = field(default_factory=set)
    catalogue: InMemoryCatalogue = field(default_factory=InMemoryCatalogue)

    def handle(self, event: Envelope) -> Handled:
        """Apply one event exactly once; a repeated event_id changes nothing."""
        if event.event_id in self.seen:
            return Duplicate(event.event_id)
        self.seen.add(event.event_id)
        if event.type in CATALOGUE_EVENTS:
            self.catalogue.handle(event)
            return Catalogued(event.event_id)
        current = self.jobs.get(event.job_id)
        outcome = apply(current, event)
        if isinstance(outcome, Rejection):
            rejected = Rejected(event, outcome, current)
            self.rejected.append(rejected)
            return rejected
        self.jobs[event.job_id] = outcome
        if event.type in CATALOGUE_INPUTS:
            self.catalogue.handle(event)
        return Applied(outcome)

    def handle_all(self, events: Iterable[Envelope]) -> InMemoryJobProjection:
        """Apply events in log order; returns self for chaining."""
        for event in events:
            self.handle(event)
        return self
