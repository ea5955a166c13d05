-- Console sign-in with the school's identity provider (OpenID Connect, issue 15 point 3). An
-- account the provider signs in is known by the provider's issuer and subject: stable for the
-- person, where an email address can be renamed or handed to a newcomer. Such an account holds no
-- password (its password_hash is a marker no password matches), so it cannot password-login.
ALTER TABLE users ADD COLUMN oidc_issuer text;
ALTER TABLE users ADD COLUMN oidc_subject text;
CREATE UNIQUE INDEX users_oidc_subject ON users (oidc_issuer, oidc_subject) WHERE oidc_subject IS NOT NULL;
