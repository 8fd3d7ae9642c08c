-- (PostgreSQL 14-16) Top statements of the current database by total execution time. Only plannable statements count
-- (SELECT/WITH/INSERT/UPDATE/DELETE/MERGE/VALUES/TABLE); dbarch's own tagged statements are left out.
SELECT s.queryid,
       min(s.query)                  AS query,
       sum(s.calls)::bigint          AS calls,
       sum(s.total_exec_time)        AS total_exec_ms,
       sum(s.total_exec_time) / nullif(sum(s.calls), 0) AS mean_exec_ms,
       sum(s.rows)::bigint           AS rows,
       sum(s.shared_blks_hit)::bigint  AS shared_blks_hit,
       sum(s.shared_blks_read)::bigint AS shared_blks_read,
       NULL::float8 AS window_seconds  -- stats_since arrived in PostgreSQL 17
FROM pg_stat_statements s
JOIN pg_database d ON d.oid = s.dbid
WHERE d.datname = current_database()
  AND s.toplevel
  AND s.query ~* '^\s*(/\*.*?\*/\s*)*\(?\s*(select|with|insert|update|delete|merge|values|table)\M'
  AND position('/* dbarch */' IN s.query) = 0
GROUP BY s.queryid
HAVING sum(s.calls) >= %(min_calls)s
   AND sum(s.total_exec_time) / nullif(sum(s.calls), 0) >= %(min_mean_ms)s
ORDER BY sum(s.total_exec_time) DESC
LIMIT %(top_n)s
