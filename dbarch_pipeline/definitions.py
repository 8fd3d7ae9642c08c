"""The one Definitions object of the dbarch code location."""

from __future__ import annotations

import os

import dagster as dg

from .defs.ask_assets import ASK_ASSETS
from .defs.assets import AUDIT_ASSETS
from .defs.pr_assets import PR_ASSETS
from .defs.schedules import capture_job, capture_schedule, weekly_audit_job, weekly_audit_schedule
from .defs.sensors import SENSORS
from .resources.audit_settings import AuditSettingsResource
from .resources.embedder import EmbedderResource
from .llm.gemini import GeminiResource
from .resources.github import GitHubResource
from .resources.postgres import SandboxDatabase, StoreDatabase, TargetDatabase


def default_resources() -> dict:
    """Every resource resolves its DSN when used (config > environment > embedded server)."""
    return {
        "target": TargetDatabase(),
        "sandbox": SandboxDatabase(),
        "store": StoreDatabase(),
        "embedder": EmbedderResource(),
        "audit_settings": AuditSettingsResource(),
        "github": GitHubResource(),
        "gemini": GeminiResource(),
    }


defs = dg.Definitions(
    assets=[*AUDIT_ASSETS, *PR_ASSETS, *ASK_ASSETS],
    jobs=[weekly_audit_job, capture_job],
    # A schedule's timezone is part of its definition, so it is read when the code location loads.
    schedules=[weekly_audit_schedule(os.environ.get("DBARCH_SCHEDULE_TIMEZONE", "UTC")), capture_schedule],
    sensors=SENSORS,
    resources=default_resources(),
)
