-- Predictions with their review state, comments and revision requests.
CREATE TABLE predictions (
    brand            text NOT NULL,
    prediction_id    text NOT NULL,
    generation_id    text NOT NULL,
    look_id          text NOT NULL,
    shot_type        text NOT NULL,
    variant_index    integer NOT NULL,
    content_hash     text NOT NULL,
    asset            jsonb NOT NULL,
    provenance       jsonb NOT NULL,
    review_state     text NOT NULL,
    review_reason    text,
    reviewed_by      jsonb,
    reviewed_at      timestamptz,
    comment_count    integer NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    created_sequence bigint NOT NULL,
    version          bigint NOT NULL,
    last_sequence    bigint NOT NULL,
    PRIMARY KEY (brand, prediction_id)
);
CREATE INDEX predictions_by_brand ON predictions (brand, created_sequence);
CREATE INDEX predictions_by_state ON predictions (brand, review_state, created_sequence);
CREATE INDEX predictions_by_generation ON predictions (brand, generation_id, created_sequence);

CREATE TABLE prediction_comments (
    brand            text NOT NULL,
    prediction_id    text NOT NULL,
    comment_id       text NOT NULL,
    text             text NOT NULL,
    actor            jsonb NOT NULL,
    created_at       timestamptz NOT NULL,
    created_sequence bigint NOT NULL,
    version          bigint NOT NULL,
    last_sequence    bigint NOT NULL,
    PRIMARY KEY (brand, prediction_id, comment_id)
);

CREATE TABLE revision_requests (
    brand            text NOT NULL,
    prediction_id    text NOT NULL,
    comment          text NOT NULL,
    regions          jsonb NOT NULL,
    actor            jsonb NOT NULL,
    requested_at     timestamptz NOT NULL,
    created_sequence bigint NOT NULL,
    version          bigint NOT NULL,
    last_sequence    bigint NOT NULL,
    PRIMARY KEY (brand, prediction_id, created_sequence)
);
