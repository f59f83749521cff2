-- Secrets the delivery role uses (webhook signing secrets, S3 credentials),
-- sealed with AES-256-GCM under the configured secrets key. Never events.
CREATE TABLE delivery_secrets (
    brand       text NOT NULL,
    name        text NOT NULL,
    nonce       bytea NOT NULL,
    sealed      bytea NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (brand, name)
);
