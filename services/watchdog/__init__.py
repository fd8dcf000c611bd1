"""The watchdog process: explicit JobStalled / JobTimedOut verdicts for silent or overlong attempts, and
the retry policy that follows a verdict."""
