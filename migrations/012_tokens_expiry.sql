-- API tokens may carry an expiry (null: until revoked). A token past it is refused like a revoked one.
ALTER TABLE api_tokens ADD COLUMN expires_at timestamptz;
