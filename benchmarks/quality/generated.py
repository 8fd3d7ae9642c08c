"""A generated workload, driven by a seed: a schema with random sizes and distributions, statements
drawn from a grammar, and an application that sends values from its own distributions.

Nothing here knows how dbarch works. The application binds every value through psycopg (so the server,
pg_stat_statements and the server log see `$n`); dbarch sees the workload only the way it would in
production. Each statement also carries `refs`: the columns and expressions it filters, joins or
sorts on, in the grammar's own terms, from which the oracle (oracle.py) builds its candidate space.

The schema has three tables with random nouns for names (a parent, a child, an event table, the
largest), plus a 200-row lookup table:

  parent  email (unique values, mixed case in requests), name (skewed text prefixes), region (Zipf),
          tier and score (correlated), referrer_id (NULL-heavy), created_at
  child   parent_id (Zipf), sku, title (skewed prefixes), price_cents (uniform), category (Zipf),
          status (one common value, one rare), attrs jsonb (brand, color, size, vintage), tags text[]
          (Zipf), updated_at, deleted_at (NULL-heavy)
  event   child_id and parent_id (Zipf, independent), kind (Zipf), amount, code (hex), payload jsonb
          with a rare key, happened_at (ends now, correlated with id)

Sizes and distribution parameters are drawn from the seed; `scale` multiplies the row counts
(scale 1: event 150k-600k rows; scale 5: up to 3M).
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Callable

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from .workloads import Statement

PARENT_NOUNS = ["accounts", "members", "tenants", "shoppers", "clients", "players"]
CHILD_NOUNS = ["listings", "articles", "assets", "offers", "designs", "tracks"]
EVENT_NOUNS = ["activity", "events", "ledger", "touches", "signals", "audits"]
LOOKUP_NOUNS = ["labels", "zones", "channels", "tiers_ref"]
WORDS = ["alpha", "bravo", "cedar", "delta", "ember", "fjord", "gale", "harbor", "iris", "jade",
         "kilo", "lumen", "maple", "nova", "onyx", "pine", "quartz", "raven", "sable", "tundra",
         "umber", "vale", "willow", "xeno", "yarrow", "zephyr", "amber", "birch", "coral", "dune",
         "echo", "flint", "grove", "heath", "ivory", "juniper", "kestrel", "larch", "moss", "nectar"]
KINDS = ["view", "click", "cart", "buy", "share", "like", "report", "refund", "rate", "follow", "save", "skip"]
COLORS = ["red", "blue", "green", "black", "white", "grey", "navy", "teal", "olive", "gold", "pink", "tan"]
SIZES = ["xs", "s", "m", "l", "xl", "xxl"]
N_TAGS, N_BRANDS, N_SOURCES = 60, 40, 8


@dataclass(frozen=True)
class Ref:
    """What a statement asks of one table: `key` is a column name or an expression (SQL text over
    the table's columns); kind is eq, range, order_desc, order_asc, like, join, gin_jsonb
    (containment), gin_jsonb_key (key exists) or gin_array."""
    table: str
    key: str
    kind: str

    @property
    def is_expression(self) -> bool:
        return not self.key.isidentifier()


@dataclass(frozen=True)
class GenStatement(Statement):
    refs: tuple[Ref, ...] = ()
    template: str = ""


@dataclass
class Schema:
    seed: int
    scale: float
    parent: str
    child: str
    event: str
    lookup: str
    rows: dict[str, int]
    params: dict[str, float]          # distribution parameters drawn from the seed

    @property
    def tables(self) -> list[str]:
        return [self.parent, self.child, self.event, self.lookup]


def draw_schema(seed: int, scale: float = 1.0) -> Schema:
    rng = random.Random(seed)
    rows = {
        "parent": int(rng.randint(20_000, 80_000) * scale),
        "child": int(rng.randint(50_000, 250_000) * scale),
        "event": int(rng.randint(150_000, 600_000) * scale),
        "lookup": 200,
    }
    params = {
        "zipf_parent": rng.uniform(2.0, 4.0),     # exponent of the power law of parent ids in children/events
        "zipf_child": rng.uniform(1.5, 3.5),
        "zipf_kind": rng.uniform(1.5, 3.0),
        "zipf_word": rng.uniform(1.5, 3.0),
        "referrer_null": rng.uniform(0.85, 0.97),
        "deleted_null": rng.uniform(0.97, 0.995),
        "rare_status": rng.uniform(0.001, 0.005),
        "rare_key": rng.uniform(0.002, 0.01),
        "span_days": rng.choice([30, 90, 365]),
    }
    suffix = "".join(rng.choice(string.ascii_lowercase) for _ in range(3))
    return Schema(seed, scale, f"{rng.choice(PARENT_NOUNS)}_{suffix}", f"{rng.choice(CHILD_NOUNS)}_{suffix}",
                  f"{rng.choice(EVENT_NOUNS)}_{suffix}", f"{rng.choice(LOOKUP_NOUNS)}_{suffix}",
                  {k: max(v, 50) for k, v in rows.items()}, params)


# -- load (server-side, seeded) ---------------------------------------------------------------------

def _zipf(n: str, exponent: str) -> str:
    """A power-law draw in 1..n (small values dominate), as SQL over two bound placeholders."""
    return f"(1 + floor({n} * power(random(), {exponent})))::bigint"


def load(conn: psycopg.Connection, schema: Schema, progress: Callable[[str], None] = lambda _m: None
         ) -> dict[str, int]:
    """Create and fill the tables (primary keys only), server-side with generate_series and a seeded
    random(); then VACUUM ANALYZE is the caller's."""
    p, r = schema.params, schema.rows
    ident = {k: sql.Identifier(getattr(schema, k)) for k in ("parent", "child", "event", "lookup")}
    conn.execute("SELECT setseed(%s)", ((schema.seed % 10_000) / 10_000,))
    words = "ARRAY[" + ",".join(f"'{w}'" for w in WORDS) + "]"     # constants of this module
    kinds = "ARRAY[" + ",".join(f"'{k}'" for k in KINDS) + "]"
    colors = "ARRAY[" + ",".join(f"'{c}'" for c in COLORS) + "]"
    sizes = "ARRAY[" + ",".join(f"'{s}'" for s in SIZES) + "]"
    statements = [
        sql.SQL("CREATE TABLE {lookup} (id int PRIMARY KEY, label text NOT NULL, grp int NOT NULL)"),
        sql.SQL("INSERT INTO {lookup} SELECT i, 'label ' || i, i % 20 FROM generate_series(1, 200) i"),
        sql.SQL("CREATE TABLE {parent} (id bigint PRIMARY KEY, email text NOT NULL, name text NOT NULL, "
                "region text NOT NULL, tier int NOT NULL, score numeric(8,2) NOT NULL, referrer_id bigint, "
                "created_at timestamptz NOT NULL)"),
        sql.SQL("INSERT INTO {parent} SELECT i, 'user' || i || '@' || 'mail' || " + _zipf("20", "2") + " || '.example', "
                "(" + words + ")[" + _zipf("40", "{zw}") + "] || ' ' || substr(md5(i::text), 1, 10), "
                "'R' || " + _zipf("30", "2.5") + ", t.tier, t.tier * 100 + round((random() * 100)::numeric, 2), "
                "CASE WHEN random() < {rn} THEN NULL ELSE 1 + floor(random() * {np})::bigint END, "
                "now() - ({np} - i) * interval '1 minute' "
                "FROM generate_series(1, {np}) i, LATERAL (SELECT 1 + floor(power(random(), 1.5) * 5)::int "
                "+ 0 * i AS tier) t"),
        sql.SQL("CREATE TABLE {child} (id bigint PRIMARY KEY, parent_id bigint NOT NULL, sku text NOT NULL, "
                "title text NOT NULL, price_cents int NOT NULL, category int NOT NULL, status text NOT NULL, "
                "attrs jsonb NOT NULL, tags text[] NOT NULL, updated_at timestamptz NOT NULL, deleted_at timestamptz)"),
        sql.SQL("INSERT INTO {child} SELECT i, " + _zipf("{np}", "{zp}") + ", 'SKU-' || lpad(i::text, 9, '0'), "
                "(" + words + ")[" + _zipf("40", "{zw}") + "] || ' ' || substr(md5('t' || i), 1, 12), "
                "100 + floor(random() * 99900)::int, " + _zipf("300", "2") + ", "
                "CASE WHEN random() < {rs} THEN 'flagged' WHEN random() < 0.1 THEN 'hidden' ELSE 'active' END, "
                "jsonb_build_object('brand', 'b' || " + _zipf(str(N_BRANDS), "2") + ", 'color', (" + colors + ")["
                + _zipf(str(len(COLORS)), "1.5") + "], 'size', (" + sizes + ")[1 + floor(random() * 6)::int], "
                "'vintage', random() < 0.2), "
                "ARRAY(SELECT DISTINCT 'tag' || " + _zipf(str(N_TAGS), "2") + " FROM generate_series(1, 1 + "
                "floor(random() * 4)::int + 0 * i)), "
                "now() - ({nc} - i) * interval '30 seconds', "
                "CASE WHEN random() < {dn} THEN NULL ELSE now() - random() * interval '300 days' END "
                "FROM generate_series(1, {nc}) i"),
        sql.SQL("CREATE TABLE {event} (id bigint PRIMARY KEY GENERATED BY DEFAULT AS IDENTITY, "
                "child_id bigint NOT NULL, parent_id bigint NOT NULL, kind text NOT NULL, amount numeric(12,2) NOT NULL, "
                "code text NOT NULL, payload jsonb NOT NULL, happened_at timestamptz NOT NULL)"),
        sql.SQL("INSERT INTO {event} (id, child_id, parent_id, kind, amount, code, payload, happened_at) "
                "SELECT i, " + _zipf("{nc}", "{zc}") + ", " + _zipf("{np}", "{zp}") + ", "
                "(" + kinds + ")[" + _zipf(str(len(KINDS)), "{zk}") + "], round((random() * 500)::numeric, 2), "
                "md5('e' || i), "
                "CASE WHEN random() < {rk} THEN jsonb_build_object('src', 's' || " + _zipf(str(N_SOURCES), "2")
                + ", 'v', i % 97, 'err', 'e' || (i % 5)) ELSE jsonb_build_object('src', 's' || "
                + _zipf(str(N_SOURCES), "2") + ", 'v', i % 97) END, "
                "now() - ({ne} - i) * ({span} * interval '1 day' / {ne}) "
                "FROM generate_series(1, {ne}) i"),
        sql.SQL("SELECT setval(pg_get_serial_sequence({event_name}, 'id'), {ne})"),
    ]
    values = {
        **ident, "np": sql.Literal(r["parent"]), "nc": sql.Literal(r["child"]), "ne": sql.Literal(r["event"]),
        "zp": sql.Literal(round(p["zipf_parent"], 3)), "zc": sql.Literal(round(p["zipf_child"], 3)),
        "zk": sql.Literal(round(p["zipf_kind"], 3)), "zw": sql.Literal(round(p["zipf_word"], 3)),
        "rn": sql.Literal(round(p["referrer_null"], 4)), "dn": sql.Literal(round(p["deleted_null"], 4)),
        "rs": sql.Literal(round(p["rare_status"], 5)), "rk": sql.Literal(round(p["rare_key"], 5)),
        "span": sql.Literal(int(p["span_days"])), "event_name": sql.Literal(schema.event),
    }
    for statement in statements:
        conn.execute(statement.format(**values))
    progress("loaded " + ", ".join(f"{getattr(schema, k)} {n:,}" for k, n in r.items()))
    return {getattr(schema, k): n for k, n in r.items()}


# -- the application's own knowledge of its data ------------------------------------------------------

def samples(conn: psycopg.Connection, schema: Schema, seed: int) -> dict:
    """What an application has in hand: ids of its active users and items, their emails, titles,
    attribute documents, tags. Drawn once (seeded) from the data, the way a running application's
    sessions and pages carry them."""
    def column(query: sql.Composable, *args) -> list:
        return [row[0] for row in conn.execute(query, args)]

    P, C, E = (sql.Identifier(n) for n in (schema.parent, schema.child, schema.event))
    conn.execute("SELECT setseed(%s)", (((seed * 7) % 10_000) / 10_000,))
    return {
        "parents": column(sql.SQL("SELECT parent_id FROM {} ORDER BY random() LIMIT 400").format(E)),
        "children": column(sql.SQL("SELECT child_id FROM {} ORDER BY random() LIMIT 400").format(E)),
        "emails": column(sql.SQL("SELECT email FROM {} ORDER BY random() LIMIT 300").format(P)),
        "titles": column(sql.SQL("SELECT title FROM {} ORDER BY random() LIMIT 300").format(C)),
        "skus": column(sql.SQL("SELECT sku FROM {} ORDER BY random() LIMIT 300").format(C)),
        "codes": column(sql.SQL("SELECT code FROM {} ORDER BY random() LIMIT 300").format(E)),
        "attrs": column(sql.SQL("SELECT attrs FROM {} ORDER BY random() LIMIT 300").format(C)),
        "tagsets": column(sql.SQL("SELECT tags FROM {} WHERE cardinality(tags) >= 2 ORDER BY random() "
                                  "LIMIT 300").format(C)),
        "referrers": column(sql.SQL("SELECT referrer_id FROM {} WHERE referrer_id IS NOT NULL "
                                    "ORDER BY random() LIMIT 200").format(P)),
        "max_event": conn.execute(sql.SQL("SELECT max(id) FROM {}").format(E)).fetchone()[0],
        "max_child": schema.rows["child"],
        "window_start": conn.execute(sql.SQL("SELECT min(happened_at) FROM {}").format(E)).fetchone()[0],
        "span_days": schema.params["span_days"],
    }


# -- the grammar ------------------------------------------------------------------------------------

Template = Callable[[Schema, random.Random], GenStatement]


def _st(name: str, text: str, calls: int, expect: str, args, refs: tuple[Ref, ...], replay_sets: int = 5
        ) -> GenStatement:
    return GenStatement(name=name, text=text, calls=calls, expect=expect, args=args, replay_sets=replay_sets,
                        refs=refs, template=name)


def _cols(rng: random.Random, pool: list[str], k: int) -> str:
    return ", ".join(["id"] + rng.sample(pool, k))


CHILD_COLS = ["title", "price_cents", "status", "category", "updated_at", "sku"]
EVENT_COLS = ["kind", "amount", "happened_at", "child_id", "parent_id"]
PARENT_COLS = ["name", "tier", "region", "email", "created_at"]


def _t_child_by_parent_recent(s: Schema, rng: random.Random) -> GenStatement:
    direction = rng.choice(["DESC", "ASC"])
    return _st("child_by_parent_recent",
               f"SELECT {_cols(rng, CHILD_COLS, 2)} FROM {s.child} WHERE parent_id = %s "
               f"ORDER BY updated_at {direction} LIMIT %s", rng.randint(15, 40),
               "equality + ORDER BY ... LIMIT",
               lambda v, r: (r.choice(v["parents"]), r.choice([10, 20, 50])),
               (Ref(s.child, "parent_id", "eq"), Ref(s.child, "updated_at", f"order_{direction.lower()}")))


def _t_events_by_child(s: Schema, rng: random.Random) -> GenStatement:
    return _st("events_by_child", f"SELECT {_cols(rng, EVENT_COLS, 2)} FROM {s.event} WHERE child_id = %s",
               rng.randint(15, 40), "equality on an unindexed foreign key",
               lambda v, r: (r.choice(v["children"]),), (Ref(s.event, "child_id", "eq"),))


def _window(v: dict, r: random.Random, hours: float) -> tuple:
    start = v["window_start"] + timedelta(days=r.uniform(0, v["span_days"] - 1))
    return start, start + timedelta(hours=hours)


def _t_events_in_window(s: Schema, rng: random.Random) -> GenStatement:
    hours = rng.choice([1, 3, 6])
    between = rng.random() < 0.5
    cond = "happened_at BETWEEN %s AND %s" if between else "happened_at >= %s AND happened_at < %s"
    return _st("events_in_window", f"SELECT count(*), sum(amount) FROM {s.event} WHERE {cond}",
               rng.randint(10, 30), "range on a timestamp",
               lambda v, r: _window(v, r, hours), (Ref(s.event, "happened_at", "range"),))


def _t_events_recent_interval(s: Schema, rng: random.Random) -> GenStatement:
    return _st("events_recent_interval",
               f"SELECT id, kind, amount FROM {s.event} WHERE happened_at > now() - %s::interval "
               f"ORDER BY happened_at DESC", rng.randint(10, 30), "$n in an interval expression",
               lambda v, r: (timedelta(minutes=r.choice([10, 30, 60, 120])),),
               (Ref(s.event, "happened_at", "range"), Ref(s.event, "happened_at", "order_desc")))


def _t_event_kinds_of_parent(s: Schema, rng: random.Random) -> GenStatement:
    return _st("event_kinds_of_parent",
               f"SELECT kind, count(*), sum(amount) FROM {s.event} WHERE parent_id = %s GROUP BY kind",
               rng.randint(10, 30), "GROUP BY over an equality",
               lambda v, r: (r.choice(v["parents"]),), (Ref(s.event, "parent_id", "eq"),))


def _t_parent_login(s: Schema, rng: random.Random) -> GenStatement:
    return _st("parent_login", f"SELECT id, name, tier FROM {s.parent} WHERE lower(email) = lower(%s)",
               rng.randint(20, 50), "lower() expression",
               lambda v, r: (r.choice([str.upper, str.lower, str.title])(r.choice(v["emails"])),),
               (Ref(s.parent, "lower(email)", "eq"),))


def _t_title_prefix(s: Schema, rng: random.Random) -> GenStatement:
    return _st("title_prefix", f"SELECT id, title, price_cents FROM {s.child} WHERE title LIKE %s",
               rng.randint(15, 40), "LIKE 'prefix%'",
               # search-as-you-type: the word and a few characters of the rest
               lambda v, r: (r.choice(v["titles"])[: len(r.choice(v["titles"]).split(" ")[0]) + 1 + r.randint(2, 5)]
                             + "%",),
               (Ref(s.child, "title", "like"),))


def _attrs_doc(v: dict, r: random.Random) -> Jsonb:
    doc = dict(r.choice(v["attrs"]))
    keys = r.sample(["brand", "color", "size", "vintage"], r.randint(2, 3))
    return Jsonb({k: doc[k] for k in keys})


def _t_attrs_contains(s: Schema, rng: random.Random) -> GenStatement:
    return _st("attrs_contains", f"SELECT id, title FROM {s.child} WHERE attrs @> %s::jsonb",
               rng.randint(10, 30), "jsonb @> with several keys",
               lambda v, r: (_attrs_doc(v, r),), (Ref(s.child, "attrs", "gin_jsonb"),))


def _t_payload_has_key(s: Schema, rng: random.Random) -> GenStatement:
    return _st("payload_has_key", f"SELECT id, child_id, payload FROM {s.event} WHERE payload ? %s",
               rng.randint(5, 20), "jsonb ? on a rare key",
               lambda v, r: ("err",), (Ref(s.event, "payload", "gin_jsonb_key"),))


def _t_tags_contains(s: Schema, rng: random.Random) -> GenStatement:
    op = rng.choice(["@>", "&&"])

    def args(v, r):
        tags = r.choice(v["tagsets"])
        return (sorted(tags, key=lambda t: -int(t[3:]))[:2 if op == "@>" else 1],)

    return _st("tags_contains", f"SELECT id, title FROM {s.child} WHERE tags {op} %s::text[]",
               rng.randint(10, 30), f"array {op}", args, (Ref(s.child, "tags", "gin_array"),))


def _t_join2(s: Schema, rng: random.Random) -> GenStatement:
    return _st("join_child_events",
               f"SELECT c.id, c.title, e.amount, e.happened_at FROM {s.child} c JOIN {s.event} e "
               f"ON e.child_id = c.id WHERE c.parent_id = %s", rng.randint(10, 30),
               "2-table join: a filter on one table, a foreign key on the other",
               lambda v, r: (r.choice(v["parents"]),),
               (Ref(s.child, "parent_id", "eq"), Ref(s.event, "child_id", "join")))


def _t_join3(s: Schema, rng: random.Random) -> GenStatement:
    return _st("join_parent_child_events",
               f"SELECT p.name, c.title, e.kind, e.amount FROM {s.parent} p JOIN {s.child} c ON c.parent_id = p.id "
               f"JOIN {s.event} e ON e.child_id = c.id WHERE p.email = %s", rng.randint(10, 30),
               "3-table join from an unindexed equality",
               lambda v, r: (r.choice(v["emails"]),),
               (Ref(s.parent, "email", "eq"), Ref(s.child, "parent_id", "join"), Ref(s.event, "child_id", "join")))


def _t_in_any(s: Schema, rng: random.Random) -> GenStatement:
    if rng.random() < 0.5:
        return _st("events_child_any", f"SELECT id, child_id, amount FROM {s.event} WHERE child_id = ANY(%s)",
                   rng.randint(10, 30), "= ANY(array)",
                   lambda v, r: (r.sample(v["children"], r.randint(3, 8)),), (Ref(s.event, "child_id", "eq"),))
    return _st("events_child_in", f"SELECT id, child_id, amount FROM {s.event} WHERE child_id IN (%s, %s, %s)",
               rng.randint(10, 30), "IN list",
               lambda v, r: tuple(r.sample(v["children"], 3)), (Ref(s.event, "child_id", "eq"),))


def _t_price_expr(s: Schema, rng: random.Random) -> GenStatement:
    return _st("child_price_band",
               f"SELECT id, title, price_cents FROM {s.child} WHERE price_cents BETWEEN %s * 100 AND %s * 100 + 99",
               rng.randint(10, 30), "$n inside arithmetic, BETWEEN",
               lambda v, r: (lambda d: (d, d))(r.randint(1, 999)), (Ref(s.child, "price_cents", "range"),))


def _t_rare_status(s: Schema, rng: random.Random) -> GenStatement:
    return _st("child_rare_status",
               f"SELECT id, title, updated_at FROM {s.child} WHERE status = %s ORDER BY updated_at LIMIT 50",
               rng.randint(10, 30), "rare value + ORDER BY ... LIMIT",
               lambda v, r: ("flagged",), (Ref(s.child, "status", "eq"), Ref(s.child, "updated_at", "order_asc")))


def _t_correlated(s: Schema, rng: random.Random) -> GenStatement:
    def args(v, r):
        tier = r.randint(1, 5)
        return tier, tier * 100 + r.uniform(97, 99.5)

    return _st("parent_tier_top", f"SELECT id, name, score FROM {s.parent} WHERE tier = %s AND score > %s",
               rng.randint(15, 40), "correlated columns: equality + range",
               args, (Ref(s.parent, "tier", "eq"), Ref(s.parent, "score", "range")))


def _t_referrer(s: Schema, rng: random.Random) -> GenStatement:
    return _st("parent_by_referrer", f"SELECT id, name FROM {s.parent} WHERE referrer_id = %s",
               rng.randint(15, 40), "equality on a NULL-heavy column",
               lambda v, r: (r.choice(v["referrers"]),), (Ref(s.parent, "referrer_id", "eq"),))


def _t_deleted_recent(s: Schema, rng: random.Random) -> GenStatement:
    return _st("child_recently_deleted",
               f"SELECT id, title, deleted_at FROM {s.child} WHERE deleted_at IS NOT NULL "
               f"ORDER BY deleted_at DESC LIMIT %s", rng.randint(10, 30), "NULL-heavy column, ORDER BY DESC LIMIT",
               lambda v, r: (r.choice([20, 50]),),
               (Ref(s.child, "deleted_at", "range"), Ref(s.child, "deleted_at", "order_desc")))


def _t_other_expression(s: Schema, rng: random.Random) -> GenStatement:
    if rng.random() < 0.5:
        return _st("event_code_prefix", f"SELECT id, kind, amount FROM {s.event} WHERE substr(code, 1, 8) = %s",
                   rng.randint(10, 30), "substr() expression",
                   lambda v, r: (r.choice(v["codes"])[:8],), (Ref(s.event, "substr(code, 1, 8)", "eq"),))
    return _st("child_by_sku_hash", f"SELECT id, title FROM {s.child} WHERE md5(sku) = %s",
               rng.randint(10, 30), "md5() expression",
               lambda v, r: (_md5(r.choice(v["skus"])),), (Ref(s.child, "md5(sku)", "eq"),))


def _md5(text: str) -> str:
    import hashlib

    return hashlib.md5(text.encode()).hexdigest()


# statements that need no index (their refs still let the oracle try: the measurement decides)
def _n_full_group(s: Schema, rng: random.Random) -> GenStatement:
    return _st("event_kind_totals", f"SELECT kind, count(*), avg(amount) FROM {s.event} GROUP BY kind",
               rng.randint(3, 8), "full-table aggregate: no index helps", lambda v, r: (), (), replay_sets=2)


def _n_pk(s: Schema, rng: random.Random) -> GenStatement:
    return _st("child_by_id", f"SELECT id, title, price_cents FROM {s.child} WHERE id = %s", rng.randint(30, 80),
               "primary key: already served", lambda v, r: (r.randint(1, v["max_child"]),), ())


def _n_lookup(s: Schema, rng: random.Random) -> GenStatement:
    return _st("lookup_group", f"SELECT id, label FROM {s.lookup} WHERE grp = %s", rng.randint(20, 60),
               "200-row table: no index worth it", lambda v, r: (r.randint(0, 19),), (Ref(s.lookup, "grp", "eq"),))


def _n_common(s: Schema, rng: random.Random) -> GenStatement:
    return _st("child_common_status", f"SELECT count(*) FROM {s.child} WHERE status = %s", rng.randint(5, 15),
               "unselective filter (most rows)", lambda v, r: ("active",), (Ref(s.child, "status", "eq"),),
               replay_sets=2)


# writes, at rates several times the reads'
def _w_insert_event(s: Schema, rng: random.Random) -> GenStatement:
    return _st("insert_event",
               f"INSERT INTO {s.event} (child_id, parent_id, kind, amount, code, payload, happened_at) "
               f"VALUES (%s, %s, %s, %s, md5(random()::text), %s, now())", rng.randint(100, 300), "write",
               lambda v, r: (r.choice(v["children"]), r.choice(v["parents"]), r.choice(KINDS),
                             round(r.uniform(1, 500), 2), Jsonb({"src": f"s{r.randint(1, N_SOURCES)}", "v": 1})), ())


def _w_update_child(s: Schema, rng: random.Random) -> GenStatement:
    return _st("update_child_price", f"UPDATE {s.child} SET price_cents = %s, updated_at = now() WHERE id = %s",
               rng.randint(50, 150), "write",
               lambda v, r: (r.randint(100, 99_999), r.randint(1, v["max_child"])), ())


def _w_delete_event(s: Schema, rng: random.Random) -> GenStatement:
    return _st("delete_event", f"DELETE FROM {s.event} WHERE id = %s", rng.randint(20, 60), "write",
               lambda v, r: (r.randint(1, v["max_event"]),), ())


READS: list[Template] = [
    _t_child_by_parent_recent, _t_events_by_child, _t_events_in_window, _t_events_recent_interval,
    _t_event_kinds_of_parent, _t_parent_login, _t_title_prefix, _t_attrs_contains, _t_payload_has_key,
    _t_tags_contains, _t_join2, _t_join3, _t_in_any, _t_price_expr, _t_rare_status, _t_correlated,
    _t_referrer, _t_deleted_recent, _t_other_expression,
]
NO_INDEX: list[Template] = [_n_full_group, _n_pk, _n_lookup, _n_common]
WRITES: list[Template] = [_w_insert_event, _w_update_child, _w_delete_event]


@dataclass
class GeneratedWorkload:
    schema: Schema
    statements: list[GenStatement] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"gen{self.schema.seed}"


def draw_workload(seed: int, scale: float = 1.0, reads: int | None = None) -> GeneratedWorkload:
    """The seed's schema and statements: `reads` read templates (default: a random 10-14 of them),
    2-4 statements that need no index, and the writes."""
    schema = draw_schema(seed, scale)
    rng = random.Random(seed * 1_000_003 + 1)
    n = reads if reads is not None else rng.randint(10, 14)
    chosen = [t(schema, rng) for t in rng.sample(READS, min(n, len(READS)))]
    chosen += [t(schema, rng) for t in rng.sample(NO_INDEX, rng.randint(2, len(NO_INDEX)))]
    chosen += [t(schema, rng) for t in WRITES]
    return GeneratedWorkload(schema, chosen)


def variants(seed: int, count: int, scale: float = 1.0) -> GeneratedWorkload:
    """`count` distinct read statements (for the scaling benchmark): the read templates drawn again
    and again, each draw with its own select list and calls, so each is its own pg_stat_statements
    entry. Writes are added as in draw_workload."""
    schema = draw_schema(seed, scale)
    rng = random.Random(seed * 1_000_003 + 2)
    out: list[GenStatement] = []
    per_template: dict[str, int] = {}
    while len(out) < count:
        st = rng.choice(READS)(schema, rng)
        k = per_template[st.name] = per_template.get(st.name, -1) + 1
        # the k-th draw of a template repeats its first output column k more times: a statement of its
        # own to pg_stat_statements (the target list is part of the fingerprint), with no new parameter
        first = st.text[len("SELECT "):].split(",", 1)[0].strip()
        text = st.text.replace("SELECT ", "SELECT " + "".join(f"{first}, " for _ in range(k)), 1)
        out.append(GenStatement(name=f"{st.name}_{k}", text=text, calls=max(5, st.calls // 4),
                                expect=st.expect, args=st.args, replay_sets=st.replay_sets, refs=st.refs,
                                template=st.template))
    out += [t(schema, rng) for t in WRITES]
    return GeneratedWorkload(schema, out)
