"""Shapes pg_stat_statements hands over that no other test writes: typed literals it cut in half
(`interval '60 days'` kept as `interval $2`, a syntax error), and an OR over two columns of one table,
which PostgreSQL serves only with an index on each branch (a BitmapOr)."""

from __future__ import annotations

import random

import psycopg

from dbarch_pipeline import report
from dbarch_pipeline.advisor import analyze as analyze_module
from dbarch_pipeline.advisor.analyze import analyze, column_cast
from dbarch_pipeline.advisor.catalog import Catalog
from dbarch_pipeline.bench.params import typed_literals
from dbarch_pipeline.run import audit_resources, materialize_audit

from .conftest import FAST_SETTINGS, fresh_database, generated_seeds

# this database's statistics only: other tests' module-scoped databases keep theirs
RESET_OWN = ("SELECT pg_stat_statements_reset(0, (SELECT oid FROM pg_database WHERE datname = current_database()), 0)")

TYPED = [("interval", "'3 days'"), ("date", "'2024-02-01'"), ("timestamp", "'2024-02-01 10:00'"),
         ("timestamptz", "'2024-02-01 10:00+00'"), ("timestamp with time zone", "'2024-02-01 10:00+00'"),
         ("numeric", "'1.5'"), ("bool", "'true'"), ("jsonb", "'{\"a\": 1}'"), ("double precision", "'2.5'"),
         ("text", "'x'"), ("int", "'4'")]
# places where a word meets a `$n` without being a type: they must stay as they are
KEYWORDS = ["LIMIT {p}", "OFFSET {p}", "a BETWEEN {p} AND {p}", "CASE WHEN b THEN {p} ELSE {p} END = c",
            "t LIKE {p} ESCAPE {p}", "(d AT TIME ZONE {p}) IS NOT NULL", "e IN ({p}, {p})", "NOT b = {p}"]


def _audit(url: str, store_dsn: str) -> dict:
    """The real audit (Dagster) and its JSON, as the CLI prints it."""
    resources = audit_resources(target_dsn=url, store_dsn=store_dsn, settings={**FAST_SETTINGS, "min_mean_ms": 0.2})
    materialize_audit(resources)
    with resources["store"].connect() as s:
        return report.audit_result(s, target=resources["target"].target_name(),
                                   settings=resources["audit_settings"].settings())


def _statement(rng: random.Random) -> tuple[str, str, list[str]]:
    """(pg_stat_statements-like text, the text dbarch should run, the typed literals' types)"""
    n, parts, want, types = 0, [], [], []
    for _ in range(rng.randrange(1, 5)):
        n += 1
        if rng.random() < 0.5:
            type_name, _literal = rng.choice(TYPED)
            spaced = type_name.replace(" ", rng.choice([" ", "  ", "\n "]))
            parts.append(f"{spaced} ${n} IS NOT NULL")
            want.append(f"${n}::{type_name} IS NOT NULL")
            types.append(type_name)
        else:
            shape = rng.choice([k for k in KEYWORDS if not k.startswith(("LIMIT", "OFFSET"))])
            text = shape
            while "{p}" in text:
                text = text.replace("{p}", f"${n}", 1)
                n += 1
            n -= 1
            parts.append(text)
            want.append(text)
    tail = rng.choice(["", f" LIMIT ${n + 1}", f" LIMIT ${n + 1} OFFSET ${n + 2}"])
    head = "SELECT id FROM shapes WHERE "
    return head + " AND ".join(parts) + tail, head + " AND ".join(want) + tail, types


def test_typed_literals_written_back_on_generated_statements(server):
    url = fresh_database("dbarch_test_typed")
    seed = random.randrange(1_000_000)
    rng = random.Random(seed)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE shapes (id int, a int, b bool, c int, d timestamptz, e int, t text)")
        for _ in range(150):
            pgss, want, _types = _statement(rng)
            got = typed_literals(conn, pgss)
            assert " ".join(got.split()) == " ".join(want.split()), (seed, pgss, got)
            try:
                conn.execute(f"PREPARE p AS {got}")
            except psycopg.errors.SyntaxError as exc:
                raise AssertionError((seed, pgss, got)) from exc
            except psycopg.Error:
                pass   # the generator does not type its keyword shapes: only the syntax is checked
            finally:
                conn.execute("DEALLOCATE ALL")


