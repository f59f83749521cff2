-- Who can sign in, rebuilt from person events (gps.evt._platform.person.*).
-- Personal data stays sealed here as in the log; queries open it with the
-- privacy vault's keys, so an erased person (key destroyed) is unreadable
-- here too. Password hashes and sessions are not here: they live in the
-- credentials store, which is not rebuilt from the log.
CREATE TABLE users (
    user_id             text PRIMARY KEY,
    -- The vault person whose key seals the email and the display name.
    vault_person_id     text NOT NULL,
    email_sealed        jsonb,
    display_name_sealed jsonb,
    erased              boolean NOT NULL DEFAULT false,
    registered_at       timestamptz NOT NULL,
    password_changed_at timestamptz,
    registered_sequence bigint NOT NULL,
    version             bigint NOT NULL,
    last_sequence       bigint NOT NULL
);
CREATE INDEX users_by_vault_person ON users (vault_person_id);
