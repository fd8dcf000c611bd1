-- Events Postgres itself refused to store: a value out of a column's range, a character it cannot
-- hold, a violated constraint. The projector isolates such an event from its batch, records it here
-- in the same transaction as the offsets that pass it (G3), and moves on: one bad event never stops
-- the status table (G6). A refused event changes nothing; a replay refuses it again, identically.
-- It is keyed by its place on the log, and kept whole as JSON bytes, since the database could not
-- hold its values as columns.
CREATE TABLE refused_events (
    kafka_partition integer     NOT NULL,
    kafka_offset    bigint      NOT NULL,
    event_id        uuid        NOT NULL,
    job_id          uuid        NOT NULL,
    type            text        NOT NULL,
    sqlstate        text        NOT NULL,   -- the database's error code, e.g. 22003 numeric_value_out_of_range
    reason          text        NOT NULL,   -- the database's message (and detail)
    event           bytea       NOT NULL,   -- the envelope as the projector decoded it, JSON
    PRIMARY KEY (kafka_partition, kafka_offset)
);
CREATE INDEX refused_events_by_job ON refused_events (job_id);
