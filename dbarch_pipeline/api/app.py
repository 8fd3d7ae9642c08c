"""The admin API as a FastAPI application: the optimization history, the similar-optimization
search, ask the database, audits through Dagster, and Prometheus metrics, over the same store and
code paths as the CLI.

`create_app(ApiConfig(...))` builds it; `dbarch serve` (api/server.py) runs it on uvicorn. The
handlers are plain `def`s (FastAPI runs them in its thread pool), since every one of them talks to
PostgreSQL through psycopg's blocking API, as the rest of dbarch does.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import uuid
from collections import OrderedDict
from contextlib import asynccontextmanager, contextmanager
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Callable, Iterator

import dagster as dg
import psycopg
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPBearer
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pgvector.psycopg import register_vector
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import metrics
from ..ask.answer import AskSettings
from ..db import named
from ..defs.partitions import week_of
from ..errors import DbarchError, UnreachableDatabase
from ..memory.embeddings import Embedder
from . import models
from .audits import AuditRunner, resolve_week
from .auth import Role, Token, authenticate
from .limits import BodyLimit
from .redact import Redactor

log = logging.getLogger("dbarch.api")
STATIC = Path(__file__).with_name("static")
PREFIX = "/admin/database"


@dataclasses.dataclass
class ApiConfig:
    """What the server needs: the same resources as the audit (target, sandbox, store, embedder,
    settings, Gemini), the tokens, and its limits."""

    resources: dict
    tokens: tuple[Token, ...] = ()
    instance_factory: Callable[[], dg.DagsterInstance] | None = None   # default: the project's instance
    ask_settings: AskSettings = dataclasses.field(default_factory=AskSettings)
    max_body_bytes: int = 64 * 1024
    max_concurrent_asks: int = 2
    max_page: int = 500
    warm: bool = True   # load the embedding model at startup, so the first search is as fast as the rest
    pool_size: int = 4  # store connections kept open for the read endpoints
    # torch threads for embedding one short statement per request: 1 avoids the threads waiting on
    # each other (several times slower on a busy machine); None leaves torch's default (tests do)
    torch_threads: int | None = None
    # query vectors kept in memory, by normalized statement: a repeated search skips the model
    vector_cache_size: int = 4096
    redactor: Redactor = dataclasses.field(default_factory=Redactor)


class ApiError(Exception):
    def __init__(self, status: int, error: str, fix: str | None = None, headers: dict[str, str] | None = None):
        self.status, self.error, self.fix, self.headers = status, error, fix, headers
        super().__init__(error)


class Service:
    """The application's state: configuration, the embedding model (loaded once per process), the
    ask semaphore and the audit runner (created on the first audit request)."""

    def __init__(self, config: ApiConfig):
        self.config = config
        self.embedder = Embedder()
        self.ask_slots = threading.BoundedSemaphore(config.max_concurrent_asks)
        self.corpus_lock = threading.Lock()
        self._audits: AuditRunner | None = None
        self._audits_lock = threading.Lock()
        self._pool: ConnectionPool | None = None
        self._pool_lock = threading.Lock()
        self._vectors: OrderedDict[str, Any] = OrderedDict()   # least recently used first
        self._vectors_lock = threading.Lock()

    @contextmanager
    def store_conn(self) -> Iterator[psycopg.Connection]:
        """A pooled store connection for the read endpoints: opening one per request costs more than
        the search itself (a backend process per connection). The pool starts on first use, after the
        store's own connect() has applied pending migrations and given its clear errors."""
        with self._pool_lock:
            if self._pool is None:
                with self.store.connect():
                    pass
                self._pool = ConnectionPool(
                    make_conninfo(self.store.conninfo(), application_name="dbarch-api"),
                    min_size=1, max_size=self.config.pool_size, kwargs={"autocommit": True},
                    configure=register_vector, check=ConnectionPool.check_connection, timeout=10, open=True)
        with self._pool.connection() as conn:
            yield conn

    def embed(self, text: str, *, cached: bool = True):
        """One (normalized) statement's vector, from the LRU cache when the same text was searched
        recently. torch's thread count is per calling thread (OpenMP), so it is set in the worker
        thread that serves the request, not once at startup (ONNX Runtime's is the session's)."""
        size = self.config.vector_cache_size if cached else 0
        if size:
            with self._vectors_lock:
                vector = self._vectors.get(text)
                if vector is not None:
                    self._vectors.move_to_end(text)
                    return vector
        threads = self.config.torch_threads
        if threads and self.embedder.runtime == "torch":     # onnx sets its threads per session
            import torch

            if torch.get_num_threads() != threads:
                torch.set_num_threads(threads)
        vector = self.embedder.embed_one(text)
        vector.setflags(write=False)    # shared between requests
        if size:
            with self._vectors_lock:
                self._vectors[text] = vector
                while len(self._vectors) > size:
                    self._vectors.popitem(last=False)
        return vector

    def close(self) -> None:
        if self._audits is not None:
            self._audits.shutdown(wait=False)
        if self._pool is not None:
            self._pool.close()

    @property
    def store(self):
        return self.config.resources["store"]

    @property
    def target(self):
        return self.config.resources["target"]

    def audits(self) -> AuditRunner:
        with self._audits_lock:
            if self._audits is None:
                from ..run import persistent_instance

                instance = (self.config.instance_factory or persistent_instance)()
                self._audits = AuditRunner(self.config.resources, instance, redact=self.config.redactor)
            return self._audits

    def target_name(self, name: str | None) -> str:
        default = self.target.target_name()
        known = set(self.target.target_names()) | {default}
        if name is None:
            return default
        if name not in known:
            raise ApiError(404, f"unknown target {name!r}",
                           f"use one of: {', '.join(sorted(known))} (more are added through DBARCH_TARGETS)")
        return name


