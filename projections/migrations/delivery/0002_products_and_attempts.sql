-- The products each rendition shows (tracking per product), and every attempt
-- to reach an export's destination.
ALTER TABLE export_renditions ADD COLUMN products jsonb NOT NULL DEFAULT '[]';
CREATE INDEX export_renditions_by_product ON export_renditions USING gin (products);

CREATE TABLE export_delivery_attempts (
    brand             text NOT NULL,
    export_id         text NOT NULL,
    number            integer NOT NULL,
    succeeded         boolean NOT NULL,
    detail            text NOT NULL,
    retry_in_seconds  bigint,
    attempted_at      timestamptz NOT NULL,
    created_sequence  bigint NOT NULL,
    PRIMARY KEY (brand, export_id, number)
);
