-- One-time links that let a person choose their password: made when a
-- brand owner adds someone who has no password yet (a person GPS created
-- for the address), mailed to them, used once. Only the sha256 of the
-- 32-byte random token is kept, so a stolen table opens nothing; the token
-- itself is written only into the mail (gateway::invites, gateway::mail).
-- Like passwords, these live in the credentials store and never in the log.
CREATE TABLE password_tokens (
    token_hash  text PRIMARY KEY,
    user_id     text NOT NULL,
    -- What the token is for; today only 'set_password' (an invitation).
    purpose     text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    -- Set when the token was used, or ended because the person's password
    -- was set by another token or by an operator.
    used_at     timestamptz
);
CREATE INDEX password_tokens_by_user ON password_tokens (user_id) WHERE used_at IS NULL;
