"""Migration files for a recommended index, in the layout of the user's migration tool.

The OptimizationLog's DDL is the statement dbarch measured (`CREATE INDEX "name" ON "schema"."table"
(...)`). A production migration must not block writes while the index builds, so it is rewritten to
`CREATE INDEX CONCURRENTLY IF NOT EXISTS ...`, and its down migration is
`DROP INDEX CONCURRENTLY IF EXISTS "schema"."name"`. The rewrite is checked with sqlglot: the
statement must be exactly one plain CREATE INDEX on a schema-qualified table, and the rewritten text
must parse back to the same index with both flags set.

Three templates:
- "sql": a raw up file and a down file per migration (`{timestamp}_{index_name}.up.sql` / `.down.sql`);
- "alembic": a revision file whose statements run inside `autocommit_block()`;
- "prisma": Prisma's folder layout, `<timestamp>_<name>/migration.sql`, with `down.sql` beside it.

>>> ix = concurrent_index('CREATE INDEX "t_a_idx" ON "public"."t" ("a")')
>>> ix.create
'CREATE INDEX CONCURRENTLY IF NOT EXISTS "t_a_idx" ON "public"."t" ("a")'
>>> ix.drop
'DROP INDEX CONCURRENTLY IF EXISTS "public"."t_a_idx"'
"""

from __future__ import annotations

import hashlib
import re
import string
from dataclasses import dataclass
from datetime import datetime, timezone
from posixpath import normpath

import sqlglot
from psycopg import sql
from sqlglot import exp
from sqlglot.errors import ParseError

from ..errors import DbarchError

TEMPLATES = ("sql", "alembic", "prisma")
DEFAULT_DIRECTORY = {"sql": "migrations", "alembic": "alembic/versions", "prisma": "prisma/migrations"}
# For "prisma" the template names the migration's folder; Prisma fixes the file name (migration.sql).
DEFAULT_FILENAME = {
    "sql": "{timestamp}_{index_name}.{direction}.sql",
    "alembic": "{revision}_{index_name}.py",
    "prisma": "{timestamp}_{index_name}",
}
PLACEHOLDERS = ("timestamp", "fingerprint", "index_name", "schema", "table", "revision", "direction")
TIMESTAMP_FORMAT = "%Y%m%d%H%M%S"

_CREATE_PREFIX = re.compile(r"^\s*CREATE\s+INDEX\s+(?:CONCURRENTLY\s+)?(?:IF\s+NOT\s+EXISTS\s+)?", re.I)
_SAFE_PART = re.compile(r"[^A-Za-z0-9_.-]+")
# Names are written into comments and a Python docstring: dbarch's own names never hold quotes,
# backslashes or control characters, so a name that does is refused rather than escaped.
_PLAIN_NAME = re.compile(r'^[^\x00-\x1f"\\]+$')


class UnsupportedDDL(DbarchError):
    pass


@dataclass(frozen=True)
class IndexMigration:
    """One index as a migration: the statements that create and drop it without blocking writes."""

    schema: str
    table: str
    name: str
    source_ddl: str   # as measured and logged
    create: str       # CREATE INDEX CONCURRENTLY IF NOT EXISTS ...
    drop: str         # DROP INDEX CONCURRENTLY IF EXISTS "schema"."name"

    @property
    def qualified_table(self) -> str:
        return f"{self.schema}.{self.table}"


@dataclass(frozen=True)
class MigrationFile:
    path: str       # relative to the repository root, '/'-separated
    content: str


@dataclass(frozen=True)
class MigrationLayout:
    """Where migrations go and how their files are named; empty means the template's default."""

    template: str = "sql"
    directory: str = ""
    filename: str = ""

    def resolved_directory(self) -> str:
        return (self.directory or DEFAULT_DIRECTORY[self.template]).strip().strip("/")

    def resolved_filename(self) -> str:
        return self.filename.strip() or DEFAULT_FILENAME[self.template]

    def validate(self) -> "MigrationLayout":
        if self.template not in TEMPLATES:
            raise DbarchError(f"unknown migration template {self.template!r}",
                              f"use one of: {', '.join(TEMPLATES)}")
        name = self.resolved_filename()
        try:
            fields = {f for _, f, _, _ in string.Formatter().parse(name) if f is not None}
        except ValueError as exc:
            raise DbarchError(f"the migration file-name template {name!r} is malformed: {exc}",
                              "write placeholders as {timestamp}, {index_name}, ...") from None
        unknown = fields - set(PLACEHOLDERS)
        if unknown:
            raise DbarchError(f"the migration file-name template {name!r} uses unknown placeholders "
                              f"{sorted(unknown)}", f"use only: {', '.join('{%s}' % p for p in PLACEHOLDERS)}")
        if self.template == "sql" and "direction" not in fields:
            raise DbarchError(f"the sql template writes an up and a down file, but {name!r} has no {{direction}}",
                              "include {direction} in the file name, e.g. {timestamp}_{index_name}.{direction}.sql")
        if self.template != "sql" and "direction" in fields:
            raise DbarchError(f"the {self.template} template keeps up and down in one place; "
                              f"{name!r} must not use {{direction}}", "remove {direction} from the file name")
        if not {"index_name", "fingerprint"} & fields:
            raise DbarchError(f"the migration file-name template {name!r} would give every migration the "
                              "same name", "include {index_name} or {fingerprint}")
        directory = self.resolved_directory()
        if directory.startswith("/") or ".." in directory.split("/"):
            raise DbarchError(f"the migrations directory {self.directory!r} is outside the repository",
                              "give a path relative to the repository root, e.g. db/migrations")
        return self