def test_typed_literals_from_pg_stat_statements_round_trip(server):
    """The real thing: run statements with typed literals, read their text back from
    pg_stat_statements, and prepare what dbarch makes of it."""
    url = fresh_database("dbarch_test_typed_pgss")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE shapes (id int, at timestamptz, day date, amount numeric, doc jsonb)")
        conn.execute(RESET_OWN)
        conn.execute("SELECT id FROM shapes WHERE at > now() - interval '7 days' AND day >= date '2024-01-01' "
                     "AND amount > numeric '2.5' AND doc @> jsonb '{\"k\": 1}'")
        text = conn.execute("SELECT query FROM pg_stat_statements WHERE query LIKE '%FROM shapes%'").fetchone()[0]
        assert "interval $1" in text, text
        try:
            conn.execute(f"PREPARE broken AS {text}")
            raise AssertionError("pg_stat_statements' text was expected not to parse")
        except psycopg.errors.SyntaxError:
            pass
        fixed = typed_literals(conn, text)
        conn.execute(f"PREPARE fixed AS {fixed}")
        types = conn.execute("SELECT parameter_types::text[] FROM pg_prepared_statements WHERE name = 'fixed'").fetchone()[0]
        assert types == ["interval", "date", "numeric", "jsonb"], (fixed, types)


def test_or_branches_on_generated_statements():
    seed = random.randrange(1_000_000)
    rng = random.Random(seed)
    preds = ["{c} = {p}", "{c} > {p}", "{c} BETWEEN {p} AND {p}", "lower({c}) = {p}", "{c} LIKE {p}", "{c} IN ({p}, {p})"]
    for _ in range(200):
        n, branches, cols = 0, [], []
        for _b in range(rng.randrange(2, 5)):
            col = rng.choice("abcdefgh")
            text = rng.choice(preds).replace("{c}", col)
            while "{p}" in text:
                n += 1
                text = text.replace("{p}", f"${n}", 1)
            if rng.random() < 0.3:
                n += 1
                text = f"({text} AND z = ${n})"
            branches.append(text)
            cols.append(col)
        where = " OR ".join(branches)
        extra = rng.choice(["", "tenant = 7 AND "])
        shape = analyze(f"SELECT * FROM t WHERE {extra}({where})")
        assert len(shape.any_of) == 1, (seed, where, shape.any_of)
        table, got = shape.any_of[0]
        assert table == "t" and len(got) == len(branches), (seed, where)
        for col, branch in zip(cols, got):
            assert any(p.column in (col, f"lower({col})") for p in branch), (seed, where, branch)
        assert [p.column for p in shape.predicates] == (["tenant"] if extra else []), (seed, shape.predicates)
        # an OR across two tables, or with a branch no index serves, is no such group
        assert not analyze(f"SELECT * FROM t JOIN u ON u.id = t.u WHERE t.a = $1 OR u.b = $2").any_of
        assert not analyze("SELECT * FROM t WHERE a = $1 OR length(b) > a").any_of


def test_or_over_two_columns_gets_an_index_per_branch_measured_together(server, store_dsn):
    url = fresh_database("dbarch_test_or")
    rng = random.Random(5)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE members (id int PRIMARY KEY, email text NOT NULL, phone text NOT NULL, "
                     "note text NOT NULL)")
        conn.execute("INSERT INTO members SELECT g, 'm' || g || '@x.org', '+1' || (5550000 + g), repeat('n', 30) "
                     "FROM generate_series(1, 80000) g")
        conn.execute("VACUUM ANALYZE members")
        conn.execute(RESET_OWN)
        for _ in range(12):
            k = rng.randrange(1, 80001)
            conn.execute("SELECT id, note FROM members WHERE email = %s OR phone = %s",
                         (f"m{k}@x.org", f"+1{5550000 + rng.randrange(1, 80001)}"))
        conn.execute("SELECT pg_stat_force_next_flush()")
    result = _audit(url, store_dsn)
    chosen = sorted(i["ddl"] for i in result["indexes"])
    assert len(chosen) == 2 and '("email")' in chosen[0] and '("phone")' in chosen[1], chosen
    recs = [r for r in result["recommendations"] if "OR phone" in r["query"]]
    assert len(recs) == 2 and all(r["evidence"].get("configuration") for r in recs), recs
    assert all(r["measured_gain_pct"] > 90 for r in recs), [(r["ddl"], r["measured_gain_pct"]) for r in recs]


