-- The api's own tables. The api never writes publish_jobs, job_events or rejected_events: those are
-- the projector's. Applied inside the target schema (search_path).

CREATE TABLE api_users (
    user_id    uuid PRIMARY KEY,
    name       text NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 200),
    role       text NOT NULL CHECK (role IN ('instructor', 'admin')),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Only the SHA-256 of each token is stored; tokens have 256 bits of entropy, so a fast hash is safe.
CREATE TABLE api_tokens (
    token_hash  bytea PRIMARY KEY CHECK (length(token_hash) = 32),
    user_id     uuid NOT NULL REFERENCES api_users (user_id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
CREATE INDEX api_tokens_by_user ON api_tokens (user_id);

-- One row per POST /v1/courses that got as far as staging. `published_at` is set only after the Kafka
-- transaction carrying JobQueued + PublishCourse committed, so a published row is a job the log has:
-- GET shows it as queued until the projector's row exists (read-your-writes).
CREATE TABLE api_submissions (
    job_id          uuid PRIMARY KEY,
    owner           text NOT NULL,
    idempotency_key text CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    course_name     text NOT NULL,
    curriculum      text NOT NULL,
    video_count     integer NOT NULL CHECK (video_count >= 1),
    created_at      timestamptz NOT NULL DEFAULT now(),
    published_at    timestamptz,
    -- The same key from the same user always names the same job.
    UNIQUE (owner, idempotency_key)
);

-- Direct uploads: a presigned S3 multipart upload the client fills itself.
CREATE TABLE api_uploads (
    upload_id      uuid PRIMARY KEY,
    owner          text NOT NULL,
    kind           text NOT NULL CHECK (kind IN ('video', 'thumbnail')),
    filename       text NOT NULL,
    content_type   text NOT NULL,
    size_bytes     bigint NOT NULL CHECK (size_bytes >= 1),
    s3_key         text NOT NULL,
    s3_upload_id   text NOT NULL,
    part_bytes     bigint NOT NULL,
    state          text NOT NULL CHECK (state IN ('pending', 'completed', 'used', 'expired')),
    created_at     timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL,
    used_by_job    uuid
);
CREATE INDEX api_uploads_expiring ON api_uploads (expires_at) WHERE state IN ('pending', 'completed');