def concurrent_index(ddl: str) -> IndexMigration:
    """The logged CREATE INDEX as `CREATE INDEX CONCURRENTLY IF NOT EXISTS`, with its down statement."""
    source = ddl.strip().rstrip(";").strip()
    index = _parse_index(source)
    schema_id, table_id, name_id = index
    if not all(_PLAIN_NAME.match(part) for part in index):
        raise UnsupportedDDL(f"the index statement names an unusual identifier: {source}",
                             "only index recommendations produced by dbarch can become migrations")
    match = _CREATE_PREFIX.match(source)
    if not match:
        raise UnsupportedDDL(f"not a plain CREATE INDEX statement: {source}",
                             "only index recommendations produced by dbarch can become migrations")
    # Only the keywords change: the rest is byte for byte the statement that was measured.
    create = "CREATE INDEX CONCURRENTLY IF NOT EXISTS " + source[match.end():]
    rewritten = sqlglot.parse_one(create, read="postgres")
    if (not rewritten.args.get("concurrently") or not rewritten.args.get("exists")
            or _parse_index(create) != index):
        raise UnsupportedDDL(f"could not rewrite the index statement safely: {source}",
                             "report this statement to the dbarch maintainers")
    drop = sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}.{}").format(
        sql.Identifier(schema_id), sql.Identifier(name_id)).as_string(None)
    return IndexMigration(schema=schema_id, table=table_id, name=name_id, source_ddl=source,
                          create=create, drop=drop)


def _parse_index(statement: str) -> tuple[str, str, str]:
    try:
        trees = [t for t in sqlglot.parse(statement, read="postgres") if t is not None]
    except ParseError as exc:
        raise UnsupportedDDL(f"cannot parse the index statement {statement!r}: {exc}",
                             "only index recommendations produced by dbarch can become migrations") from None
    if len(trees) != 1 or not isinstance(trees[0], exp.Create) or str(trees[0].args.get("kind")).upper() != "INDEX":
        raise UnsupportedDDL(f"not a single CREATE INDEX statement: {statement}",
                             "only index recommendations produced by dbarch can become migrations")
    create = trees[0]
    if create.args.get("unique"):
        # a unique index changes what the application may write; it is a decision, not a tuning
        raise UnsupportedDDL(f"a UNIQUE index is not an optimization dbarch publishes: {statement}",
                             "create unique indexes through a reviewed schema change")
    index = create.this
    table = index.args.get("table") if isinstance(index, exp.Index) else None
    if not isinstance(table, exp.Table) or not table.db or not index.name:
        raise UnsupportedDDL(f"the index statement must name the index and a schema-qualified table: {statement}",
                             "only index recommendations produced by dbarch can become migrations")
    return table.db, table.name, index.name


# -- rendering -------------------------------------------------------------------------------------

def render(index: IndexMigration, layout: MigrationLayout, *, fingerprint: str,
           created_at: datetime) -> list[MigrationFile]:
    """The files of one migration. Names derive from the log row (its creation time, fingerprint
    and index), so rendering the same row again yields the same paths: re-runs update files, never
    add new ones."""
    layout.validate()
    stamp = created_at.astimezone(timezone.utc).strftime(TIMESTAMP_FORMAT)
    revision = hashlib.sha256(f"{fingerprint}:{index.schema}.{index.name}".encode()).hexdigest()[:12]
    values = {"timestamp": stamp, "fingerprint": fingerprint, "index_name": index.name,
              "schema": index.schema, "table": index.table, "revision": revision}
    directory = layout.resolved_directory()
    header = _header(index, fingerprint)
    if layout.template == "sql":
        return [
            MigrationFile(_path(directory, layout.resolved_filename(), {**values, "direction": "up"}),
                          _sql_up(index, header)),
            MigrationFile(_path(directory, layout.resolved_filename(), {**values, "direction": "down"}),
                          _sql_down(index, header)),
        ]
    if layout.template == "alembic":
        return [MigrationFile(_path(directory, layout.resolved_filename(), values),
                              _alembic(index, fingerprint, revision, created_at))]
    folder = _path(directory, layout.resolved_filename(), values)
    return [MigrationFile(f"{folder}/migration.sql", _prisma_up(index, header, folder.rsplit('/', 1)[-1])),
            MigrationFile(f"{folder}/down.sql", _sql_down(index, header))]


