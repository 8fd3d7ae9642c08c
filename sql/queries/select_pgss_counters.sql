-- Cumulative counters of every plannable statement of the current database (dbarch's own aside).
-- {stats_since} is min(s.stats_since) on PostgreSQL 17+, where each statement says when its
-- counters started, and NULL before.
SELECT s.queryid,
       min(s.query)                    AS query,
       sum(s.calls)::bigint            AS calls,
       sum(s.total_exec_time)          AS total_exec_ms,
       sum(s.rows)::bigint             AS rows,
       sum(s.shared_blks_hit)::bigint  AS shared_blks_hit,
       sum(s.shared_blks_read)::bigint AS shared_blks_read,
       {stats_since}::timestamptz      AS stats_since
FROM pg_stat_statements s
JOIN pg_database d ON d.oid = s.dbid
WHERE d.datname = current_database()
  AND s.toplevel
  AND s.query ~* '^\s*(/\*.*?\*/\s*)*\(?\s*(select|with|insert|update|delete|merge|values|table)\M'
  AND position('/* dbarch */' IN s.query) = 0
GROUP BY s.queryid
