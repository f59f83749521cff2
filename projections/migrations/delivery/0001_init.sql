-- Exports with their renditions and deliveries.
CREATE TABLE exports (
    brand            text NOT NULL,
    export_id        text NOT NULL,
    channel          text NOT NULL,
    prediction_ids   jsonb NOT NULL,
    preset           jsonb NOT NULL,
    destination      jsonb NOT NULL,
    status           text NOT NULL,
    attempt          integer NOT NULL DEFAULT 1,
    failure_reason   text,
    retryable        boolean,
    delivered        integer NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    created_sequence bigint NOT NULL,
    version          bigint NOT NULL,
    last_sequence    bigint NOT NULL,
    PRIMARY KEY (brand, export_id)
);
CREATE INDEX exports_by_brand ON exports (brand, created_sequence);

CREATE TABLE export_renditions (
    brand            text NOT NULL,
    export_id        text NOT NULL,
    rendition_id     text NOT NULL,
    prediction_id    text NOT NULL,
    file_name        text NOT NULL,
    checksum         text NOT NULL,
    asset            jsonb NOT NULL,
    delivered        boolean NOT NULL DEFAULT false,
    location         jsonb,
    delivered_at     timestamptz,
    produced_at      timestamptz NOT NULL,
    created_sequence bigint NOT NULL,
    version          bigint NOT NULL,
    last_sequence    bigint NOT NULL,
    PRIMARY KEY (brand, export_id, rendition_id)
);
