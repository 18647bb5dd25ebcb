-- 0007: what loading an artifact costs in memory, measured by the serving layer
-- at its first load and kept across restarts, per runtime (format and library
-- version: another ONNX Runtime may cost more or less).
CREATE TABLE artifact_costs (
    sha256      TEXT   NOT NULL,
    runtime     TEXT   NOT NULL,
    cost        BIGINT NOT NULL,
    measured_at BIGINT NOT NULL,
    PRIMARY KEY (sha256, runtime)
);
