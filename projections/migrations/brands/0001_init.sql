-- Brands with their members, API clients (no secrets) and channel presets.
-- Tables are created unqualified: the runner sets the search_path to the
-- projection's schema (live or shadow).
CREATE TABLE brands (
    brand            text PRIMARY KEY,
    name             text NOT NULL,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    created_sequence bigint NOT NULL,
    version          bigint NOT NULL,
    last_sequence    bigint NOT NULL
);

CREATE TABLE members (
    brand            text NOT NULL,
    member_id        text NOT NULL,
    display_name     text NOT NULL,
    email            text NOT NULL,
    role             text NOT NULL,
    added_at         timestamptz NOT NULL,
    created_sequence bigint NOT NULL,
    version          bigint NOT NULL,
    last_sequence    bigint NOT NULL,
    PRIMARY KEY (brand, member_id)
);
CREATE INDEX members_by_brand ON members (brand, created_sequence);

CREATE TABLE api_clients (
    brand            text NOT NULL,
    api_client_id    text NOT NULL,
    name             text NOT NULL,
    role             text NOT NULL,
    key_fingerprint  text NOT NULL,
    revoked          boolean NOT NULL DEFAULT false,
    revoked_reason   text,
    registered_at    timestamptz NOT NULL,
    revoked_at       timestamptz,
    created_sequence bigint NOT NULL,
    version          bigint NOT NULL,
    last_sequence    bigint NOT NULL,
    PRIMARY KEY (brand, api_client_id)
);
CREATE INDEX api_clients_by_brand ON api_clients (brand, created_sequence);

CREATE TABLE channel_presets (
    brand            text NOT NULL,
    channel          text NOT NULL,
    preset_version   integer NOT NULL,
    spec             jsonb NOT NULL,
    defined_at       timestamptz NOT NULL,
    created_sequence bigint NOT NULL,
    version          bigint NOT NULL,
    last_sequence    bigint NOT NULL,
    PRIMARY KEY (brand, channel)
);
CREATE INDEX channel_presets_by_brand ON channel_presets (brand, created_sequence);
