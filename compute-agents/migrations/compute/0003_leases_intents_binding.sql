-- One generation never runs twice at once, and a paid call is made once.

-- A run's lease: the copy of the generation that holds it (lease_owner, an
-- agent name and a per-delivery token) may call providers until lease_until
-- (the database's clock); it renews the lease while it works. A copy that
-- finds the lease expired takes it over and increments the fencing token, so
-- the copy it replaced fails its next check and stops without calling.
ALTER TABLE runs
    ADD COLUMN lease_owner text,
    ADD COLUMN lease_until timestamptz,
    ADD COLUMN fencing     bigint NOT NULL DEFAULT 0;

-- A node's intent is recorded before a call that is not idempotent ('intent',
-- with the provider); if the agent learns nothing about the call's outcome
-- (a timeout, a dropped connection, an unreadable answer, a crash before the
-- result is recorded), the node becomes 'unknown' with the reason and is not
-- called again by a redelivery: a person retries the generation.
ALTER TABLE steps DROP CONSTRAINT steps_status_check;
ALTER TABLE steps ADD CONSTRAINT steps_status_check
    CHECK (status IN ('intent', 'submitted', 'completed', 'unknown'));
ALTER TABLE steps ADD COLUMN reason text;

-- The event log this compute database belongs to (one row): the identity
-- token of the GPS_EVENTS stream (`gps_nats::identity`). An agent or
-- delivery worker refuses to start against another log.
CREATE TABLE log_binding (
    singleton  boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    log_token  text        NOT NULL,
    bound_at   timestamptz NOT NULL DEFAULT now()
);
