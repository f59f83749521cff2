-- API clients have scopes (brand.api_client_registered gained an optional
-- `scopes`). NULL: registered before scopes existed, so the client has every
-- scope but `stream`.
ALTER TABLE api_clients ADD COLUMN scopes text[];
