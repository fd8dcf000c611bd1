-- Idempotency-Key reservations of POST /v1/courses. A key is reserved BEFORE the body is read, with a
-- lease the live request keeps renewing; the body's digest is recorded once it has been read; the
-- lease is cleared when the job is published, and from then on the key names that job for good.
-- A request that dies releases its key (deleted at once when it fails or its client goes away, or by
-- lease expiry when the process itself died), so a dead request never blocks its key forever.
CREATE TABLE api_idempotency_keys (
    owner            text NOT NULL,
    idempotency_key  text NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    method           text NOT NULL,
    path             text NOT NULL,
    job_id           uuid NOT NULL UNIQUE,
    body_sha256      bytea CHECK (length(body_sha256) = 32),
    lease_expires_at timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (owner, idempotency_key),
    -- A published key (no lease) always knows the body it was published with.
    CHECK (lease_expires_at IS NOT NULL OR body_sha256 IS NOT NULL)
);
