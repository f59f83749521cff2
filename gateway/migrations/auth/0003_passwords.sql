-- Persons are events now (person.registered …, sealed email and name; the
-- `accounts` read model lists them). What the log must never hold stays
-- here, in the credentials store, which is NOT rebuilt from the log: back it
-- up (docs/operations.md).
--
-- The password hash of each person. `vault_person_id` is the privacy vault's
-- person of the sign-in address, so one address has one account.
CREATE TABLE passwords (
    user_id         text PRIMARY KEY,
    vault_person_id text NOT NULL UNIQUE,
    -- argon2id PHC string.
    password_hash   text NOT NULL,
    changed_at      timestamptz NOT NULL DEFAULT now()
);

-- Sessions belong to persons, who are no longer rows of `users`; `users`
-- only holds accounts not yet moved into the log (gateway::accounts::
-- migrate_legacy_users empties it), so sessions must not cascade with it.
ALTER TABLE sessions DROP CONSTRAINT IF EXISTS sessions_user_id_fkey;
