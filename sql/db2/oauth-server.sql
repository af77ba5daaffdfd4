-- caddy-oauth2 SQL store schema, version 5, for IBM Db2 for Linux, UNIX and Windows 11.1+.
--
-- Apply once:  db2 -tvf oauth-server.sql (after db2 connect to DATABASE)
-- or let the store do it with the create_schema option. Tables carry the
-- prefix oauth_; for another table_prefix replace it throughout.
--
-- Keys are the hex HMAC-SHA256 of codes and tokens, never the raw values.
-- Times are milliseconds since the Unix epoch, UTC. Expired rows are deleted
-- in batches by the expires_at index.
--
-- Lengths are in characters (CODEUNITS32), as on the other systems, so the
-- database must be a Unicode one (the default since Db2 9.7). A code row may
-- then reach about 31.5 KB (4 bytes a character), past a 4 KB page: this
-- needs extended row size (EXTENDED_ROW_SZ, on by default since 10.5) or a
-- tablespace with 32 KB pages.

CREATE TABLE oauth_schema_version (
  version INTEGER NOT NULL PRIMARY KEY
);

-- jkt is the RFC 7638 thumbprint of the DPoP key (RFC 9449) a code or token
-- is bound to; oidc is the OpenID Connect state of the grant (nonce,
-- auth_time, sid, released claims) as a JSON object. Both NULL for none;
-- added in version 5.
CREATE TABLE oauth_codes (
  code_key CHAR(64) NOT NULL PRIMARY KEY,
  client_id VARCHAR(255 CODEUNITS32),
  subject VARCHAR(255 CODEUNITS32),
  redirect_uri VARCHAR(2048 CODEUNITS32),
  scope VARCHAR(1024 CODEUNITS32),
  code_challenge VARCHAR(128 CODEUNITS32),
  code_challenge_method VARCHAR(16 CODEUNITS32),
  family VARCHAR(128 CODEUNITS32),
  audience VARCHAR(4000 CODEUNITS32),
  jkt VARCHAR(128 CODEUNITS32),
  oidc CLOB(1M),
  issued_at BIGINT NOT NULL,
  expires_at BIGINT NOT NULL,
  used SMALLINT DEFAULT 0 NOT NULL
);

CREATE INDEX oauth_codes_exp_idx ON oauth_codes (expires_at);
CREATE INDEX oauth_codes_sub_idx ON oauth_codes (subject);
CREATE INDEX oauth_codes_cli_idx ON oauth_codes (client_id);

CREATE TABLE oauth_access_tokens (
  token_key CHAR(64) NOT NULL PRIMARY KEY,
  client_id VARCHAR(255 CODEUNITS32),
  subject VARCHAR(255 CODEUNITS32),
  scope VARCHAR(1024 CODEUNITS32),
  family VARCHAR(128 CODEUNITS32),
  audience VARCHAR(4000 CODEUNITS32),
  jkt VARCHAR(128 CODEUNITS32),
  oidc CLOB(1M),
  issued_at BIGINT NOT NULL,
  expires_at BIGINT NOT NULL
);

CREATE INDEX oauth_at_exp_idx ON oauth_access_tokens (expires_at);
CREATE INDEX oauth_at_fam_idx ON oauth_access_tokens (family);
CREATE INDEX oauth_at_sub_idx ON oauth_access_tokens (subject);
CREATE INDEX oauth_at_cli_idx ON oauth_access_tokens (client_id);

CREATE TABLE oauth_refresh_tokens (
  token_key CHAR(64) NOT NULL PRIMARY KEY,
  client_id VARCHAR(255 CODEUNITS32),
  subject VARCHAR(255 CODEUNITS32),
  scope VARCHAR(1024 CODEUNITS32),
  family VARCHAR(128 CODEUNITS32),
  audience VARCHAR(4000 CODEUNITS32),
  jkt VARCHAR(128 CODEUNITS32),
  oidc CLOB(1M),
  issued_at BIGINT NOT NULL,
  expires_at BIGINT NOT NULL,
  used SMALLINT DEFAULT 0 NOT NULL
);

CREATE INDEX oauth_rt_exp_idx ON oauth_refresh_tokens (expires_at);
CREATE INDEX oauth_rt_fam_idx ON oauth_refresh_tokens (family);
CREATE INDEX oauth_rt_sub_idx ON oauth_refresh_tokens (subject);
CREATE INDEX oauth_rt_cli_idx ON oauth_refresh_tokens (client_id);

