"""Where pull requests go: GitHub (or GitHub Enterprise) with a token, a local git repository without.

Everything is resolved when the asset runs, never at import time: a field left empty falls back to
its environment variable (GITHUB_TOKEN, GITHUB_REPOSITORY, GITHUB_API_URL, DBARCH_PR_REPO), then to
the default. The token is kept out of reprs, metadata, logs and error messages; to keep it out of the
Dagster UI's resource config too, leave `token` empty (the environment is read at run time) or bind
it with dg.EnvVar("GITHUB_TOKEN"), which the UI shows by name only.
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
from pydantic import Field, SecretStr

from ..errors import DbarchError
from ..prs.migrations import MigrationLayout
from ..prs.publish import DEFAULT_LABELS, GitHubPublisher, LocalGitPublisher, PublishSettings, Publisher
from ..settings import data_dir

TOKEN_ENV = "GITHUB_TOKEN"
REPOSITORY_ENV = "GITHUB_REPOSITORY"
API_URL_ENV = "GITHUB_API_URL"
LOCAL_REPO_ENV = "DBARCH_PR_REPO"
PUBLIC_API_URL = "https://api.github.com"


class GitHubResource(dg.ConfigurableResource):
    """Pull requests for proven recommendations: where they go, what they contain, which qualify."""

    token: str = Field(default="", repr=False,
                       description="GitHub token; empty means $GITHUB_TOKEN at run time. Without one, pull "
                                   "requests are prepared in a local git repository instead.")
    repository: str = Field(default="", description="owner/name; empty means $GITHUB_REPOSITORY.")
    base_url: str = Field(default="", description="API base URL; empty means $GITHUB_API_URL, else "
                                                  "https://api.github.com (Enterprise: https://HOST/api/v3).")
    base_branch: str = Field(default="", description="Branch pull requests target; empty means the "
                                                     "repository's default branch.")
    migrations_dir: str = Field(default="", description="Folder of migrations in the repository; empty means "
                                                        "the template's default (migrations, alembic/versions, "
                                                        "prisma/migrations).")
    filename_template: str = Field(default="", description="File name (prisma: folder name) with placeholders "
                                                           "{timestamp} {fingerprint} {index_name} {schema} "
                                                           "{table} {revision} {direction}; empty means the "
                                                           "template's default.")
    template: str = Field(default="sql", description="sql (up/down files), alembic or prisma.")
    labels: list[str] = Field(default=list(DEFAULT_LABELS), description="Labels added to each pull request.")
    per: str = Field(default="recommendation", description="One pull request per recommendation or per table.")
    min_confidence: float = Field(default=0.8, description="Only recommendations with a confidence above this.")
    min_gain_pct: float = Field(default=10.0, description="Only recommendations with at least this measured gain.")
    branch_prefix: str = "dbarch/"
    draft: bool = False
    local_repo_path: str = Field(default="", description="Local repository used without a token; empty means "
                                                         "$DBARCH_PR_REPO, else <data dir>/pr_repo.")
    timeout_s: int = 15
    max_rate_limit_wait_s: float = Field(default=60.0, description="Wait at most this long for a rate limit to "
                                                                   "reset before failing with a clear error.")
    # PyGithub's pacing between calls (GitHub asks integrations to space their writes out).
    seconds_between_requests: float = 0.25
    seconds_between_writes: float = 1.0

    def _token(self) -> SecretStr:
        return SecretStr(self.token.strip() or os.environ.get(TOKEN_ENV, "").strip())

    def has_token(self) -> bool:
        return bool(self._token().get_secret_value())

    def repository_name(self) -> str:
        return self.repository.strip() or os.environ.get(REPOSITORY_ENV, "").strip()

    def api_url(self) -> str:
        return (self.base_url.strip() or os.environ.get(API_URL_ENV, "").strip() or PUBLIC_API_URL).rstrip("/")

    def local_path(self) -> Path:
        configured = self.local_repo_path.strip() or os.environ.get(LOCAL_REPO_ENV, "").strip()
        return Path(configured).expanduser() if configured else data_dir() / "pr_repo"

    def publish_settings(self) -> PublishSettings:
        return PublishSettings(
            min_confidence=self.min_confidence, min_gain_pct=self.min_gain_pct, per=self.per,
            layout=MigrationLayout(template=self.template, directory=self.migrations_dir,
                                   filename=self.filename_template),
            labels=tuple(self.labels), branch_prefix=self.branch_prefix,
        ).validate()

    def publisher(self) -> Publisher:
        """GitHubPublisher when a token is configured, else LocalGitPublisher."""
        token = self._token()
        if not token.get_secret_value():
            return LocalGitPublisher(self.local_path(), base_branch=self.base_branch,
                                     repository=self.repository_name())
        repository = self.repository_name()
        if not repository:
            raise DbarchError("a GitHub token is set but no repository",
                              f"set {REPOSITORY_ENV}=owner/name (or the github resource's repository)")
        return GitHubPublisher(token=token.get_secret_value(), repository=repository, base_url=self.api_url(),
                               base_branch=self.base_branch, draft=self.draft, timeout_s=self.timeout_s,
                               max_rate_limit_wait_s=self.max_rate_limit_wait_s,
                               seconds_between_requests=self.seconds_between_requests,
                               seconds_between_writes=self.seconds_between_writes)
