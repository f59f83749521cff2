-- Failed sign-ins are counted per account *and source address*, and per
-- source address: a guesser is slowed down on every account it tries and
-- across accounts, while the account's owner, signing in from elsewhere, is
-- never locked out by someone else's guesses. Rows from before this change
-- have no source; they age out within a day.
ALTER TABLE sign_in_failures ADD COLUMN source text NOT NULL DEFAULT '';
CREATE INDEX sign_in_failures_by_source ON sign_in_failures (source, failed_at);