def _path(directory: str, template: str, values: dict[str, str]) -> str:
    safe = {k: _SAFE_PART.sub("_", v) for k, v in values.items()}
    name = template.format_map(safe)
    path = normpath(f"{directory}/{name}" if directory else name)
    if path.startswith(("/", "../")) or path == "..":
        raise DbarchError(f"the migration path {path!r} is outside the repository",
                          "use a relative migrations directory and file-name template")
    return path


def _header(index: IndexMigration, fingerprint: str) -> str:
    return (f"-- dbarch: index {index.name} on {index.qualified_table}, "
            f"for the statement with fingerprint {fingerprint}.\n")


def _sql_up(index: IndexMigration, header: str) -> str:
    return (
        header
        + "-- Run this file on its own, outside a transaction: CREATE INDEX CONCURRENTLY builds the index\n"
        "-- without blocking writes, and PostgreSQL refuses it inside BEGIN ... COMMIT (error 25001).\n"
        "-- `psql -f` runs it as is; a tool that wraps each migration in a transaction needs its\n"
        "-- no-transaction option for this file.\n"
        "-- If the build fails (timeout, cancelled session) it leaves an INVALID index that IF NOT EXISTS\n"
        "-- will not replace: run the down migration, then this one again.\n"
        f"{index.create};\n"
    )


def _sql_down(index: IndexMigration, header: str) -> str:
    return (
        header
        + "-- Reverts the index. Also outside a transaction: DROP INDEX CONCURRENTLY waits for running\n"
        "-- queries instead of blocking reads and writes on the table.\n"
        f"{index.drop};\n"
    )


def _prisma_up(index: IndexMigration, header: str, folder: str) -> str:
    return (
        header
        + "-- Prisma Migrate sends this file to PostgreSQL as one script, and PostgreSQL runs a script of\n"
        "-- several statements as one implicit transaction, in which CREATE INDEX CONCURRENTLY fails\n"
        "-- (error 25001). This file therefore holds exactly one statement: keep it that way.\n"
        "-- Whether Prisma applies even a one-statement migration outside a transaction has varied between\n"
        "-- releases and databases: if `prisma migrate deploy` stops with error 25001, run this file with\n"
        f"-- `prisma db execute --file migration.sql` and record it with `prisma migrate resolve --applied {folder}`.\n"
        "-- Prisma has no down migrations: down.sql beside this file reverts the index by hand\n"
        "-- (`prisma db execute --file down.sql`).\n"
        "-- The index is not in schema.prisma: declare it there (@@index(..., map: \"" + index.name + "\")),\n"
        "-- or the next `prisma migrate dev` may propose to drop it.\n"
        f"{index.create};\n"
    )


def _alembic(index: IndexMigration, fingerprint: str, revision: str, created_at: datetime) -> str:
    return f'''"""dbarch: index {index.name} on {index.qualified_table}

Statement fingerprint: {fingerprint}
Revision ID: {revision}
Revises:
Create Date: {created_at.astimezone(timezone.utc).isoformat(sep=" ", timespec="seconds")}
"""

from alembic import op

revision = {revision!r}
# dbarch cannot see your migration history: set this to your current head (`alembic heads`) before
# merging, or Alembic will report two heads.
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    # CREATE INDEX CONCURRENTLY builds the index without blocking writes, but PostgreSQL refuses it
    # inside a transaction block, and Alembic runs each migration inside one on PostgreSQL.
    # autocommit_block() commits what came before and runs this statement outside any transaction.
    # If the build fails it leaves an INVALID index that IF NOT EXISTS will not replace: downgrade,
    # then upgrade again.
    with op.get_context().autocommit_block():
        op.execute({index.create!r})


def downgrade() -> None:
    # DROP INDEX CONCURRENTLY has the same restriction, and the same reason to be concurrent.
    with op.get_context().autocommit_block():
        op.execute({index.drop!r})
'''
