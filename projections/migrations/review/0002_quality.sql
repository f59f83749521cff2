-- What the automatic quality gate measured, so reviewers see why a prediction
-- was flagged and can list the flagged ones. NULL when the workflow had no gate
-- (and for rows projected before this migration until the projection is rebuilt).
ALTER TABLE predictions ADD COLUMN quality jsonb;
ALTER TABLE predictions ADD COLUMN quality_passed boolean;
CREATE INDEX predictions_by_quality ON predictions (brand, quality_passed, created_sequence);
