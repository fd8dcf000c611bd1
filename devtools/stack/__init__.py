"""The local development/CI stack: real Kafka, Postgres, S3 (moto) and ffmpeg on 127.0.0.1."""