def test_is_not_null_on_a_mostly_null_column_gets_a_partial_index(server, store_dsn):
    url = fresh_database("dbarch_test_nulls")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE tickets (id int PRIMARY KEY, escalated_at timestamptz, closed_at timestamptz, "
                     "body text NOT NULL)")
        # escalated: 0.2% of rows; closed: all but 0.3%
        conn.execute("INSERT INTO tickets SELECT g, CASE WHEN g % 500 = 0 THEN now() END, "
                     "CASE WHEN g % 300 <> 0 THEN now() END, repeat('b', 40) FROM generate_series(1, 90000) g")
        conn.execute("VACUUM ANALYZE tickets")
        conn.execute(RESET_OWN)
        for _ in range(10):
            conn.execute("SELECT id, body FROM tickets WHERE escalated_at IS NOT NULL")
            conn.execute("SELECT id FROM tickets WHERE closed_at IS NULL")
        conn.execute("SELECT pg_stat_force_next_flush()")
    result = _audit(url, store_dsn)
    by_query = {" ".join(r["query"].split()): r for r in result["recommendations"]}
    escalated = next(r for q, r in by_query.items() if "escalated_at IS NOT NULL" in q)
    assert escalated["ddl"].endswith('WHERE "escalated_at" IS NOT NULL'), escalated["ddl"]
    closed = next(r for q, r in by_query.items() if "closed_at IS NULL" in q)
    assert '("closed_at")' in closed["ddl"], closed["ddl"]
    assert all(r["measured_gain_pct"] > 80 for r in (escalated, closed)), by_query


def test_a_cast_the_application_forces_on_a_column_gets_an_expression_index(server, store_dsn):
    """Python's float binds as double precision: `amount > $1` on a numeric column then runs as
    `(amount)::double precision > $1`, which no index on amount serves. A varchar column compared
    with text is cast too, but binary-coercibly: its plain index serves, so no second candidate."""
    url = fresh_database("dbarch_test_casts")
    rng = random.Random(11)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE payments (id int PRIMARY KEY, amount numeric NOT NULL, "
                     "ref varchar(40) NOT NULL, memo text NOT NULL)")
        conn.execute("INSERT INTO payments SELECT g, (g % 100000) / 100.0, 'r' || g, repeat('m', 30) "
                     "FROM generate_series(1, 100000) g")
        conn.execute("VACUUM ANALYZE payments")
        conn.execute(RESET_OWN)
        for _ in range(10):
            conn.execute("SELECT id, memo FROM payments WHERE amount > %s", (999.9 + rng.random() / 20,))
            conn.execute("SELECT id, memo FROM payments WHERE ref = %s", (f"r{rng.randrange(1, 100001)}",))
        conn.execute("SELECT pg_stat_force_next_flush()")
    result = _audit(url, store_dsn)
    recs = {("amount" if "amount" in r["query"] else "ref"): r for r in result["recommendations"]}
    assert "double precision" in recs["amount"]["ddl"], recs["amount"]["ddl"]
    assert recs["amount"]["measured_gain_pct"] > 80, recs["amount"]
    assert recs["ref"]["ddl"].endswith('("ref")'), recs["ref"]["ddl"]
    tried = [c for q in result["queries"] if "ref =" in q["query"] for c in [q["candidates"]]]
    assert tried and tried[0] <= 2, tried   # (ref) and (ref) INCLUDE (...): no `(ref)::text` besides


