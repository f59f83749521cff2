-- Products with images, subjects with base images, styles (current version).
CREATE TABLE products (
    brand            text NOT NULL,
    product_id       text NOT NULL,
    sku              text NOT NULL,
    name             text NOT NULL,
    category         text NOT NULL,
    attributes       jsonb NOT NULL,
    archived         boolean NOT NULL DEFAULT false,
    archived_reason  text,
    image_count      integer NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    created_sequence bigint NOT NULL,
    version          bigint NOT NULL,
    last_sequence    bigint NOT NULL,
    PRIMARY KEY (brand, product_id)
);
CREATE INDEX products_by_brand ON products (brand, created_sequence);
CREATE INDEX products_by_category ON products (brand, category, created_sequence);

CREATE TABLE product_images (
    brand            text NOT NULL,
    product_id       text NOT NULL,
    image_id         text NOT NULL,
    view             text NOT NULL,
    content_hash     text NOT NULL,
    asset            jsonb NOT NULL,
    added_at         timestamptz NOT NULL,
    created_sequence bigint NOT NULL,
    version          bigint NOT NULL,
    last_sequence    bigint NOT NULL,
    PRIMARY KEY (brand, product_id, image_id)
);

CREATE TABLE subjects (
    brand            text NOT NULL,
    subject_id       text NOT NULL,
    name             text NOT NULL,
    description      text NOT NULL,
    retired          boolean NOT NULL DEFAULT false,
    retired_reason   text,
    image_count      integer NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    created_sequence bigint NOT NULL,
    version          bigint NOT NULL,
    last_sequence    bigint NOT NULL,
    PRIMARY KEY (brand, subject_id)
);
CREATE INDEX subjects_by_brand ON subjects (brand, created_sequence);

CREATE TABLE subject_images (
    brand            text NOT NULL,
    subject_id       text NOT NULL,
    image_id         text NOT NULL,
    pose             text NOT NULL,
    angle            text NOT NULL,
    content_hash     text NOT NULL,
    asset            jsonb NOT NULL,
    added_at         timestamptz NOT NULL,
    created_sequence bigint NOT NULL,
    version          bigint NOT NULL,
    last_sequence    bigint NOT NULL,
    PRIMARY KEY (brand, subject_id, image_id)
);

CREATE TABLE styles (
    brand            text NOT NULL,
    style_id         text NOT NULL,
    name             text NOT NULL,
    current_version  integer NOT NULL,
    definition       jsonb NOT NULL,
    archived         boolean NOT NULL DEFAULT false,
    archived_reason  text,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    created_sequence bigint NOT NULL,
    version          bigint NOT NULL,
    last_sequence    bigint NOT NULL,
    PRIMARY KEY (brand, style_id)
);
CREATE INDEX styles_by_brand ON styles (brand, created_sequence);
