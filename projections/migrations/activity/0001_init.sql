-- The per-brand activity feed: one row per event.
CREATE TABLE activity (
    sequence          bigint PRIMARY KEY,
    brand             text NOT NULL,
    occurred_at       timestamptz NOT NULL,
    actor             jsonb NOT NULL,
    event_type        text NOT NULL,
    aggregate_type    text NOT NULL,
    aggregate_id      text NOT NULL,
    aggregate_version bigint NOT NULL,
    summary           text NOT NULL,
    correlation_id    text NOT NULL
);
CREATE INDEX activity_by_brand ON activity (brand, sequence DESC);
CREATE INDEX activity_by_aggregate ON activity (brand, aggregate_type, aggregate_id, sequence DESC);
