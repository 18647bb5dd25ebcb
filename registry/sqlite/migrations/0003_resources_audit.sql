-- 0003: declarative resources (spec.ResourceStore) and the audit log (audit.Log).
-- Portable SQL except where marked. Times are unix nanoseconds (BIGINT, UTC);
-- labels, annotations and spec are JSON in TEXT columns.

-- resources holds what was last applied for each resource. resource_version
-- counts every stored change and is the optimistic-concurrency token;
-- generation counts spec changes and is set by the apply engine.
CREATE TABLE resources (
    kind             TEXT   NOT NULL,
    namespace        TEXT   NOT NULL,
    name             TEXT   NOT NULL,
    labels           TEXT   NOT NULL DEFAULT '{}',
    annotations      TEXT   NOT NULL DEFAULT '{}',
    spec             TEXT   NOT NULL DEFAULT '{}',
    generation       BIGINT NOT NULL DEFAULT 0,
    resource_version BIGINT NOT NULL,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    -- The key's order serves "list a kind in one namespace by name" and "list a
    -- kind in every namespace by namespace, then name" as range scans.
    PRIMARY KEY (kind, namespace, name)
);

-- audit_events is append-only: rows are inserted and read, never changed.
-- On PostgreSQL declare id as BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY.
CREATE TABLE audit_events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    time       BIGINT NOT NULL,
    actor      TEXT   NOT NULL DEFAULT '',
    source     TEXT   NOT NULL DEFAULT '',
    action     TEXT   NOT NULL,
    kind       TEXT   NOT NULL DEFAULT '',
    namespace  TEXT   NOT NULL DEFAULT '',
    name       TEXT   NOT NULL DEFAULT '',
    generation BIGINT NOT NULL DEFAULT 0,
    summary    TEXT   NOT NULL DEFAULT '',
    diff       TEXT   NOT NULL DEFAULT ''
);

-- Queries filter by namespace (the namespaced events endpoint), by kind and
-- name (one resource's history) and by time, and always page by id; each index
-- ends in id so the filtered rows come out already in order.
CREATE INDEX audit_events_namespace_idx ON audit_events (namespace, id);
CREATE INDEX audit_events_resource_idx ON audit_events (kind, namespace, name, id);
CREATE INDEX audit_events_time_idx ON audit_events (time);

-- SQLite syntax: a PostgreSQL store needs its own trigger function (or REVOKE
-- UPDATE, DELETE) to keep the log append-only. The third trigger closes
-- INSERT OR REPLACE, which deletes the old row without firing DELETE triggers.
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit log is append-only');
END;

CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit log is append-only');
END;

CREATE TRIGGER audit_events_no_replace BEFORE INSERT ON audit_events
WHEN NEW.id IN (SELECT id FROM audit_events)
BEGIN
    SELECT RAISE(ABORT, 'audit log is append-only');
END;
