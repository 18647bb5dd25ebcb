-- 0001: models, versions and aliases.
-- Portable SQL: the same statements create the PostgreSQL schema. Times are unix
-- nanoseconds (BIGINT, UTC); maps and signatures are JSON in TEXT columns.
-- Names compare bytewise (SQLite BINARY; on PostgreSQL declare COLLATE "C") so
-- keyset pagination orders the same everywhere.

CREATE TABLE models (
    namespace      TEXT   NOT NULL,
    name           TEXT   NOT NULL,
    description    TEXT   NOT NULL DEFAULT '',
    labels         TEXT   NOT NULL DEFAULT '{}',
    serving        TEXT   NOT NULL DEFAULT '{}',
    -- latest_version is the highest version number ever assigned; it never goes
    -- down, so deleted numbers are not reused.
    latest_version BIGINT NOT NULL DEFAULT 0,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    PRIMARY KEY (namespace, name)
);

CREATE TABLE versions (
    namespace   TEXT   NOT NULL,
    model       TEXT   NOT NULL,
    version     BIGINT NOT NULL,
    format      TEXT   NOT NULL,
    sha256      TEXT   NOT NULL,
    size        BIGINT NOT NULL,
    signature   TEXT   NOT NULL DEFAULT '{}',
    description TEXT   NOT NULL DEFAULT '',
    source      TEXT   NOT NULL DEFAULT '',
    lineage     TEXT   NOT NULL DEFAULT '{}',
    serving     TEXT,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (namespace, model, version),
    FOREIGN KEY (namespace, model) REFERENCES models (namespace, name) ON DELETE CASCADE
);

CREATE TABLE aliases (
    namespace TEXT   NOT NULL,
    model     TEXT   NOT NULL,
    alias     TEXT   NOT NULL,
    version   BIGINT NOT NULL,
    PRIMARY KEY (namespace, model, alias),
    FOREIGN KEY (namespace, model, version) REFERENCES versions (namespace, model, version) ON DELETE CASCADE
);
