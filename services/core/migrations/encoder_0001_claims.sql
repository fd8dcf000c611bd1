-- G1: one row per job says which attempt an encoder owns, and until when (the lease).
-- A claim is won by INSERT .. ON CONFLICT .. DO UPDATE .. WHERE, or a conditional UPDATE: the row
-- lock makes a second process re-check the condition against the winner's row, so it cannot win too.
CREATE TABLE encoder_claims (
    job_id           uuid PRIMARY KEY,
    -- The attempt being run, and the attempt of the command that started it (they differ after a
    -- takeover from a dead worker: the command of attempt N runs attempt N + 1).
    attempt          integer NOT NULL CHECK (attempt >= 1),
    origin_attempt   integer NOT NULL CHECK (origin_attempt >= 1 AND origin_attempt <= attempt),
    worker           text NOT NULL,
    state            text NOT NULL CHECK (state IN ('running', 'done')),
    -- True once JobStarted of this attempt is acknowledged by Kafka.
    started          boolean NOT NULL DEFAULT false,
    outcome          text,
    lease_expires_at timestamptz NOT NULL,
    claimed_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
