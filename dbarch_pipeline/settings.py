"""Where dbarch keeps its files and which databases it talks to by default.

Everything is read when called, never at import time, so tests and the CLI can set the environment
first. Precedence everywhere: explicit resource config > environment variable > embedded default.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SQL_DIR = PROJECT_ROOT / "sql"

# Environment variables, one per connection role.
TARGET_DSN_ENV = "DBARCH_TARGET_DSN"
SANDBOX_DSN_ENV = "DBARCH_SANDBOX_DSN"
STORE_DSN_ENV = "DBARCH_STORE_DSN"
TARGET_NAME_ENV = "DBARCH_TARGET_NAME"
TARGETS_ENV = "DBARCH_TARGETS"  # more targets: name=dsn;name2=dsn2


def data_dir() -> Path:
    """Project-local data folder (`.dbarch/`), overridable with DBARCH_HOME."""
    return Path(os.environ.get("DBARCH_HOME") or PROJECT_ROOT / ".dbarch").resolve()


def env_dsn(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None
