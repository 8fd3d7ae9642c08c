-- Existing indexes worth dropping (unused, duplicate, covered), found with each snapshot.
-- Reported with their evidence, never applied by dbarch.
CREATE TABLE IF NOT EXISTS dbarch.drop_recommendation (
    snapshot_id bigint NOT NULL REFERENCES dbarch.snapshot ON DELETE CASCADE,
    ddl         text   NOT NULL,
    kind        text   NOT NULL,
    table_name  text   NOT NULL,
    index_name  text   NOT NULL,
    size_bytes  bigint NOT NULL,
    reason      text   NOT NULL,
    evidence    jsonb  NOT NULL DEFAULT '{}',
    PRIMARY KEY (snapshot_id, ddl)
);
