"""Benchmark one statement's candidate indexes on the sandbox, each inside a rolled-back transaction."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Sequence

import psycopg

from ..advisor.analyze import QueryShape
from ..advisor.candidates import ddl_text, index_ddl, index_name
from ..advisor.catalog import Catalog
from ..db import named, rolled_back
from ..models import IndexCandidate, Measurement
from . import evaluate
from .measure import compact_plan, measure, median_ms
from .params import sample_parameter_sets


@dataclass(frozen=True)
class BenchSettings:
    runs: int = 5
    warmup: int = 1
    param_sets: int = 4
    statement_timeout_ms: int = 30_000
    lock_timeout_ms: int = 2_000
    seed: int = 7


def _summary(m: Measurement) -> dict:
    return {
        "generic_cost": m.generic_cost,
        "costs": m.costs,
        "timings_ms": [[round(t, 3) for t in runs] for runs in m.timings_ms],
        "median_ms": median_ms(m),
        "shared_blocks": m.buffers,
        "indexes_used": sorted(m.indexes_used),
        "plan": compact_plan(m.plan),
    }


def benchmark_statement(conn: psycopg.Connection, query: str, shape: QueryShape,
                        candidates: Sequence[IndexCandidate], catalog: Catalog,
                        settings: BenchSettings) -> list[dict]:
    """One result row per candidate: costs, timings, gains, confidence and the evidence behind them."""
    param_sets, plan = sample_parameter_sets(conn, shape, catalog, n_sets=settings.param_sets,
                                             seed=settings.seed, fixed=_partial_values(shape, candidates))
    has_params = shape.param_count > 0
    timed = bool(param_sets)
    guard = dict(statement_timeout_ms=settings.statement_timeout_ms, lock_timeout_ms=settings.lock_timeout_ms)

    with rolled_back(conn, **guard):
        before = measure(conn, query, param_sets if timed else [], has_params=has_params,
                         runs=settings.runs, warmup=settings.warmup)

    results = []
    for cand in candidates:
        ddl = ddl_text(cand)
        name = index_name(cand)
        row = {"ddl": ddl, "status": "measured", "cost_before": before.generic_cost}
        try:
            with rolled_back(conn, **guard):
                started = time.perf_counter()
                conn.execute(index_ddl(cand))
                build_ms = (time.perf_counter() - started) * 1000
                size = conn.execute(named("select_index_size"), {"schema": cand.schema, "name": name}
                                    ).fetchone()[0]
                after = measure(conn, query, param_sets if timed else [], has_params=has_params,
                                runs=settings.runs, warmup=settings.warmup)
        except psycopg.Error as exc:
            row.update(status="failed", evidence={"error": str(exc).strip().splitlines()[0],
                                                  "sqlstate": exc.sqlstate})
            results.append({**_empty_gains(), **row})
            continue

        used = name in after.indexes_used
        # with values the planner's custom plans are the honest estimate (a generic plan cannot use
        # a partial index and misjudges skew and LIKE); without values, the generic plan is all we have
        cost_before, cost_after = _planner_cost(before), _planner_cost(after)
        planner_gain = (cost_before - cost_after) / cost_before if cost_before else None
        ms_before, ms_after = median_ms(before), median_ms(after)
        if timed:
            confidence = evaluate.confidence_from(before.timings_ms, after.timings_ms, planner_gain, used=used)
            parts = evaluate.confidence_parts(before.timings_ms, after.timings_ms, planner_gain, used=used)
        else:
            confidence = evaluate.planner_only_confidence(planner_gain, used=used)
            parts = {"planner_only": True}
        row.update(
            cost_before=cost_before, cost_after=cost_after,
            ms_before=ms_before, ms_after=ms_after,
            estimated_gain_pct=evaluate.gain_pct(cost_before, cost_after),
            measured_gain_pct=evaluate.gain_pct(ms_before, ms_after),
            confidence=confidence,
            evidence={
                "index": cand.label(), "reason": cand.reason, "index_used": used,
                "index_bytes": size, "build_ms": round(build_ms, 1),
                "parameter_sets": [list(p) for p in param_sets] if has_params else [],
                "unmapped_parameters": plan.unmapped,
                "runs_per_set": settings.runs, "warmup_runs": settings.warmup,
                "confidence_parts": parts,
                "before": _summary(before), "after": _summary(after),
            },
        )
        results.append(row)
    return results


def _planner_cost(m: Measurement) -> float | None:
    return statistics.fmean(m.costs) if m.costs else m.generic_cost


def _partial_values(shape: QueryShape, candidates: Sequence[IndexCandidate]) -> dict[int, str]:
    """A partial candidate was built for the rare value the statement asks for: time with it."""
    fixed: dict[int, str] = {}
    for cand in candidates:
        if cand.where:
            for pred in shape.predicates_on(cand.table):
                if pred.column == cand.where[0] and pred.op == "eq" and pred.param:
                    fixed[pred.param] = cand.where[1]
    return fixed


def _empty_gains() -> dict:
    return {"cost_after": None, "ms_before": None, "ms_after": None, "estimated_gain_pct": None,
            "measured_gain_pct": None, "confidence": None}
