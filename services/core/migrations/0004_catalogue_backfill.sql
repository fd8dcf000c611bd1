-- The catalogue is a function of the whole log (G4). A schema migrated to 0003_catalogue over an
-- existing log started with an empty catalogue and only folded the events after the migration; the
-- projector's start rebuilds it from every stored event once, in one transaction, and records it
-- here (services/projector/catalogue.py: backfill). A new schema records an empty backfill.
CREATE TABLE catalogue_backfill (
    done_at timestamptz NOT NULL DEFAULT now(),
    events  bigint      NOT NULL CHECK (events >= 0)
);
