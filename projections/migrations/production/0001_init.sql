-- Shootings with their looks, and generations with status, progress and cost.
CREATE TABLE shootings (
    brand            text NOT NULL,
    shooting_id      text NOT NULL,
    name             text NOT NULL,
    status           text NOT NULL,
    defaults         jsonb NOT NULL,
    rules            jsonb NOT NULL,
    launch_number    integer NOT NULL DEFAULT 0,
    launched_looks   jsonb NOT NULL DEFAULT '[]',
    archived_reason  text,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    created_sequence bigint NOT NULL,
    version          bigint NOT NULL,
    last_sequence    bigint NOT NULL,
    PRIMARY KEY (brand, shooting_id)
);
CREATE INDEX shootings_by_brand ON shootings (brand, created_sequence);

CREATE TABLE looks (
    brand            text NOT NULL,
    look_id          text NOT NULL,
    shooting_id      text NOT NULL,
    name             text NOT NULL,
    products         jsonb NOT NULL,
    subject_id       text,
    style_id         text,
    guidelines       jsonb NOT NULL,
    shot_types       jsonb,
    removed          boolean NOT NULL DEFAULT false,
    removed_reason   text,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    created_sequence bigint NOT NULL,
    version          bigint NOT NULL,
    last_sequence    bigint NOT NULL,
    PRIMARY KEY (brand, look_id)
);
CREATE INDEX looks_by_brand ON looks (brand, created_sequence);
CREATE INDEX looks_by_shooting ON looks (brand, shooting_id, created_sequence);

CREATE TABLE generations (
    brand            text NOT NULL,
    generation_id    text NOT NULL,
    shooting_id      text NOT NULL,
    look_id          text NOT NULL,
    shot_type        text NOT NULL,
    variants         integer NOT NULL,
    status           text NOT NULL,
    attempt          integer NOT NULL DEFAULT 1,
    agent            text,
    steps_completed  integer NOT NULL DEFAULT 0,
    steps            jsonb NOT NULL DEFAULT '[]',
    cost_micros      bigint NOT NULL DEFAULT 0,
    prediction_ids   jsonb NOT NULL DEFAULT '[]',
    failure_reason   text,
    retryable        boolean,
    request          jsonb NOT NULL,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    created_sequence bigint NOT NULL,
    version          bigint NOT NULL,
    last_sequence    bigint NOT NULL,
    PRIMARY KEY (brand, generation_id)
);
CREATE INDEX generations_by_brand ON generations (brand, created_sequence);
CREATE INDEX generations_by_look ON generations (brand, look_id, created_sequence);
CREATE INDEX generations_by_shooting ON generations (brand, shooting_id, created_sequence);
