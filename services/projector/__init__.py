"""Projector: the only writer of the status table, and the watchdog that judges silent jobs."""