def test_a_slow_delete_is_timed_by_the_select_that_finds_its_rows(server, store_dsn):
    """dbarch never executes a write; the rows it touches are found by its WHERE, which an index
    serves: that half is timed as a SELECT dbarch writes, with the write's own `$n` and types."""
    url = fresh_database("dbarch_test_write_scan")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE sessions (id bigint PRIMARY KEY, user_id int NOT NULL, expires_at timestamptz NOT NULL, "
                     "data text NOT NULL)")
        conn.execute("INSERT INTO sessions SELECT g, g % 7000, now() + (g % 100000) * interval '1 minute', "
                     "repeat('d', 50) FROM generate_series(1, 100000) g")
        conn.execute("VACUUM ANALYZE sessions")
        conn.execute(RESET_OWN)
        for n in range(12):
            # each call deletes nothing new after the first: it keeps scanning the whole table
            conn.execute("DELETE FROM sessions WHERE expires_at < now() - interval '1 day'")
            conn.execute("UPDATE sessions SET data = %s WHERE user_id = %s AND expires_at > now()", ("x", 7001 + n))
        conn.execute("SELECT pg_stat_force_next_flush()")
        before = conn.execute("SELECT count(*), sum(length(data)) FROM sessions").fetchone()
    result = _audit(url, store_dsn)
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*), sum(length(data)) FROM sessions").fetchone() == before  # nothing written
    recs = {("delete" if r["query"].lstrip().upper().startswith("DELETE") else "update"): r
            for r in result["recommendations"]}
    assert '("expires_at")' in recs["delete"]["ddl"], recs.get("delete")
    assert recs["delete"]["evidence"]["measured_as"].startswith("SELECT"), recs["delete"]["evidence"]
    assert recs["delete"]["measured_gain_pct"] > 80, recs["delete"]
    assert '"user_id"' in recs["update"]["ddl"] and recs["update"]["evidence"]["measured_as"], recs.get("update")
    assert not result["unmeasured"], result["unmeasured"]


def test_a_statement_whose_constants_were_lost_says_so_before_any_binding_error(server, store_dsn):
    """`date_trunc('day', at AT TIME ZONE 'UTC')` reaches dbarch as `date_trunc($2, at AT TIME ZONE $3)`:
    without the server log the unit and the zone are gone, no expression index can be built, and a
    neutral value for them is no valid unit or zone. The reason names the lost constants."""
    url = fresh_database("dbarch_test_lost_constants")
    with psycopg.connect(url, autocommit=True) as conn:
        db = conn.execute("SELECT current_database()").fetchone()[0]
        for name in ("log_min_duration_statement", "log_min_duration_sample"):
            conn.execute(f'ALTER DATABASE "{db}" SET {name} = -1')
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE visits (id int PRIMARY KEY, at timestamptz NOT NULL, page int NOT NULL)")
        conn.execute("INSERT INTO visits SELECT g, now() - g * interval '1 minute', g % 300 FROM generate_series(1, 90000) g")
        conn.execute("VACUUM ANALYZE visits")
        conn.execute(RESET_OWN)
        for n in range(8):
            conn.execute("SELECT count(*) FROM visits WHERE date_trunc('day', at AT TIME ZONE 'UTC') = %s::timestamp",
                         (f"2026-0{1 + n % 9}-02",))
            conn.execute("SELECT id FROM visits WHERE page = %s", (n,))
        conn.execute("SELECT pg_stat_force_next_flush()")
    result = _audit(url, store_dsn)
    lost = next(q for q in result["queries"] if "date_trunc" in q["query"])
    assert lost.get("unmeasured", "").startswith("no candidate index:") and "constants" in lost["unmeasured"], lost


def test_ilike_and_a_leading_wildcard_get_a_trigram_index_where_pg_trgm_is_installed(server, store_dsn):
    url = fresh_database("dbarch_test_trigram")
    rng = random.Random(3)
    with psycopg.connect(url, autocommit=True) as conn:
        db = conn.execute("SELECT current_database()").fetchone()[0]
        # the application's values reach dbarch through the server log
        conn.execute(f'ALTER DATABASE "{db}" SET log_min_duration_statement = 0')
        conn.execute(f'ALTER DATABASE "{db}" SET log_parameter_max_length = -1')
        conn.execute("CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL, phone text NOT NULL)")
        conn.execute("INSERT INTO customers SELECT g, md5(g::text), '+1' || (5550000000 + g) FROM generate_series(1, 80000) g")
        conn.execute("VACUUM ANALYZE customers")
        no_trgm = Catalog(conn).table("customers")
        assert not no_trgm.trigram      # not installed: never proposed (dbarch installs no extension)
        conn.execute("CREATE EXTENSION pg_trgm")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(RESET_OWN)
        for _ in range(8):
            conn.execute("SELECT id FROM customers WHERE name ILIKE %s", (f"%{rng.randrange(16**4):04x}%",))
            conn.execute("SELECT id FROM customers WHERE phone LIKE %s", (f"%{rng.randrange(10**5):05d}",))
        conn.execute("SELECT pg_stat_force_next_flush()")
    result = _audit(url, store_dsn)
    recs = {("name" if "name ILIKE" in r["query"] else "phone"): r for r in result["recommendations"]}
    for key in ("name", "phone"):
        assert key in recs and "gin_trgm_ops" in recs[key]["ddl"], (key, recs.get(key), [str(q) for q in result["queries"]])
        assert recs[key]["measured_gain_pct"] > 50, recs[key]


