-- 0002: indexes for the lookups 0001 left to table scans.
-- BlobRefs / ReferencedBlobs and blob GC look versions up by artifact digest.
CREATE INDEX versions_sha256_idx ON versions (sha256);
-- Deleting a version finds the aliases pointing at it (and the alias foreign key
-- needs an index on its referencing columns to cascade without a scan).
CREATE INDEX aliases_version_idx ON aliases (namespace, model, version);
