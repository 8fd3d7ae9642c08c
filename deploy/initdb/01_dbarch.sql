-- dbarch's store lives beside Dagster's storage in the deployment's PostgreSQL.
CREATE DATABASE dbarch OWNER dagster;
