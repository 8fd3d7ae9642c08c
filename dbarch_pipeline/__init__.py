"""dbarch: an AI database architect for PostgreSQL, as a Dagster project."""

__version__ = "0.1.0"
