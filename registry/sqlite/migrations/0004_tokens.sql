-- 0004: API tokens (auth.Store). Portable SQL. Times are unix nanoseconds; NULL
-- means "not set" (never expires, not revoked, never used). Only the SHA-256 of
-- a token's secret is stored; the secret is shown once, when it is made.
CREATE TABLE tokens (
    id           TEXT    PRIMARY KEY,
    name         TEXT    NOT NULL DEFAULT '',
    role         TEXT    NOT NULL,
    scopes       TEXT    NOT NULL,            -- JSON array of namespaces or "*"
    secret_hash  TEXT    NOT NULL,
    bootstrap    INTEGER NOT NULL DEFAULT 0,  -- the server-made admin token
    rate_limit   TEXT,                        -- JSON auth.Limit, NULL: server default
    created_by   TEXT    NOT NULL DEFAULT '',
    created_at   BIGINT  NOT NULL,
    expires_at   BIGINT,
    revoked_at   BIGINT,
    last_used_at BIGINT
);
