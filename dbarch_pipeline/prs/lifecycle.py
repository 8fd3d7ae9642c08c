"""What happens to a pull request after dbarch opened it: reviewers decide, re-runs supersede.

- `review`: the open pull requests of current recommendations are read back. Merged: the rows record
  pr_state 'merged' (watch.detect_applied then marks them applied). Closed without merging: the
  proposed rows become `rejected`, with when (closed_at) and by whom (the login that closed it).
  A rejected row is not proposed again as a pull request for the same index unless the evidence
  changed materially: the publisher compares the closed pull request's recorded evidence with the
  new one (publish.GitHubPublisher._existing) and reopens it only then.
- `close_superseded`: a superseded recommendation whose pull request is still open, on a branch no
  current recommendation of that target uses (nor recommends that index), gets its pull request
  closed with a comment naming what replaced it; with the local publisher its branch is deleted when
  it holds only dbarch's commits. The rows record pr_state 'closed'.

Both are idempotent and run after each publish step and from the `pull_request_reviews` sensor.
"""

from __future__ import annotations

import psycopg
from psycopg.rows import dict_row

from ..db import named
from .publish import Publisher


def review(conn: psycopg.Connection, publisher: Publisher) -> dict:
    """Read back the open pull requests of current rows; returns what moved."""
    with conn.cursor(row_factory=dict_row) as cur:
        prs = cur.execute(named("pr_select_open_pull_requests")).fetchall()
    merged, rejected, still_open = [], [], 0
    for pr in prs:
        seen = publisher.review(pr["pr_number"])
        if seen is None or seen.state == "open":
            still_open += 1
            continue
        key = {"target": pr["target"], "number": pr["pr_number"]}
        with conn.transaction():
            if seen.state == "merged":
                conn.execute(named("pr_mark_merged"), key)
                merged.append({**pr})
            else:
                rows = conn.execute(named("pr_mark_rejected"), {
                    **key, "closed_at": seen.closed_at, "closed_by": seen.closed_by}).fetchall()
                rejected.append({**pr, "closed_at": seen.closed_at, "closed_by": seen.closed_by,
                                 "rejected": sum(1 for r in rows if r[1] == "rejected")})
    return {"checked": len(prs), "open": still_open, "merged": merged, "rejected": rejected}


def closing_comment(row: dict) -> str:
    """Why dbarch withdraws the pull request, pointing at what replaced it."""
    text = ("dbarch closes this pull request: a later audit no longer recommends this index for the "
            "statement it was proposed for")
    if row.get("replacement_pr_url"):
        return f"{text}. It recommends `{row['replacement_ddl']}` instead: {row['replacement_pr_url']}"
    if row.get("replacement_ddl"):
        return f"{text}. It recommends `{row['replacement_ddl']}` instead ({row['replacement_status']}, no pull request)."
    return f"{text}, nor any other index for it."


def close_superseded(conn: psycopg.Connection, publisher: Publisher) -> dict:
    """Close the pull requests (or local branches) only superseded recommendations hold."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(named("pr_select_superseded_open")).fetchall()
    closed, kept = [], []
    for row in rows:
        number = row["pr_number"] if row["pr_state"] == "open" else None
        if row["pr_state"] == "open" and number is None:
            continue
        if publisher.kind == "github" and row["pr_state"] != "open":
            continue      # a local branch of an earlier tokenless run: not GitHub's to close
        if publisher.kind != "github" and row["pr_state"] != "local":
            continue      # a GitHub pull request, and no token to close it with now
        if publisher.close(number, row["pr_branch"], closing_comment(row)):
            with conn.transaction():
                conn.execute(named("pr_mark_closed"), {"target": row["target"], "branch": row["pr_branch"]})
            closed.append({"target": row["target"], "branch": row["pr_branch"], "url": row["pr_url"],
                           "ddl": row["ddl"], "replaced_by": row["replacement_ddl"]})
        else:
            kept.append({"target": row["target"], "branch": row["pr_branch"],
                         "reason": "someone else committed to the branch"})
    return {"closed": closed, "kept": kept}
