-- Gateway-owned credentials: mutable state that is deliberately kept out of the
-- event log (password hashes and key hashes must never be replicated to every
-- consumer). Membership and roles are events on the Brand aggregate; these
-- tables only say who someone is.

CREATE TABLE users (
    -- Also the member id on every brand this person belongs to.
    user_id       TEXT PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE,
    display_name  TEXT NOT NULL,
    -- argon2id PHC string.
    password_hash TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE sessions (
    -- sha256 of the cookie value: a stolen table does not yield sessions.
    token_hash  TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    csrf_token  TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX sessions_by_user ON sessions (user_id);

CREATE TABLE api_keys (
    -- The public prefix of the key, e.g. gps_3f9a1c2e; also the fingerprint in
    -- the brand.api_client_registered event.
    key_prefix    TEXT PRIMARY KEY,
    brand         TEXT NOT NULL,
    api_client_id TEXT NOT NULL,
    -- sha256 of the whole key (keys are 256-bit random, so a fast hash is enough).
    secret_hash   TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at    TIMESTAMPTZ,
    UNIQUE (brand, api_client_id)
);
