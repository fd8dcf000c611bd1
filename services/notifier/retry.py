"""When to try a failed delivery again, and when to give it up (pure).

Exponential back-off with jitter: the n-th retry waits between half and all of
`min(max, base * 2^(n-1))`, so receivers recovering from an outage are not hit by every notifier at
the same instant, and no wait is ever longer than `max`. A delivery whose next attempt would start
more than `max_age` after its first is given up instead: explicitly, recorded and logged.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime, timedelta


def retry_delay(
    attempts: int, base_s: float, max_s: float, draw: Callable[[], float] = random.random
) -> float:
    """Seconds to wait after the `attempts`-th failed attempt (attempts >= 1)."""
    ceiling = min(max_s, base_s * 2.0 ** min(attempts - 1, 62))
    return ceiling / 2 + ceiling / 2 * draw()


def gives_up(first_attempt_at: datetime, next_attempt_at: datetime, max_age_s: float) -> bool:
    """True when an attempt at `next_attempt_at` would be past the delivery's retry age."""
    return next_attempt_at - first_attempt_at > timedelta(seconds=max_age_s)
