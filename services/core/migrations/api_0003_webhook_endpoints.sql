-- Webhook endpoints: where a user wants course.completed / course.failed / course.canceled POSTed.
-- Written by the api (POST/DELETE /v1/webhooks), read by the notifier before every delivery attempt,
-- so a deleted endpoint or a rotated secret takes effect at the next attempt.
--
-- The signing secret must be readable to sign with it (HMAC), so it is stored as issued, unlike API
-- tokens; the api shows it once, in the answer that creates or rotates it. During a rotation the
-- previous secret keeps signing too (a second v1= in the signature header) until it expires.
CREATE TABLE api_webhook_endpoints (
    endpoint_id                uuid PRIMARY KEY,
    owner                      text NOT NULL,
    url                        text NOT NULL CHECK (length(url) BETWEEN 1 AND 2048),
    events                     text[] NOT NULL CHECK (
        cardinality(events) >= 1
        AND events <@ ARRAY['course.completed', 'course.failed', 'course.canceled']::text[]
    ),
    secret                     text NOT NULL,
    previous_secret            text,
    previous_secret_expires_at timestamptz,
    created_at                 timestamptz NOT NULL DEFAULT now(),
    CHECK ((previous_secret IS NULL) = (previous_secret_expires_at IS NULL))
);
CREATE INDEX api_webhook_endpoints_by_owner ON api_webhook_endpoints (owner, created_at);
