-- What the brand's generation work cost, by calendar month (UTC, the month the
-- step completed in), shooting and provider: the usage and cost screens read
-- this instead of summing every generation's steps. Rows appear for steps
-- projected after this migration; rebuild the projection to count older ones.
CREATE TABLE usage_monthly (
    brand        text NOT NULL,
    month        date NOT NULL,
    shooting_id  text NOT NULL,
    provider     text NOT NULL,
    steps        bigint NOT NULL,
    cost_micros  bigint NOT NULL,
    duration_ms  bigint NOT NULL,
    PRIMARY KEY (brand, month, shooting_id, provider)
);
