"""Nothing dbarch runs that it did not write itself can harm or leak.

- `allowlist.check_statement(conn, sql, allowed_schemas=...)`: the allow-list, resolved by
  PostgreSQL's own parse analysis (every function, operator, cast, domain, view that would run);
  used for `ask` SQL, Gemini's rewrites and the application statements the benchmark re-runs.
- `walls`: the second wall PostgreSQL enforces regardless (read-only sections, timeouts,
  temp_file_limit, connection checks) and fetching under caps on rows and bytes.
- `roles`: the least-privilege role generated SQL runs as, and `dbarch doctor`'s checks.
- `errors`: database errors turned into the clear message the README promises.
"""

from .allowlist import TRUSTED_EXTENSIONS, Verdict, check_statement, precheck

__all__ = ["TRUSTED_EXTENSIONS", "Verdict", "check_statement", "precheck"]
