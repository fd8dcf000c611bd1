-- The notifier's record of each notification it sends: one row per (event, endpoint), updated after
-- every attempt, so an operator sees what is pending, what was delivered and what was given up, with
-- the last HTTP status or error. A restarted notifier (or the next owner of a partition) resumes a
-- pending row where it stopped — same first attempt, same retry age — and never re-sends a
-- delivered or given-up one.
CREATE TABLE webhook_deliveries (
    event_id          uuid NOT NULL,
    endpoint_id       uuid NOT NULL,
    job_id            uuid NOT NULL,
    owner             text NOT NULL,
    notification_type text NOT NULL,
    url               text NOT NULL,
    state             text NOT NULL CHECK (state IN ('pending', 'delivered', 'given_up')),
    attempts          integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    first_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_attempt_at   timestamptz,
    next_attempt_at   timestamptz,
    last_status       integer,
    last_error        text,
    delivered_at      timestamptz,
    given_up_at       timestamptz,
    PRIMARY KEY (event_id, endpoint_id),
    CHECK ((state = 'delivered') = (delivered_at IS NOT NULL)),
    CHECK ((state = 'given_up') = (given_up_at IS NOT NULL))
);
CREATE INDEX webhook_deliveries_by_state ON webhook_deliveries (state, last_attempt_at);
CREATE INDEX webhook_deliveries_by_job ON webhook_deliveries (job_id);
