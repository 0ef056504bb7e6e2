-- Revoked access tokens, by jti. Kept until the token would have expired
-- anyway; every replica of every service loads them and listens for more.
CREATE TABLE revoked_tokens (
    jti          text PRIMARY KEY,
    reason       text NOT NULL,
    revoked_by   text NOT NULL,
    revoked_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL
);
CREATE INDEX revoked_tokens_expiry ON revoked_tokens (expires_at);

-- DPoP proofs already used, by the receiving service's audience and jti:
-- a proof is single-use across all replicas of that service.
CREATE TABLE dpop_proofs (
    audience     text NOT NULL,
    jti          text NOT NULL,
    expires_at   timestamptz NOT NULL,
    PRIMARY KEY (audience, jti)
);
CREATE INDEX dpop_proofs_expiry ON dpop_proofs (expires_at);

-- Security decisions worth an administrator's attention: refusals of every
-- kind and revocations. Methods executed go to the logs only.
CREATE TABLE security_events (
    id             bigserial PRIMARY KEY,
    occurred_at    timestamptz NOT NULL DEFAULT now(),
    service        text NOT NULL,
    event          text NOT NULL,
    outcome        text NOT NULL,
    reason         text,
    principal      text,
    client_id      text,
    method         text,
    path           text,
    client_address text,
    jti_prefix     text,
    correlation_id text
);
CREATE INDEX security_events_recent ON security_events (occurred_at);
