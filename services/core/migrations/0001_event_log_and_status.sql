-- The projector's tables. Applied inside the target schema (search_path), so the same migration
-- builds the live schema and any replay schema an analyst asks for.

-- The log, mirrored: every decodable event of publish.job-events, in log order, exactly once.
CREATE TABLE job_events (
    event_id      uuid PRIMARY KEY,              -- a redelivered event can never be stored twice
    job_id        uuid        NOT NULL,
    attempt       integer     NOT NULL CHECK (attempt >= 1),
    type          text        NOT NULL,
    version       integer     NOT NULL,
    occurred_at   timestamptz NOT NULL,
    producer      text        NOT NULL,
    data          jsonb       NOT NULL,
    kafka_partition integer   NOT NULL,
    kafka_offset  bigint      NOT NULL,
    UNIQUE (kafka_partition, kafka_offset)
);
-- One job's events share a partition, so (partition, offset) is the job's order.
CREATE INDEX job_events_by_job ON job_events (job_id, kafka_partition, kafka_offset);
CREATE INDEX job_events_by_time ON job_events (occurred_at);

-- G4: the log is append-only, and the database itself refuses to rewrite it.
CREATE FUNCTION refuse_log_rewrite() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'job_events is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
CREATE TRIGGER job_events_append_only
    BEFORE UPDATE OR DELETE ON job_events
    FOR EACH ROW EXECUTE FUNCTION refuse_log_rewrite();
CREATE TRIGGER job_events_no_truncate
    BEFORE TRUNCATE ON job_events
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_log_rewrite();

-- The status table: a pure function of job_events (G4), written only by the projector.
CREATE TABLE publish_jobs (
    job_id           uuid PRIMARY KEY,
    owner            text        NOT NULL,
    course_name      text        NOT NULL,
    curriculum       text        NOT NULL,
    staging_prefix   text        NOT NULL,
    manifest_key     text        NOT NULL,
    video_count      integer     NOT NULL,
    status           text        NOT NULL
        CHECK (status IN ('queued', 'processing', 'completed', 'failed', 'canceled')),
    attempt          integer     NOT NULL CHECK (attempt >= 1),
    progress_percent double precision NOT NULL CHECK (progress_percent BETWEEN 0 AND 100),
    current_step     text,
    error_type       text,
    error_message    text,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    started_at       timestamptz,
    completed_at     timestamptz,
    failed_at        timestamptz,
    canceled_at      timestamptz,
    outputs          jsonb,
    last_event_id    uuid        NOT NULL REFERENCES job_events (event_id),
    -- The seed incident's row (failed, with completed_at set) is unrepresentable.
    CONSTRAINT completed_at_iff_completed CHECK ((status = 'completed') = (completed_at IS NOT NULL)),
    CONSTRAINT failed_at_iff_failed CHECK ((status = 'failed') = (failed_at IS NOT NULL)),
    CONSTRAINT canceled_at_iff_canceled CHECK ((status = 'canceled') = (canceled_at IS NOT NULL)),
    CONSTRAINT failure_has_a_reason CHECK (status <> 'failed' OR (error_type IS NOT NULL AND error_message IS NOT NULL))
);
CREATE INDEX publish_jobs_by_owner ON publish_jobs (owner, created_at DESC, job_id DESC);
CREATE INDEX publish_jobs_by_status ON publish_jobs (status, created_at DESC, job_id DESC);

-- Events the state machine refused: kept with the state they met and why, never applied.
CREATE TABLE rejected_events (
    event_id     uuid PRIMARY KEY REFERENCES job_events (event_id),
    job_id       uuid        NOT NULL,
    attempt      integer     NOT NULL,
    type         text        NOT NULL,
    occurred_at  timestamptz NOT NULL,
    rejection    text        NOT NULL
        CHECK (rejection IN ('TerminalState', 'StaleAttempt', 'UnknownJob', 'IllegalTransition')),
    reason       text        NOT NULL,
    met_status   text,
    met_attempt  integer
);
CREATE INDEX rejected_events_by_job ON rejected_events (job_id);

-- G3: the next offset to read per partition, written in the same transaction as the events it
-- covers. Kafka's committed offset is only a hint; this row is the truth a restarted projector seeks to.
CREATE TABLE projector_offsets (
    topic           text    NOT NULL,
    kafka_partition integer NOT NULL,
    next_offset     bigint  NOT NULL CHECK (next_offset >= 0),
    PRIMARY KEY (topic, kafka_partition)
);

-- Views for analysts.
CREATE VIEW job_timings AS
SELECT j.job_id,
       j.status,
       j.attempt,
       j.created_at,
       first_start.occurred_at - j.created_at AS time_in_queue,
       CASE WHEN j.status = 'completed' THEN j.completed_at - j.started_at END AS encode_duration,
       coalesce(j.completed_at, j.failed_at, j.canceled_at) - j.created_at AS time_to_end
FROM publish_jobs j
LEFT JOIN LATERAL (
    SELECT e.occurred_at FROM job_events e
    WHERE e.job_id = j.job_id AND e.type = 'JobStarted'
      AND NOT EXISTS (SELECT 1 FROM rejected_events r WHERE r.event_id = e.event_id)
    ORDER BY e.kafka_offset LIMIT 1
) first_start ON true;

CREATE VIEW daily_throughput AS
SELECT date_trunc('day', coalesce(completed_at, failed_at, canceled_at, created_at)) AS day,
       status,
       count(*) AS jobs
FROM publish_jobs
GROUP BY 1, 2;

CREATE VIEW failure_reasons AS
SELECT error_type, count(*) AS jobs, max(failed_at) AS last_seen
FROM publish_jobs
WHERE status = 'failed'
GROUP BY error_type;

CREATE VIEW attempts_per_job AS
SELECT attempt AS attempts, status, count(*) AS jobs
FROM publish_jobs
GROUP BY attempt, status;
