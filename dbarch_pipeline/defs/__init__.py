"""Dagster wiring: assets, checks, schedules. Thin; the logic lives in the plain modules."""
