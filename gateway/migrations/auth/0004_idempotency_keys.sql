-- The first answer to each Idempotency-Key, so that a client retrying a
-- command (after a timeout, a dropped connection) gets that answer again,
-- and a key sent back with a different request is refused instead of
-- silently applied to it. Keys are scoped to the caller (`u:<member>` or
-- `k:<brand>:<api client>`) and kept for a day.
CREATE TABLE idempotency_keys (
    scope               text NOT NULL,
    idempotency_key     text NOT NULL,
    -- sha256 of the method, path, query and (canonical JSON) body.
    request_fingerprint text NOT NULL,
    -- "POST /api/v1/…", to say in a refusal what the key was first used for.
    first_request       text NOT NULL,
    -- NULL while the first request runs, or when its outcome is unknown (a
    -- 5xx, a crash): a retry of the same request then runs it again, which
    -- the log's command ids make safe.
    status              smallint,
    -- The JSON answer, without the one-time secrets it showed (an API key).
    body                jsonb,
    stream_sequence     bigint,
    created_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, idempotency_key)
);
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);
