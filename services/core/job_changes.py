"""Job-change notifications in Postgres: the projector NOTIFYs, the api LISTENs.

The projector notifies on this channel, with the job id as payload, in the transaction that changes
the job's row, so a listener is told only of a change that committed (and after it committed). The
api's live streams and its read-your-writes waits re-read the row when told.
"""

from __future__ import annotations

from typing import Final

JOB_CHANGED_CHANNEL: Final = "job_changed"
