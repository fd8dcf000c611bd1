"""Encoder: the consumer group that turns PublishCourse commands into HLS and job events."""
