-- Platform admins: the persons an operator trusted with installation-wide
-- rights (today: creating brands, while `brand_creation` is
-- `platform_admins`, the default). Granted and revoked with
-- `gps admin grant-platform-admin` / `revoke-platform-admin`, never through
-- the HTTP API. Kept here, in the credentials store, beside the passwords:
-- like them it is operator-made state that the log does not hold.
--
-- `vault_person_id` is the sign-in address's person in the privacy vault at
-- the time of the grant: a grant counts only while `auth.passwords` still
-- holds that same person for the user id, so it ends with an erasure and
-- does not pass to someone else who later gets the same user id (a
-- credentials store kept across a new log).
CREATE TABLE platform_admins (
    user_id         text PRIMARY KEY,
    vault_person_id text NOT NULL,
    granted_by      text NOT NULL,
    granted_at      timestamptz NOT NULL DEFAULT now()
);
