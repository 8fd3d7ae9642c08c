"""The admin HTTP API (`dbarch serve`): FastAPI on uvicorn over the same store and code paths as the
CLI. app: the endpoints; auth: bearer tokens; audits: Dagster runs started over HTTP; limits and
redact: request size and secrets kept out of responses and logs; server: binding rules and uvicorn."""
