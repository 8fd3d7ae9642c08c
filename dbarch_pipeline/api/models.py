"""Request and response bodies of the admin API (they are also its OpenAPI schema)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

STATUSES = ("proposed", "superseded", "applied", "declined", "rejected")
Status = Literal["proposed", "superseded", "applied", "declined", "rejected"]


class ErrorBody(BaseModel):
    error: str = Field(description="What went wrong.")
    fix: str | None = Field(default=None, description="What to do about it, when the caller can.")


class Optimization(BaseModel):
    id: str
    target: str
    week: date = Field(description="The Sunday (UTC) starting the audited week that made this recommendation.")
    fingerprint: str
    query_text: str
    recommendation: str
    kind: str = Field(description="index, rewrite, drop, ...")
    ddl: str
    performance_gain: float | None = Field(description="Gain measured on the sandbox, percent.")
    estimated_gain: float | None = Field(description="Gain the planner's costs predicted, percent.")
    realized_gain: float | None = Field(description="Gain measured on the target once applied, percent.")
    confidence: float | None
    status: str
    snapshot_id: int | None
    pr_url: str | None
    created_at: datetime
    updated_at: datetime
    applied_at: datetime | None
    realized_at: datetime | None


class OptimizationPage(BaseModel):
    items: list[Optimization]
    total: int = Field(description="Rows passing the filters, over all pages.")
    limit: int
    offset: int
    next_offset: int | None = Field(description="Offset of the next page; null on the last one.")


class PullRequest(BaseModel):
    url: str | None
    state: str | None
    number: int | None
    branch: str | None
    updated_at: datetime | None


class OptimizationDetail(Optimization):
    queryid: int | None
    evidence: dict[str, Any] = Field(description="The measurements behind the recommendation.")
    partition_key: str | None = Field(description="The audit partition (target|week) that made it.")
    window_start: datetime | None
    window_end: datetime | None
    run_id: str | None = Field(description="The Dagster run that made it.")
    pull_request: PullRequest | None
    rejected_at: datetime | None = Field(default=None, description="When its pull request was closed without "
                                                                    "merging (status rejected).")
    rejected_by: str | None = Field(default=None, description="Who closed it (the GitHub login), when known.")
    pr_url: str | None = Field(default=None, exclude=True)


class SimilarOptimization(BaseModel):
    id: str
    query_text: str
    recommendation: str
    ddl: str
    performance_gain: float | None
    realized_gain: float | None
    confidence: float | None
    status: str
    applied_at: datetime | None
    similarity: float = Field(description="Cosine similarity of the statements' embeddings (1 = same).")


class SimilarResult(BaseModel):
    query: str
    items: list[SimilarOptimization]


class AskRequest(BaseModel):
    question: str = Field(min_length=1, max_length=2000, examples=["How many users signed up last week?"])
    target: str | None = Field(default=None, description="The database asked; default the default target.")
    max_rows: int | None = Field(default=None, ge=1, le=1000,
                                 description="Rows returned at most (the server's limit caps it).")


class AskAttempt(BaseModel):
    sql: str
    outcome: str = Field(description="ok | refused | error")
    reason: str


class AskResponse(BaseModel):
    question: str
    status: str = Field(description="answered | known_pair | refused | failed | no_match")
    sql_source: Literal["gemini", "stored_example"] | None = Field(
        description="Where the SQL came from: written by Gemini for this question, or the stored SQL of "
                    "the closest known question (Gemini off); null when no SQL was run.")
    sql: str | None
    explanation: str
    label: str = Field(description="What the reader must know about this answer.")
    columns: list[str]
    rows: list[list[Any]]
    truncated: bool
    attempts: list[AskAttempt]
    matched_question: str | None
    similarity: float | None
    tables_in_prompt: list[str]


class AuditRequest(BaseModel):
    target: str | None = Field(default=None, description="A configured target; default the default target.")
    week: str | None = Field(default=None, pattern=r"^\d{4}-\d{2}-\d{2}$",
                             description="Any day (YYYY-MM-DD) of the week to audit; default the week in progress.")


class AuditStarted(BaseModel):
    run_id: str
    target: str
    week: str
    started: bool = Field(description="False when that week's audit was already queued or running: "
                                      "run_id is that run.")
    status_url: str


class AuditStatus(BaseModel):
    run_id: str
    status: str = Field(description="QUEUED, STARTING, STARTED, SUCCESS, FAILURE, CANCELED, ...")
    target: str | None
    week: str | None
    job: str | None = None
    error: str | None = None
    report: dict[str, Any] | None = Field(default=None, description="The audit's findings, once it succeeded.")
    report_text: str | None = Field(default=None, description="The same, as the CLI prints it.")
