"""CourseCast: event-sourced publishing of lecture videos as adaptive HLS."""
