"""Shared kernel: settings, the message contract, the job state machine, Kafka and storage adapters."""
