-- Member emails are sealed with the person's key (brand.member_added v2):
-- the row keeps the sealed form and queries open it with the privacy vault,
-- so forgetting a person changes no row. Plain addresses (v1 events) stay
-- in `email`.
ALTER TABLE members ALTER COLUMN email DROP NOT NULL;
ALTER TABLE members ADD COLUMN email_sealed jsonb;