def test_typed_literals_and_sampled_constants_together(server):
    """The sampled text lines up with pg_stat_statements' own text (`interval $3`); the constants it
    gives back go into the text dbarch runs (`$3::interval`), whose `$n` are numbered alike."""
    from dbarch_pipeline.audit import runnable
    from dbarch_pipeline.bench import activity
    from dbarch_pipeline.bench.params import recover_constants

    url = fresh_database("dbarch_test_typed_sampled")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE ev (id int, code text, at timestamptz)")
        pgss = "SELECT id FROM ev WHERE substr(code, $2, $3) = $1 AND at > now() - interval $4"
        sampled = "SELECT id FROM ev WHERE substr(code, 1, 8) = $1 AND at > now() - interval '30 days'"
        found = activity.constants(pgss, [sampled])
        assert found and found[0].values == {2: "1", 3: "8", 4: "30 days"}, found
        text = recover_constants(conn, runnable(conn, pgss), None, found).text
        assert "substr(code, '1'::integer, '8'::integer) = $1" in text and "'30 days'::interval" in text, text
        conn.execute(f"PREPARE p AS {text}")   # it parses and plans


CAST_TYPES = ["text", "double precision", "bigint", "numeric", "numeric(12,4)", "character varying(20)",
              "varchar", "real", "timestamp(3) without time zone", "date", "bit(8)", "text[]", "integer[]",
              "character(5)", "time with time zone"]
SOURCE_TYPES = {"amount": "numeric(10,2)", "ref": "character varying(40)", "qty": "integer",
                "at": "timestamp with time zone", "tags": "text[]", "flag": "bit(8)", "code": "character(5)"}


def test_a_cast_of_a_column_is_read_as_postgresql_prints_it(server):
    """One reader of a column cast for the plan and the candidates (analyze.column_cast): every cast
    PostgreSQL can make of a column, printed by PostgreSQL's own deparser (an expression index's
    definition, as in a plan's filter), reads back as that column and the type PostgreSQL names
    (format_type, typmod included); an expression around it does not read as a bare cast."""
    import doctest

    assert doctest.testmod(analyze_module).failed == 0
    url = fresh_database("dbarch_test_casts")
    for seed in generated_seeds(2):
        print(f"seed={seed} (replay with DBARCH_TEST_SEEDS={seed})")
        rng = random.Random(seed)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("DROP TABLE IF EXISTS casts")
            conn.execute("CREATE TABLE casts (" + ", ".join(f'"{c}" {t}' for c, t in SOURCE_TYPES.items()) + ")")
            checked = 0
            for _ in range(40):
                col, target = rng.choice(sorted(SOURCE_TYPES)), rng.choice(CAST_TYPES)
                if rng.random() < 0.3:
                    col = col.upper()   # a quoted name that needs its quotes
                    conn.execute(f'ALTER TABLE casts ADD COLUMN IF NOT EXISTS "{col}" {SOURCE_TYPES[col.lower()]}')
                try:
                    with conn.transaction():
                        conn.execute(f'CREATE INDEX casts_probe ON casts (("{col}"::{target}))')
                        row = conn.execute(
                            "SELECT pg_get_indexdef('casts_probe'::regclass, 1, true), "
                            "format_type(atttypid, atttypmod) FROM pg_attribute "
                            "WHERE attrelid = 'casts_probe'::regclass AND attnum = 1").fetchone()
                        raise psycopg.errors.QueryCanceled   # roll the index back
                except psycopg.errors.QueryCanceled:
                    pass
                except psycopg.Error:
                    continue   # PostgreSQL has no such cast, or it is not immutable
                printed, named = row
                if "::" not in printed:
                    continue   # a cast PostgreSQL elides (the same type)
                assert column_cast(printed) == (col, named), (seed, col, target, printed, named)
                wrapped = f"lower(({printed})::text)"
                assert column_cast(wrapped) is None, (seed, wrapped)
                checked += 1
            assert checked >= 10, seed
