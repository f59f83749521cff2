-- Compute task state of the compute agents (database gps_compute, owned by
-- gps-compute-agents; nothing else reads or writes it).

-- One row per attempt of a generation that an agent took on.
CREATE TABLE runs (
    brand_id      text        NOT NULL,
    generation_id text        NOT NULL,
    attempt       integer     NOT NULL,
    agent         text        NOT NULL,
    status        text        NOT NULL CHECK (status IN ('running', 'completed', 'failed', 'cancelled')),
    reason        text,
    started_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (brand_id, generation_id, attempt)
);

-- One row per workflow node (a step, or a step of one variant; variant -1 is
-- a whole-generation step). A remote job is recorded as 'submitted' with its
-- handle before the agent waits for it, so a redelivered generation polls the
-- same job instead of paying for a second one; 'completed' rows are reused as
-- they are.
CREATE TABLE steps (
    brand_id      text        NOT NULL,
    generation_id text        NOT NULL,
    attempt       integer     NOT NULL,
    step          text        NOT NULL,
    variant       integer     NOT NULL,
    status        text        NOT NULL CHECK (status IN ('submitted', 'completed')),
    provider      text        NOT NULL,
    model         text        NOT NULL,
    remote_job    jsonb,
    result        jsonb,
    cost_micros   bigint      NOT NULL DEFAULT 0,
    duration_ms   bigint      NOT NULL DEFAULT 0,
    tries         integer     NOT NULL DEFAULT 1,
    submitted_at  timestamptz NOT NULL DEFAULT now(),
    completed_at  timestamptz,
    PRIMARY KEY (brand_id, generation_id, attempt, step, variant)
);

-- Generations that kept failing with a retryable error until the consumer's
-- delivery limit: recorded here (and failed on the log) so they never block
-- the others; an operator retries them from here.
CREATE TABLE dead_letters (
    id              bigserial   PRIMARY KEY,
    brand_id        text        NOT NULL,
    generation_id   text        NOT NULL,
    attempt         integer     NOT NULL,
    stream_sequence bigint      NOT NULL,
    deliveries      bigint      NOT NULL,
    reason          text        NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (brand_id, generation_id, attempt)
);
