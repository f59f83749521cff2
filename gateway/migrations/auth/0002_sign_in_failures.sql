-- Failed sign-ins per account (lower-cased email), to throttle password
-- guessing across every gateway. Rows older than a day are deleted as new
-- failures arrive.
CREATE TABLE sign_in_failures (
    email     text NOT NULL,
    failed_at timestamptz NOT NULL
);
CREATE INDEX sign_in_failures_by_email ON sign_in_failures (email, failed_at);
CREATE INDEX sign_in_failures_by_time ON sign_in_failures (failed_at);
