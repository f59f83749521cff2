-- Catalog imports (the Import aggregate): one row per import with its
-- progress, and the per-row errors its batches reported (the error report).
CREATE TABLE imports (
    brand            text NOT NULL,
    import_id        text NOT NULL,
    format           text NOT NULL,
    file_name        text,
    catalog          jsonb NOT NULL,
    images_archive   jsonb,
    status           text NOT NULL,
    total_rows       integer NOT NULL,
    through_row      integer NOT NULL DEFAULT 0,
    created          integer NOT NULL DEFAULT 0,
    updated          integer NOT NULL DEFAULT 0,
    unchanged        integer NOT NULL DEFAULT 0,
    failed           integer NOT NULL DEFAULT 0,
    failure_reason   text,
    started_by       jsonb NOT NULL,
    started_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    finished_at      timestamptz,
    created_sequence bigint NOT NULL,
    version          bigint NOT NULL,
    last_sequence    bigint NOT NULL,
    PRIMARY KEY (brand, import_id)
);
CREATE INDEX imports_by_brand ON imports (brand, created_sequence);

CREATE TABLE import_errors (
    brand          text NOT NULL,
    import_id      text NOT NULL,
    event_sequence bigint NOT NULL,
    ordinal        integer NOT NULL,
    row_number     integer NOT NULL,
    sku            text,
    column_name    text NOT NULL,
    message        text NOT NULL,
    PRIMARY KEY (brand, import_id, event_sequence, ordinal)
);
CREATE INDEX import_errors_by_row ON import_errors (brand, import_id, row_number, event_sequence, ordinal);