def _service(request: Request) -> Service:
    return request.app.state.dbarch


bearer = HTTPBearer(auto_error=False, description="A token from DBARCH_ADMIN_TOKENS (read:... or admin:...).")


def require(role: Role) -> Callable[..., Role]:
    def check(request: Request, _credentials: Any = Depends(bearer)) -> Role:
        tokens = _service(request).config.tokens
        if not tokens:   # no tokens configured: the server only binds loopback (see server.py)
            return Role.ADMIN
        granted = authenticate(request.headers.get("authorization"), tokens)
        if granted is None:
            raise ApiError(401, "a valid bearer token is required",
                           "send the header Authorization: Bearer <token>, a token from DBARCH_ADMIN_TOKENS",
                           headers={"WWW-Authenticate": 'Bearer realm="dbarch"'})
        if granted < role:
            raise ApiError(403, f"this endpoint needs an {role.name.lower()} token; yours is "
                                f"{granted.name.lower()}-only", "use a token listed as admin:... in DBARCH_ADMIN_TOKENS")
        return granted
    return check


READ = Depends(require(Role.READ))
ADMIN = Depends(require(Role.ADMIN))
ERRORS = {401: {"model": models.ErrorBody}, 403: {"model": models.ErrorBody}, 422: {"model": models.ErrorBody}}


def plain(value: Any) -> Any:
    """JSON-ready data from rows and reports (decimals, dates, numpy numbers, bytes)."""
    def default(v: Any) -> Any:
        if isinstance(v, Decimal):
            return float(v) if v.is_finite() else str(v)
        if isinstance(v, (datetime, date, time)):
            return v.isoformat()
        if isinstance(v, (bytes, memoryview)):
            return bytes(v).hex()
        if hasattr(v, "item"):   # numpy scalars
            return v.item()
        if isinstance(v, (set, frozenset, tuple)):
            return list(v)
        return str(v)
    return json.loads(json.dumps(value, default=default))


# -- the optimization log -----------------------------------------------------------------------

router = APIRouter(prefix=PREFIX, tags=["optimizations"])


@router.get("/optimizations", response_model=models.OptimizationPage, responses=ERRORS,
            summary="List recommendations")
def list_optimizations(
    request: Request,
    target: Annotated[str | None, Query(max_length=200, description="Only this target.")] = None,
    week: Annotated[date | None, Query(description="Any day (YYYY-MM-DD) of the audited week.")] = None,
    status: Annotated[models.Status | None, Query(description="Only this status.")] = None,
    kind: Annotated[str | None, Query(max_length=50, description="index, rewrite, drop, ...")] = None,
    min_confidence: Annotated[float | None, Query(ge=0, le=1)] = None,
    history: Annotated[bool, Query(description="Include superseded recommendations.")] = False,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
    _role: Role = READ,
) -> dict:
    """Current recommendations (not superseded), newest first; `history=true` includes superseded
    ones (or ask for `status=superseded`)."""
    service = _service(request)
    limit = min(limit, service.config.max_page)
    params = {"target": target, "week": week_of(datetime.combine(week, time())) if week else None,
              "status": status, "kind": kind, "min_confidence": min_confidence,
              "history": history or status == "superseded", "limit": limit, "offset": offset}
    with service.store_conn() as s, s.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(named("api_select_optimizations"), params).fetchall()
        if not rows and offset:   # past the last page: the total still comes from the first row
            first = cur.execute(named("api_select_optimizations"), {**params, "limit": 1, "offset": 0}).fetchone()
            total = first["total"] if first else 0
        else:
            total = rows[0]["total"] if rows else 0
    items = [{**r, "id": str(r["id"])} for r in rows]
    return {"items": items, "total": total, "limit": limit, "offset": offset,
            "next_offset": offset + limit if offset + limit < total else None}


