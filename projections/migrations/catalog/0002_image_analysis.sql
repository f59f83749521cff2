-- What ingest learned about an uploaded image (original, perceptual hash,
-- dominant colours); NULL for images added before ingest recorded it.
ALTER TABLE product_images ADD COLUMN analysis jsonb;
ALTER TABLE subject_images ADD COLUMN analysis jsonb;
CREATE INDEX product_images_by_brand ON product_images (brand);
CREATE INDEX subject_images_by_brand ON subject_images (brand);
