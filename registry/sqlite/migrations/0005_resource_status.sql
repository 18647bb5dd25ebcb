-- 0005: what controllers observed of each resource (spec.Status), apart from
-- the resource row: writing it never changes resource_version or generation,
-- so a controller's status write never makes a user's apply fail with a
-- conflict. It is deleted with its resource (DeleteResource).
CREATE TABLE resource_status (
    kind                TEXT   NOT NULL,
    namespace           TEXT   NOT NULL,
    name                TEXT   NOT NULL,
    observed_generation BIGINT NOT NULL DEFAULT 0,
    -- JSON: a list of spec.Condition, and the kind's own fields.
    conditions          TEXT   NOT NULL DEFAULT '[]',
    details             TEXT   NOT NULL DEFAULT '{}',
    updated_at          BIGINT NOT NULL,
    PRIMARY KEY (kind, namespace, name)
);

-- managed_by names the GitSource that owns a resource ("gitsource/NAME"), ''
-- for one made by hand: prune deletes only what its source owns.
ALTER TABLE resources ADD COLUMN managed_by TEXT NOT NULL DEFAULT '';
-- applied_by is the identity that last applied it: a GitSource syncs as it.
ALTER TABLE resources ADD COLUMN applied_by TEXT NOT NULL DEFAULT '';