@router.get("/optimizations/similar", response_model=models.SimilarResult, responses=ERRORS,
            summary="Past optimizations of statements like this one")
def similar(
    request: Request,
    query: Annotated[str, Query(min_length=1, max_length=20_000, description="A SQL statement.")],
    limit: Annotated[int, Query(ge=1, le=100)] = 5,
    min_similarity: Annotated[float, Query(ge=-1, le=1, description="Leave out less similar ones.")] = 0.0,
    _role: Role = READ,
) -> dict:
    """The RAG search the audit itself uses: the statement is normalized and embedded (the model is
    loaded once per process), and the nearest logged optimizations come from the HNSW index, those
    with a realized gain first."""
    from ..memory import store
    from ..memory.fingerprint import normalize

    service = _service(request)
    vector = service.embed(normalize(query))
    with service.store_conn() as s:
        rows = store.similar_optimizations(s, vector, limit=limit)
    return {"query": query, "items": [r for r in rows if r["similarity"] >= min_similarity]}


@router.get("/optimizations/{optimization_id}", response_model=models.OptimizationDetail,
            responses={**ERRORS, 404: {"model": models.ErrorBody}}, summary="One recommendation")
def get_optimization(request: Request, optimization_id: uuid.UUID, _role: Role = READ) -> dict:
    """One recommendation with its evidence, the audit that made it and its pull request."""
    with _service(request).store_conn() as s, s.cursor(row_factory=dict_row) as cur:
        row = cur.execute(named("api_select_optimization"), {"id": optimization_id}).fetchone()
    if row is None:
        raise ApiError(404, f"no recommendation {optimization_id}", "list them at GET /admin/database/optimizations")
    pr = {k[3:]: row.pop(k) for k in ("pr_url", "pr_state", "pr_number", "pr_branch", "pr_updated_at")}
    return plain({**row, "id": str(row["id"]), "pull_request": pr if pr["url"] or pr["branch"] else None})


# -- ask --------------------------------------------------------------------------------------------

ask_router = APIRouter(prefix=PREFIX, tags=["ask"])


@ask_router.post("/ask", response_model=models.AskResponse,
                 responses={**ERRORS, 404: {"model": models.ErrorBody}, 429: {"model": models.ErrorBody}},
                 summary="Ask the database a question (admin)")
def ask(request: Request, body: models.AskRequest, _role: Role = ADMIN) -> dict:
    """The same path as `dbarch ask`: the corpus refreshed, Gemini's SQL validated as one read-only
    SELECT and run in a READ ONLY transaction with a timeout and a row limit, refusals and errors sent
    back for a bounded number of retries; without a key, the stored SQL of the closest known
    question, labelled as such. A refusal is an answer (status `refused`, nothing run), not an error."""
    from ..ask.answer import answer
    from ..ask.corpus import refresh_corpus

    service = _service(request)
    if not service.ask_slots.acquire(blocking=False):
        raise ApiError(429, f"{service.config.max_concurrent_asks} questions are being answered already",
                       "retry in a few seconds", headers={"Retry-After": "5"})
    try:
        name = service.target_name(body.target)
        cap = service.config.ask_settings.max_rows
        settings = dataclasses.replace(service.config.ask_settings, max_rows=min(body.max_rows or cap, cap))
        client = service.config.resources["gemini"].client(say=log.warning)
        with service.target.connect(name) as t, service.store.connect() as s:
            with service.corpus_lock:   # one refresh at a time: two would race on the same documents
                refresh_corpus(t, s, service.embedder, target=name, schemas=settings.schemas)
            result = answer(body.question, target_conn=t, store_conn=s, embedder=service.embedder,
                            client=client, target=name, settings=settings)
    finally:
        service.ask_slots.release()
    data = plain(result.to_dict())
    data["sql_source"] = {"gemini": "gemini", "known_pair": "stored_example"}.get(result.source) if result.sql else None
    return data


# -- audits -----------------------------------------------------------------------------------------

audit_router = APIRouter(prefix=PREFIX, tags=["audits"])


@audit_router.post("/audits", status_code=202, response_model=models.AuditStarted,
                   responses={**ERRORS, 404: {"model": models.ErrorBody}}, summary="Start a weekly audit (admin)")
