"""SQL migrations of the encoder's tables, applied by services.projector.migrations.migrate."""
