"""From OptimizationLog rows to pull requests, idempotently.

1. select: the newest index recommendation of each statement of the target, kept when its confidence
   is above the threshold (default 0.8) and its measured gain at least the minimum; rows already
   applied, or whose pull request was merged, are left alone. Drop recommendations never qualify:
   only rows of kind 'index' are read.
2. plan: one pull request per index (branch `dbarch/<table>/<index name>`, readable and stable: the
   same index keeps its branch from week to week) or per table (`dbarch/table-<schema>.<table>`),
   each with its migration files and its body.
3. publish: a Publisher puts each plan somewhere a team reviews it, GitHub (GitHubPublisher) or a
   local git repository (LocalGitPublisher), and the outcome is written back to the log rows in one
   transaction per pull request, so a failure half way leaves every row either recorded or untouched.

Idempotency lives in the publishers: a branch that already has an open pull request (or a local
branch) gets it updated only when the evidence changed materially (body.materially_changed: another
index or statement, a gain moved by 10 points, a confidence by 0.1), so the clock's noise between
two runs never rewrites a branch; one closed without merging is reopened only when the evidence changed materially
(see body.materially_changed); a merged one is never touched again.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import tempfile
from abc import ABC, abstractmethod
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import psycopg
from psycopg.rows import dict_row

from ..db import named
from ..errors import DbarchError
from . import body as bodies
from .body import Change
from .migrations import IndexMigration, MigrationFile, MigrationLayout, UnsupportedDDL, concurrent_index, render

PER = ("recommendation", "table")
# Statuses a human or a later stage set: the recommendation needs no pull request any more.
FINISHED_STATUSES = ("applied", "declined", "rejected")
DEFAULT_LABELS = ("dbarch", "database-performance")


@dataclass(frozen=True)
class PublishSettings:
    min_confidence: float = 0.8     # strictly above
    min_gain_pct: float = 10.0      # at least
    per: str = "recommendation"     # or "table"
    layout: MigrationLayout = field(default_factory=MigrationLayout)
    labels: tuple[str, ...] = DEFAULT_LABELS
    branch_prefix: str = "dbarch/"

    def validate(self) -> "PublishSettings":
        if self.per not in PER:
            raise DbarchError(f"unknown pull-request grouping {self.per!r}", "use per='recommendation' or per='table'")
        if not 0 <= self.min_confidence < 1:
            raise DbarchError(f"min_confidence must be in [0, 1), not {self.min_confidence}",
                              "the default 0.8 opens pull requests only for well-proven gains")
        if not re.fullmatch(r"[A-Za-z0-9._/-]*", self.branch_prefix) or ".." in self.branch_prefix:
            raise DbarchError(f"branch prefix {self.branch_prefix!r} is not a safe git branch prefix",
                              "use letters, digits, '.', '_', '-' and '/' only, e.g. dbarch/")
        self.layout.validate()
        return self


@dataclass(frozen=True)
class PullRequestPlan:
    key: str                          # the fingerprint, or "table:<schema>.<table>"
    branch: str
    title: str
    body: str
    evidence_hash: str
    material: list[dict]
    files: tuple[MigrationFile, ...]
    changes: tuple[Change, ...]
    labels: tuple[str, ...]

    @property
    def row_ids(self) -> list[str]:
        return [str(r["id"]) for c in self.changes for r in c.rows]


@dataclass(frozen=True)
class Outcome:
    """What happened to one plan. action: opened | reopened | updated | unchanged | skipped."""

    key: str
    branch: str
    action: str
    state: str                        # open | closed | merged | local
    url: str | None = None
    number: int | None = None
    evidence_hash: str | None = None  # of what the pull request now shows
    reason: str = ""
    command: str = ""                 # local fallback: how to push the branch and open the pull request


@dataclass
class Selection:
    eligible: list[dict]
    skipped: list[dict]               # {"fingerprint", "ddl", "reason"}


class Publisher(ABC):
    """Somewhere a pull request can live."""

    kind: str = "?"

    @abstractmethod
    def publish(self, plan: PullRequestPlan) -> Outcome:
        ...

    @abstractmethod
    def describe(self) -> str:
        """Where pull requests go, for logs and metadata (never a credential)."""

    def review(self, number: int) -> Review | None:
        """What reviewers did with a published pull request; None where the publisher cannot tell
        (a local branch has no review)."""
        return None

    @abstractmethod
    def close(self, number: int | None, branch: str, comment: str) -> bool:
        """Withdraw a pull request no current recommendation needs: True once it is closed (or gone)."""


@dataclass(frozen=True)
class Review:
    state: str                        # open | merged | closed (without merging)
    closed_at: datetime | None = None
    closed_by: str | None = None      # the login that closed it, when the host says


# -- 1. select -------------------------------------------------------------------------------------

def select(conn: psycopg.Connection, *, target: str, settings: PublishSettings,
           snapshot_id: int | None = None) -> Selection:
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(named("pr_select_log_rows"), {"target": target, "snapshot_id": snapshot_id}).fetchall()
    eligible, skipped = [], []
    for row in rows:
        reason = _ineligible(row, settings)
        if reason:
            skipped.append({"fingerprint": row["fingerprint"], "ddl": row["ddl"], "reason": reason})
        else:
            eligible.append(row)
    return Selection(eligible, skipped)


def _ineligible(row: dict, settings: PublishSettings) -> str | None:
    confidence, gain = row.get("confidence"), row.get("performance_gain")
    if row.get("kind") != "index":
        return f"{row.get('kind')} recommendations never become pull requests automatically"
    # a rejected row goes on to the publisher, which leaves its closed pull request closed unless the
    # evidence changed materially
    if (row.get("status") in FINISHED_STATUSES and row.get("status") != "rejected") or row.get("applied_at"):
        return f"status {row.get('status')}"
    if row.get("pr_state") == "merged":
        return "its pull request was merged"
    if confidence is None or confidence <= settings.min_confidence:
        return f"confidence {_fmt(confidence)} is not above {settings.min_confidence:g}"
    if gain is None or gain < settings.min_gain_pct:
        return f"measured gain {_fmt(gain)}% is below {settings.min_gain_pct:g}%"
    return None


def _fmt(value: Any) -> str:
    return "unknown" if value is None else f"{float(value):.2f}"


# -- 2. plan ----------------------------------------------------------------------------------------

def plan(rows: Sequence[dict], settings: PublishSettings, *,
         table_writes: dict[str, dict] | None = None) -> tuple[list[PullRequestPlan], list[dict]]:
    """Pull-request plans for eligible rows; rows whose DDL cannot become a migration are returned
    as skipped with the reason."""
    settings.validate()
    indexed: list[tuple[dict, IndexMigration]] = []
    skipped: list[dict] = []
    for row in rows:
        try:
            indexed.append((row, concurrent_index(row["ddl"])))
        except UnsupportedDDL as exc:
            skipped.append({"fingerprint": row["fingerprint"], "ddl": row["ddl"], "reason": exc.problem})

    # an index chosen for one statement often serves others too (workload-wide selection): one pull
    # request per index, on the branch of the statement it was chosen for, lists them all
    owner: dict[str, str] = {}
    for row, ix in sorted(indexed, key=lambda m: (bool((m[0].get("evidence") or {}).get("cross_statement")),
                                                  m[0]["created_at"], m[0]["fingerprint"])):
        owner.setdefault(ix.create, row["fingerprint"])
    groups: dict[str, list[tuple[dict, IndexMigration]]] = {}
    for row, ix in indexed:
        key = owner[ix.create] if settings.per == "recommendation" else f"table:{ix.qualified_table}"
        groups.setdefault(key, []).append((row, ix))

    plans = []
    for key in sorted(groups):
        by_ddl: dict[str, list[tuple[dict, IndexMigration]]] = {}
        for row, ix in groups[key]:
            by_ddl.setdefault(ix.create, []).append((row, ix))
        changes = []
        for create in sorted(by_ddl):
            members = sorted(by_ddl[create], key=lambda m: m[0]["fingerprint"])
            first_row, ix = members[0]
            # one migration per index even when several statements want it; named after the
            # earliest log row so its paths never change between runs
            anchor = min((m[0] for m in members), key=lambda r: (r["created_at"], r["fingerprint"]))
            files = tuple(render(ix, settings.layout, fingerprint=anchor["fingerprint"],
                                 created_at=anchor["created_at"]))
            changes.append(Change(index=ix, files=files, rows=tuple(m[0] for m in members)))
        rendered = bodies.render(changes, key=key, table_writes=table_writes)
        branch = (index_branch(settings.branch_prefix, changes[0].index) if settings.per == "recommendation"
                  else branch_name(settings.branch_prefix, key))
        plans.append(PullRequestPlan(
            key=key, branch=branch, title=rendered.title, body=rendered.text,
            evidence_hash=rendered.evidence_hash, material=rendered.marker["material"],
            files=tuple(f for c in changes for f in c.files), changes=tuple(changes), labels=tuple(settings.labels),
        ))
    return plans, skipped


def index_branch(prefix: str, index: IndexMigration) -> str:
    """dbarch/<table>/<index name> (the schema joins the table when it is not public).

    >>> from .migrations import concurrent_index
    >>> index_branch("dbarch/", concurrent_index('CREATE INDEX "users_lower_email_idx" ON "public"."users" ((lower("email")))'))
    'dbarch/users/users_lower_email_idx'
    """
    table = index.table if index.schema == "public" else f"{index.schema}.{index.table}"
    return f"{prefix}{_ref_part(table)}/{_ref_part(index.name)}"


def _ref_part(text: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", text)
    name = re.sub(r"\.{2,}", ".", name).strip(".-")
    return name[: -len(".lock")] + "-lock" if name.endswith(".lock") else name


def branch_name(prefix: str, key: str) -> str:
    """dbarch/<fingerprint>, or dbarch/table-<schema>.<table>; only characters git accepts anywhere.

    >>> branch_name("dbarch/", "ea7b8c31a0e78b3e")
    'dbarch/ea7b8c31a0e78b3e'
    >>> branch_name("dbarch/", "table:public.behavior_log")
    'dbarch/table-public.behavior_log'
    """
    name = key.replace("table:", "table-", 1)
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", name)
    name = re.sub(r"\.{2,}", ".", name).strip(".-")
    if name.endswith(".lock"):
        name = name[: -len(".lock")] + "-lock"
    return f"{prefix}{name}"


# -- 3. publish -------------------------------------------------------------------------------------

class PublishFailed(DbarchError):
    pass


def publish_all(conn: psycopg.Connection, publisher: Publisher, plans: Sequence[PullRequestPlan],
                progress: Callable[[str], None] | None = None) -> list[Outcome]:
    """Publish each plan and record its outcome before the next one starts."""
    outcomes: list[Outcome] = []
    for n, p in enumerate(plans, 1):
        try:
            outcome = publisher.publish(p)
        except DbarchError as exc:
            done = len(outcomes)
            raise PublishFailed(
                f"{exc.problem} (pull request {n} of {len(plans)}, branch {p.branch}; the {done} before it "
                f"{'was' if done == 1 else 'were'} published and recorded, this one and the rest were not)",
                f"{exc.fix}; re-running is safe: published pull requests are updated, never duplicated"
                if exc.fix else "re-running is safe: published pull requests are updated, never duplicated",
            ) from exc
        record(conn, p, outcome)
        outcomes.append(outcome)
        if progress:
            progress(f"{outcome.action}: {outcome.url or outcome.branch}"
                     + (f" ({outcome.reason})" if outcome.reason else ""))
    return outcomes


def record(conn: psycopg.Connection, p: PullRequestPlan, outcome: Outcome) -> None:
    """Write the outcome to every log row of the pull request, in one transaction."""
    with conn.transaction():
        conn.execute(named("pr_update_optimization_log"), {
            "ids": p.row_ids, "url": outcome.url, "state": outcome.state, "number": outcome.number,
            "branch": outcome.branch, "evidence_hash": outcome.evidence_hash,
            "revived": outcome.action in ("opened", "reopened"),
        })


def publish_pull_requests(conn: psycopg.Connection, publisher: Publisher, *, target: str,
                          settings: PublishSettings,
                          table_writes: Callable[[list[tuple[str, str]]], dict[str, dict]] | None = None,
                          progress: Callable[[str], None] | None = None, snapshot_id: int | None = None) -> dict:
    """The whole step for one target (one audit's recommendations when snapshot_id is given); returns
    a summary for metadata."""
    from . import lifecycle

    settings.validate()
    # reviews first: a pull request closed since the last run makes its rows rejected before they
    # are considered again
    reviewed = lifecycle.review(conn, publisher)
    selection = select(conn, target=target, settings=settings, snapshot_id=snapshot_id)
    writes: dict[str, dict] = {}
    if table_writes and selection.eligible:
        tables = sorted({(ix.schema, ix.table) for ix in _indexes(selection.eligible)})
        writes = table_writes(tables)
    plans, unsupported = plan(selection.eligible, settings, table_writes=writes)
    outcomes = publish_all(conn, publisher, plans, progress)
    withdrawn = lifecycle.close_superseded(conn, publisher)
    for c in withdrawn["closed"]:
        if progress:
            progress(f"closed (superseded): {c['url'] or c['branch']}")
    count = {a: sum(1 for o in outcomes if o.action == a)
             for a in ("opened", "reopened", "updated", "unchanged", "skipped")}
    return {
        "publisher": publisher.kind, "destination": publisher.describe(),
        "eligible": len(selection.eligible), "pull_requests": len(plans), **count,
        "not_eligible": len(selection.skipped) + len(unsupported),
        "urls": [o.url for o in outcomes if o.url],
        "commands": [o.command for o in outcomes if o.command],
        "outcomes": [{"branch": o.branch, "action": o.action, "state": o.state, "url": o.url,
                      **({"reason": o.reason} if o.reason else {})} for o in outcomes],
        "not_eligible_detail": selection.skipped + unsupported,
        "closed_superseded": [c["url"] or c["branch"] for c in withdrawn["closed"]],
        "rejected": [r["pr_url"] for r in reviewed["rejected"]],
        "merged": [r["pr_url"] for r in reviewed["merged"]],
    }


def _indexes(rows: Sequence[dict]) -> Iterator[IndexMigration]:
    for row in rows:
        try:
            yield concurrent_index(row["ddl"])
        except UnsupportedDDL:
            continue


def table_writes_from(conn: psycopg.Connection) -> Callable[[list[tuple[str, str]]], dict[str, dict]]:
    """Write statistics of the named tables from the target (pg_stat_user_tables)."""
    def fetch(tables: list[tuple[str, str]]) -> dict[str, dict]:
        with conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(named("pr_select_table_writes"), {
                "schemas": [s for s, _ in tables], "tables": [t for _, t in tables]}).fetchall()
        return {f"{r['schema']}.{r['table']}": {k: (float(v) if k == "seconds" and v is not None else v)
                                                for k, v in r.items()} for r in rows}
    return fetch


# -- GitHub -----------------------------------------------------------------------------------------

class GitHubPublisher(Publisher):
    """Pull requests on GitHub or GitHub Enterprise through PyGithub.

    Per plan: find the pull requests of its branch; skip a merged one, and a closed-unmerged one
    whose evidence has not changed materially; make sure the branch exists (from the base branch's
    head), write the migration files through the contents API (only when their text changed, and
    remove files an earlier version of this pull request added that are no longer part of it), then
    update the open pull request, reopen the closed one, or open a new one, and add the labels.
    """

    kind = "github"

    def __init__(self, *, token: str, repository: str, base_url: str, base_branch: str = "", draft: bool = False,
                 timeout_s: int = 15, retries: int = 3, max_rate_limit_wait_s: float = 60.0,
                 seconds_between_requests: float | None = 0.25, seconds_between_writes: float | None = 1.0):
        if not re.fullmatch(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+", repository or ""):
            raise DbarchError(f"GitHub repository {repository!r} is not of the form owner/name",
                              "set GITHUB_REPOSITORY (or the github resource's repository) to owner/name")
        self.__token = token
        self.repository = repository
        self.base_url = base_url.rstrip("/")
        self.base_branch = base_branch
        self.draft = draft
        self._options = dict(timeout=timeout_s, retries=retries, max_rate_limit_wait=max_rate_limit_wait_s,
                             seconds_between_requests=seconds_between_requests or None,
                             seconds_between_writes=seconds_between_writes or None)
        self._repo = None

    def __repr__(self) -> str:
        return f"GitHubPublisher(repository={self.repository!r}, base_url={self.base_url!r})"

    def describe(self) -> str:
        return f"{self.repository} at {self.base_url}"

    # PyGithub is imported here so that modules importing this one do not pay for it
    def _client(self):
        import github
        from github.GithubRetry import GithubRetry

        retry = GithubRetry(total=self._options["retries"], backoff_factor=0.5,
                            max_rate_limit_wait=self._options["max_rate_limit_wait"])
        return github.Github(auth=github.Auth.Token(self.__token), base_url=self.base_url,
                             timeout=self._options["timeout"], retry=retry,
                             seconds_between_requests=self._options["seconds_between_requests"],
                             seconds_between_writes=self._options["seconds_between_writes"])

    def _repository(self):
        if self._repo is None:
            with self._errors("opening the repository"):
                self._repo = self._client().get_repo(self.repository)
                _ = self._repo.default_branch
        return self._repo

    def publish(self, plan: PullRequestPlan) -> Outcome:
        from github.GithubException import GithubException, UnknownObjectException

        repo = self._repository()
        owner = self.repository.split("/")[0]
        with self._errors("reading the branch's pull requests", plan.branch):
            pulls = list(repo.get_pulls(state="all", head=f"{owner}:{plan.branch}"))
            open_pr, closed, skip = self._existing(pulls, plan)
            if skip is not None:
                return skip
            # files an earlier, unmerged version of this pull request added and the plan no longer has
            previous = bodies.parse_marker((open_pr or closed).body) if (open_pr or closed) else None
            if open_pr is not None and not bodies.materially_changed((previous or {}).get("material"), plan.material):
                return Outcome(plan.key, plan.branch, "unchanged", "open", open_pr.html_url, open_pr.number,
                               _marker_hash(open_pr.body) or plan.evidence_hash,
                               reason="the evidence has not changed materially")

        base = self.base_branch or repo.default_branch
        with self._errors(f"reading the base branch {base}"):
            base_sha = repo.get_branch(base).commit.sha
        with self._errors("creating the branch", plan.branch):
            try:
                repo.get_git_ref(f"heads/{plan.branch}").object.sha
            except UnknownObjectException:
                repo.create_git_ref(f"refs/heads/{plan.branch}", base_sha)
        with self._errors("writing the migration files", plan.branch):
            files_changed = self._write_files(repo, plan, (previous or {}).get("files") or [])

        action = "unchanged"
        with self._errors("opening the pull request", plan.branch):
            if open_pr is not None:
                pr = open_pr
                if pr.title != plan.title or (pr.body or "") != plan.body:
                    pr.edit(title=plan.title, body=plan.body)
                    action = "updated"
                elif files_changed:
                    action = "updated"
            elif closed is not None:
                try:
                    closed.edit(state="open", title=plan.title, body=plan.body)
                    pr, action = closed, "reopened"
                except GithubException as exc:
                    # GitHub cannot reopen a pull request whose branch was deleted and recreated
                    if exc.status != 422:
                        raise
                    pr, action = self._create(repo, plan, base), "opened"
            else:
                pr, action = self._create(repo, plan, base), "opened"
            present = {label.name for label in pr.labels}
            missing = [label for label in plan.labels if label not in present]
            if missing:
                pr.add_to_labels(*missing)
        return Outcome(plan.key, plan.branch, action, "open", pr.html_url, pr.number, plan.evidence_hash)

    @staticmethod
    def _existing(pulls: list, plan: PullRequestPlan) -> tuple[Any, Any, Outcome | None]:
        """(the open pull request, a closed one to reopen, or the outcome of leaving things alone)."""
        open_pr = next((p for p in pulls if p.state == "open"), None)
        if open_pr is not None or not pulls:
            return open_pr, None, None
        latest = max(pulls, key=lambda p: p.number)
        facts = (bodies.parse_marker(latest.body) or {}).get("material")
        if latest.merged_at is not None:
            if bodies.same_indexes(facts, plan.material):
                return None, None, Outcome(plan.key, plan.branch, "skipped", "merged", latest.html_url,
                                           latest.number, _marker_hash(latest.body), reason="already merged")
            # another index for the same statement after the first was merged: a new pull request,
            # with nothing to reopen, so the merged files are never removed
            return None, None, None
        if not bodies.materially_changed(facts, plan.material):
            return None, None, Outcome(plan.key, plan.branch, "skipped", "closed", latest.html_url, latest.number,
                                       _marker_hash(latest.body),
                                       reason="closed without merging; the evidence has not changed materially")
        return None, latest, None

    def review(self, number: int) -> Review:
        repo = self._repository()
        with self._errors(f"reading pull request #{number}"):
            pr = repo.get_pull(number)
            if pr.merged_at is not None:
                return Review("merged", pr.merged_at)
            if pr.state != "closed":
                return Review("open")
            # a pull request's JSON does not say who closed it; its issue does
            closer = repo.get_issue(number).closed_by
            return Review("closed", pr.closed_at, closer.login if closer is not None else None)

    def close(self, number: int | None, branch: str, comment: str) -> bool:
        if number is None:
            return True
        repo = self._repository()
        with self._errors(f"closing pull request #{number}", branch):
            pr = repo.get_pull(number)
            if pr.state != "open":
                return True
            pr.create_issue_comment(comment)
            pr.edit(state="closed")
        return True

    def _create(self, repo, plan: PullRequestPlan, base: str):
        return repo.create_pull(base=base, head=plan.branch, title=plan.title, body=plan.body, draft=self.draft)

    def _write_files(self, repo, plan: PullRequestPlan, previous_files: list[str]) -> bool:
        from github.GithubException import UnknownObjectException

        changed = False
        for f in plan.files:
            try:
                existing = repo.get_contents(f.path, ref=plan.branch)
            except UnknownObjectException:
                existing = None
            if isinstance(existing, list):
                raise DbarchError(f"{f.path} is a directory on branch {plan.branch}",
                                  "choose another migrations directory or file-name template")
            if existing is None:
                repo.create_file(f.path, f"{plan.title}\n\nAdd {f.path}", f.content, branch=plan.branch)
                changed = True
            elif existing.decoded_content.decode("utf-8", "replace") != f.content:
                repo.update_file(f.path, f"{plan.title}\n\nUpdate {f.path}", f.content, existing.sha,
                                 branch=plan.branch)
                changed = True
        for path in sorted(set(previous_files) - {f.path for f in plan.files}):
            try:
                existing = repo.get_contents(path, ref=plan.branch)
            except UnknownObjectException:
                continue
            if not isinstance(existing, list):
                repo.delete_file(path, f"{plan.title}\n\nRemove {path}, superseded", existing.sha,
                                 branch=plan.branch)
                changed = True
        return changed

    @contextmanager
    def _errors(self, doing: str, branch: str | None = None) -> Iterator[None]:
        """PyGithub's exceptions as DbarchErrors that say what to do; the token never in them."""
        import requests
        from github.GithubException import GithubException

        try:
            yield
        except DbarchError:
            raise
        except GithubException as exc:
            raise self._translate(exc, doing, branch) from None
        except requests.exceptions.RetryError as exc:
            raise DbarchError(f"GitHub kept failing while {doing} at {self.base_url}: {self._scrub(str(exc))}",
                              "GitHub may be having an incident; re-run later (published pull requests are "
                              "kept and will be updated, not duplicated)") from None
        except requests.exceptions.RequestException as exc:
            raise DbarchError(f"cannot reach the GitHub API at {self.base_url} while {doing}: "
                              f"{self._scrub(type(exc).__name__)}",
                              "check GITHUB_API_URL (for GitHub Enterprise https://HOST/api/v3) and the "
                              "network or proxy") from None

    def _translate(self, exc, doing: str, branch: str | None) -> DbarchError:
        from github.GithubException import (BadCredentialsException, RateLimitExceededException,
                                            UnknownObjectException)

        status = exc.status
        data = exc.data if isinstance(exc.data, dict) else {}
        message = self._scrub(str(data.get("message") or exc.message or "").strip())
        headers = {str(k).lower(): str(v) for k, v in (exc.headers or {}).items()}
        where = f"{self.repository} at {self.base_url}"
        if isinstance(exc, BadCredentialsException) or status == 401:
            return DbarchError(
                f"GitHub rejected the token while {doing} on {where} ({status}: {message or 'Bad credentials'})",
                "create a token that may write contents and pull requests on the repository and export it "
                "as GITHUB_TOKEN (dbarch reads it at run time and never logs it); for GitHub Enterprise also "
                "set GITHUB_API_URL=https://HOST/api/v3")
        exhausted = headers.get("x-ratelimit-remaining") == "0" or "rate limit" in message.lower()
        if isinstance(exc, RateLimitExceededException) or (status in (403, 429) and exhausted):
            left = headers.get("x-ratelimit-remaining")
            limit = headers.get("x-ratelimit-limit")
            reset = headers.get("x-ratelimit-reset")
            when = ""
            if reset and reset.isdigit():
                when = ", resets at " + datetime.fromtimestamp(int(reset), timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
            quota = f" ({left} of {limit} requests left{when})" if left is not None and limit else when
            return DbarchError(
                f"GitHub's API rate limit is exhausted{quota} while {doing} on {where}",
                "wait until the limit resets, then re-materialize optimization_pull_requests: pull requests "
                "already published are recorded in the log and will be updated, not duplicated")
        if isinstance(exc, UnknownObjectException) and doing == "opening the repository":
            return DbarchError(
                f"GitHub repository {self.repository} was not found at {self.base_url} (or the token cannot see it)",
                "check GITHUB_REPOSITORY (owner/name) and GITHUB_API_URL, and that the token has access to "
                "the repository")
        if status in (403, 409, 422) and re.search(r"protect|rule|restricted", message, re.I):
            return DbarchError(
                f"GitHub refused to write branch {branch} of {where}: {message} ({status})",
                f"a branch protection rule or ruleset covers {branch}: let the token create and push "
                "branches matching the dbarch prefix, or set a different branch prefix")
        if status == 403:
            return DbarchError(
                f"GitHub denied {doing} on {where}: {message or 'forbidden'} (403)",
                "give the token write access to contents and pull requests on the repository (fine-grained "
                "tokens: Contents and Pull requests read/write)")
        return DbarchError(f"GitHub answered {status} while {doing} on {where}: {message or 'no message'}",
                           "check the repository's settings and the token's permissions, then re-run")

    def _scrub(self, text: str) -> str:
        return text.replace(self.__token, "***") if self.__token else text


def _marker_hash(text: str | None) -> str | None:
    marker = bodies.parse_marker(text)
    return marker.get("evidence") if marker else None


# -- local git --------------------------------------------------------------------------------------

AUTHOR = {"GIT_AUTHOR_NAME": "dbarch", "GIT_AUTHOR_EMAIL": "dbarch@localhost",
          "GIT_COMMITTER_NAME": "dbarch", "GIT_COMMITTER_EMAIL": "dbarch@localhost"}
ZERO = "0" * 40


class LocalGitPublisher(Publisher):
    """Without a token: the same branch, commit and body in a local git repository.

    Commits are built with git's plumbing (a private index file, commit-tree, update-ref), so the
    repository's working tree, index and checked-out branch are never touched: naming a clone the
    user works in is safe. The body is the commit message (after the title) and is also written to
    `<git dir>/dbarch/<branch>.md` for `gh pr create --body-file`. A folder that does not exist, or an
    empty one, becomes a new repository with an empty first commit on `main`.
    """

    kind = "local-git"

    def __init__(self, path: Path | str, *, base_branch: str = "", remote: str = "origin", repository: str = ""):
        self.path = Path(path).expanduser().resolve()
        self.base_branch = base_branch
        self.remote = remote
        self.repository = repository
        self._ready = False

    def __repr__(self) -> str:
        return f"LocalGitPublisher(path={str(self.path)!r})"

    def describe(self) -> str:
        return f"local git repository {self.path}"

    def publish(self, plan: PullRequestPlan) -> Outcome:
        self._ensure_repository()
        base = self._base()
        message = f"{plan.title}\n\n{plan.body}"
        tip = self._rev(f"refs/heads/{plan.branch}")
        previous = bodies.parse_marker(self._git("log", "-1", "--format=%B", tip)) if tip else None
        if tip and previous and not bodies.materially_changed(previous.get("material"), plan.material):
            # the clock's noise between two runs never rewrites a branch
            return Outcome(plan.key, plan.branch, "unchanged", "local", f"{self.path.as_uri()}#{plan.branch}", None,
                           previous.get("evidence") or plan.evidence_hash,
                           command=self.push_command(plan, base, self._save_body(plan)))
        stale = set((previous or {}).get("files") or []) - {f.path for f in plan.files}
        tree = self._tree(tip or base, plan.files, stale)
        if tip and tree == self._git("rev-parse", f"{tip}^{{tree}}") \
                and self._git("log", "-1", "--format=%B", tip).rstrip("\n") == message.rstrip("\n"):
            action = "unchanged"
        else:
            commit = self._git("commit-tree", tree, "-p", tip or base, input=message, env=AUTHOR)
            self._git("update-ref", "-m", f"dbarch: {plan.title}", f"refs/heads/{plan.branch}", commit, tip or ZERO)
            action = "updated" if tip else "opened"
        body_file = self._save_body(plan)
        return Outcome(plan.key, plan.branch, action, "local", f"{self.path.as_uri()}#{plan.branch}", None,
                       plan.evidence_hash, command=self.push_command(plan, base, body_file))

    def close(self, number: int | None, branch: str, comment: str) -> bool:
        """Delete the local branch when it holds only dbarch's commits (nobody built on it), with its
        saved body; a branch someone committed to is left alone (False)."""
        self._ensure_repository()
        tip = self._rev(f"refs/heads/{branch}")
        if tip is None:
            return True
        authors = set(self._git("log", "--format=%ae", f"{self._base()}..{tip}").split())
        if authors - {AUTHOR["GIT_AUTHOR_EMAIL"]}:
            return False
        self._git("update-ref", "-d", f"refs/heads/{branch}", tip)
        body = Path(self._git("rev-parse", "--absolute-git-dir")) / "dbarch" / f"{branch.replace('/', '__')}.md"
        body.unlink(missing_ok=True)
        return True

    def push_command(self, plan: PullRequestPlan, base: str, body_file: Path) -> str:
        repo = shlex.quote(str(self.path))
        prefix, steps = "", []
        if not self._has_remote():
            if self.repository:
                steps.append(f"git -C {repo} remote add {shlex.quote(self.remote)} "
                             f"{shlex.quote(f'https://github.com/{self.repository}.git')}")
            else:
                # a comment, so pasting the command never runs a placeholder
                prefix = f"# once, first: git -C {repo} remote add {self.remote} <your repository's URL>\n"
        steps.append(f"git -C {repo} push --set-upstream {shlex.quote(self.remote)} {shlex.quote(plan.branch)}")
        gh = (f"gh pr create{' --repo ' + shlex.quote(self.repository) if self.repository else ''} "
              f"--base {shlex.quote(base)} --head {shlex.quote(plan.branch)} --title {shlex.quote(plan.title)} "
              f"--body-file {shlex.quote(str(body_file))}")
        if plan.labels:
            gh += "".join(f" --label {shlex.quote(label)}" for label in plan.labels)
        steps.append(gh)
        return prefix + " && ".join(steps)

    # -- git plumbing --

    def _ensure_repository(self) -> None:
        if self._ready:
            return
        if self.path.exists() and not self.path.is_dir():
            raise DbarchError(f"the local pull-request repository {self.path} is a file",
                              "name a git repository or an empty folder (github resource local_repo_path)")
        top = self._toplevel() if self.path.is_dir() else None
        if top != self.path:
            # not a repository of its own (perhaps a folder inside another repository, like the
            # project's .dbarch/): only an empty or missing folder becomes a new repository
            if self.path.is_dir() and any(self.path.iterdir()):
                raise DbarchError(f"{self.path} is not empty and not a git repository",
                                  "name a git repository (a clone of your application) or an empty folder")
            self.path.mkdir(parents=True, exist_ok=True)
            self._git("init", "--quiet", "--initial-branch", self.base_branch or "main")
        if not self._rev("HEAD"):
            empty_tree = self._git("hash-object", "-t", "tree", "-w", "--stdin", input="")
            commit = self._git("commit-tree", empty_tree, input="dbarch: empty first commit\n", env=AUTHOR)
            head = self._git("symbolic-ref", "HEAD")
            self._git("update-ref", head, commit, ZERO)
        self._ready = True

    def _toplevel(self) -> Path | None:
        try:
            out = self._git("rev-parse", "--show-toplevel", check_errors=False)
        except DbarchError:
            return None
        return Path(out).resolve() if out else None

    def _base(self) -> str:
        if self.base_branch:
            if not self._rev(f"refs/heads/{self.base_branch}"):
                raise DbarchError(f"branch {self.base_branch} does not exist in {self.path}",
                                  "set the github resource's base_branch to an existing branch, or leave it empty")
            return self.base_branch
        return self._git("symbolic-ref", "--short", "HEAD")

    def _rev(self, ref: str) -> str | None:
        try:
            return self._git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check_errors=False) or None
        except DbarchError:
            return None

    def _has_remote(self) -> bool:
        return self.remote in self._git("remote").split()

    def _tree(self, start: str, files: Sequence[MigrationFile], remove: set[str]) -> str:
        with tempfile.TemporaryDirectory(prefix="dbarch-index-") as tmp:
            env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
            self._git("read-tree", start, env=env)
            for path in sorted(remove):
                self._git("update-index", "--force-remove", "--", path, env=env)
            for f in files:
                blob = self._git("hash-object", "-w", "--stdin", "--path", f.path, input=f.content)
                self._git("update-index", "--add", "--cacheinfo", f"100644,{blob},{f.path}", env=env)
            return self._git("write-tree", env=env)

    def _save_body(self, plan: PullRequestPlan) -> Path:
        git_dir = Path(self._git("rev-parse", "--absolute-git-dir"))
        path = git_dir / "dbarch" / f"{plan.branch.replace('/', '__')}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(plan.body)
        return path

    def _git(self, *args: str, input: str | None = None, env: dict[str, str] | None = None,
             check_errors: bool = True) -> str:
        full_env = {**os.environ, **(env or {})}
        # no editor, no pager, no signing prompts: this runs unattended
        full_env.update(GIT_TERMINAL_PROMPT="0", GIT_EDITOR="true", GIT_PAGER="cat")
        try:
            done = subprocess.run(["git", "-c", "commit.gpgsign=false", "-C", str(self.path), *args],
                                  input=input, env=full_env, capture_output=True, text=True, timeout=60)
        except FileNotFoundError:
            raise DbarchError("git is not installed", "install git, or set GITHUB_TOKEN to publish on GitHub") from None
        if done.returncode != 0:
            if not check_errors:
                return ""
            raise DbarchError(f"git {args[0]} failed in {self.path}: {done.stderr.strip() or done.stdout.strip()}",
                              "check that the folder is a healthy git repository you may write to")
        return done.stdout.strip()