-- A revoked grant family (a replayed code or refresh token, a revoked refresh
-- token): tokens inserted into it before expires_at are refused. Added in
-- version 2.
CREATE TABLE oauth_revoked_families (
  family VARCHAR(128 CODEUNITS32) NOT NULL PRIMARY KEY,
  expires_at BIGINT NOT NULL
);

CREATE INDEX oauth_rf_exp_idx ON oauth_revoked_families (expires_at);

-- JWT signing keys the gateways generate (access_token_format jwt without
-- signing_key files), shared by every gateway. sealed is the private key,
-- AES-256-GCM encrypted under a key derived from the token_secret, base64
-- encoded. Added in version 3.
CREATE TABLE oauth_signing_keys (
  key_id VARCHAR(64 CODEUNITS32) NOT NULL PRIMARY KEY,
  sealed VARCHAR(1024 CODEUNITS32) NOT NULL,
  created_at BIGINT NOT NULL,
  expires_at BIGINT NOT NULL
);

-- Clients registered at runtime (the admin API, RFC 7591 dynamic
-- registration), shared by every gateway. Secrets and the registration
-- access token are kept only as hashes (bcrypt, and the token's HMAC key).
-- Lists are JSON arrays of strings (NULL for none); metadata is the rest of
-- the client's RFC 7591 metadata, a JSON object. expires_at is NULL for a
-- client that never lapses; lapsed ones are purged. Added in version 4.
CREATE TABLE oauth_clients (
  client_id VARCHAR(255 CODEUNITS32) NOT NULL PRIMARY KEY,
  registered_by VARCHAR(16 CODEUNITS32) NOT NULL,
  secret_hash VARCHAR(255 CODEUNITS32),
  previous_secret_hash VARCHAR(255 CODEUNITS32),
  previous_secret_expires_at BIGINT,
  redirect_uris CLOB(1M),
  grant_types CLOB(1M),
  scopes CLOB(1M),
  resources CLOB(1M),
  skip_consent SMALLINT DEFAULT 0 NOT NULL,
  introspect SMALLINT DEFAULT 0 NOT NULL,
  client_name VARCHAR(1024 CODEUNITS32),
  logo_uri VARCHAR(2048 CODEUNITS32),
  registration_token_key VARCHAR(128 CODEUNITS32),
  metadata CLOB(1M),
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL,
  expires_at BIGINT
);

CREATE INDEX oauth_clients_exp_idx ON oauth_clients (expires_at);
CREATE INDEX oauth_clients_rat_idx ON oauth_clients (registration_token_key);

-- Single-use values shared by every gateway: pushed authorization requests
-- (RFC 9126 request_uri) and client assertion jti (RFC 7523), taken or
-- seen once. once_key is the hex SHA-256 of the caller's key; once_value is
-- the value, base64 encoded (NULL for empty); used is set once taken.
-- Expired rows are purged. Added in version 5.
CREATE TABLE oauth_single_use (
  once_key CHAR(64) NOT NULL PRIMARY KEY,
  once_value CLOB(64K),
  used SMALLINT DEFAULT 0 NOT NULL,
  expires_at BIGINT NOT NULL
);

CREATE INDEX oauth_single_use_exp_idx ON oauth_single_use (expires_at);

CREATE TABLE oauth_purge_lease (
  name VARCHAR(64 CODEUNITS32) NOT NULL PRIMARY KEY,
  holder VARCHAR(128 CODEUNITS32) NOT NULL,
  lease_until BIGINT NOT NULL
);

INSERT INTO oauth_purge_lease (name, holder, lease_until) VALUES ('purge', 'none', 0);
INSERT INTO oauth_schema_version (version) VALUES (5);

-- Revocation feed (any schema version): what each gateway revoked, for the
-- others to evict from their validation caches within a second (README,
-- "Running several gateways"). Gateways poll it by created_at and delete
-- rows older than ten minutes. event_key is a token's HMAC key, a family or
-- a subject, never a raw token. create_schema adds it to an existing schema.

CREATE TABLE oauth_revocations (
  event_id CHAR(32) NOT NULL PRIMARY KEY,
  event_kind SMALLINT NOT NULL,
  event_key VARCHAR(255 CODEUNITS32),
  client_id VARCHAR(255 CODEUNITS32),
  created_at BIGINT NOT NULL
);

CREATE INDEX oauth_revocations_at_idx ON oauth_revocations (created_at);