def start_audit(request: Request, body: models.AuditRequest, _role: Role = ADMIN) -> dict:
    """Runs the weekly audit job (the schedule's) for one target and week as a Dagster run in the
    instance, in the background; poll GET /audits/{run_id}."""
    service = _service(request)
    name = service.target_name(body.target)
    week = resolve_week(body.week)
    run_id, started = service.audits().start(name, week)
    return {"run_id": run_id, "target": name, "week": week, "started": started,
            "status_url": f"{PREFIX}/audits/{run_id}"}


@audit_router.get("/audits/{run_id}", response_model=models.AuditStatus,
                  responses={**ERRORS, 404: {"model": models.ErrorBody}}, summary="An audit run and its report")
def audit_status(request: Request, run_id: uuid.UUID, _role: Role = READ) -> dict:
    """The run's status in the Dagster instance and, once it succeeded, the week's report."""
    from .. import report
    from ..defs.partitions import audit_key

    service = _service(request)
    status = service.audits().status(str(run_id))
    if status is None:
        raise ApiError(404, f"no run {run_id} in the Dagster instance", "start one with POST /admin/database/audits")
    if status["status"] == dg.DagsterRunStatus.SUCCESS.value and status["target"] and status["week"]:
        with service.store.connect() as s:
            data = report.audit_result(s, target=status["target"],
                                       settings=service.config.resources["audit_settings"].settings(),
                                       partition_key=str(audit_key(status["target"], status["week"])))
        status["report"], status["report_text"] = plain(data), report.format_report(data)
    return status


# -- the application --------------------------------------------------------------------------------

def create_app(config: ApiConfig) -> FastAPI:
    service = Service(config)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if config.warm:
            service.embed("SELECT 1")
        yield
        service.close()

    app = FastAPI(title="dbarch admin API", version="1", lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="The optimization history, the similar-optimization search, ask the database and "
                              "weekly audits, behind bearer tokens (read or admin). Metrics at /metrics.")
    app.state.dbarch = service
    app.add_middleware(BodyLimit, max_bytes=config.max_body_bytes)
    app.include_router(router)
    app.include_router(ask_router)
    app.include_router(audit_router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    redact = config.redactor

    def error(status: int, message: str, fix: str | None = None, headers: dict | None = None) -> JSONResponse:
        body = {"error": redact(message)}
        if fix:
            body["fix"] = redact(fix)
        return JSONResponse(body, status_code=status, headers=headers)

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return error(exc.status, exc.error, exc.fix, exc.headers)

    @app.exception_handler(DbarchError)
    async def _dbarch_error(_request: Request, exc: DbarchError) -> JSONResponse:
        if isinstance(exc, UnreachableDatabase):
            log.error("database unavailable: %s", exc.problem)
            return error(503, exc.problem, exc.fix or None, headers={"Retry-After": "30"})
        return error(400, exc.problem, exc.fix or None)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        return error(422, f"invalid request: {problems}", "see the endpoint's schema at /docs")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(psycopg.OperationalError)
    async def _database_down(_request: Request, exc: psycopg.OperationalError) -> JSONResponse:
        log.error("database unavailable: %s", exc)
        return error(503, "a database dbarch needs is unavailable", "check the store and target servers; "
                     "the server log has the details", headers={"Retry-After": "30"})

    @app.exception_handler(PoolTimeout)
    async def _pool_timeout(_request: Request, exc: PoolTimeout) -> JSONResponse:
        log.error("no store connection available: %s", exc)
        return error(503, "no store connection became available in time", "retry; if it persists, check the "
                     "store server (the server log has the details)", headers={"Retry-After": "30"})

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected error", exc_info=exc)
        return error(500, "internal error", "the server log has the details")

    @app.get("/docs", include_in_schema=False)
    def docs(request: Request) -> Response:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}", title="dbarch admin API",
            swagger_js_url=f"{root}/static/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url=f"{root}/static/swagger-ui/swagger-ui.css",
            swagger_favicon_url=f"{root}/static/swagger-ui/favicon-32x32.png",
            swagger_ui_parameters={"validatorUrl": None, "persistAuthorization": False})

    @app.get("/metrics", tags=["monitoring"], summary="Prometheus metrics of the store",
             response_class=Response, responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
    def prometheus_metrics() -> Response:
        """The store's metrics in the Prometheus text format (no token: scrapers rarely carry one, and
        the series hold names and numbers, no statement text)."""
        return Response(generate_latest(metrics.registry_for(service.store_conn)), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz", tags=["monitoring"], summary="Liveness and store reachability")
    def healthz() -> dict:
        with service.store_conn() as s:
            s.execute("SELECT 1")
        return {"status": "ok"}

    return app
