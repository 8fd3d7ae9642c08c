"""Dagster resources: thin wrappers that hand plain modules their connections and settings."""
