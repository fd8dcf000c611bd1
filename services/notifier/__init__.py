"""`coursecast notifier`: delivers course.completed / course.failed / course.canceled webhooks."""
