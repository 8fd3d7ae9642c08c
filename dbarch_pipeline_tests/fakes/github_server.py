"""A small local HTTP server that speaks the part of GitHub's REST API PyGithub uses to open pull requests.

The real PyGithub client is pointed at it through its base URL (GitHub Enterprise style,
`http://127.0.0.1:<port>/api/v3`). It holds one repository in memory, with real git-like state:
commits as path -> content trees, branches, blobs addressed by their git SHA-1, pull requests and
their labels. Endpoints (after the /api/v3 prefix):

    GET    /repos/{owner}/{repo}
    GET    /repos/{owner}/{repo}/branches/{branch}
    GET    /repos/{owner}/{repo}/git/ref/{ref}          (and /git/refs/{ref})
    POST   /repos/{owner}/{repo}/git/refs
    GET    /repos/{owner}/{repo}/contents/{path}?ref=
    PUT    /repos/{owner}/{repo}/contents/{path}         create or update (sha required to update)
    DELETE /repos/{owner}/{repo}/contents/{path}
    GET    /repos/{owner}/{repo}/pulls?state=&head=owner:branch&base=
    POST   /repos/{owner}/{repo}/pulls                  422 when the branch already has an open one
    GET    /repos/{owner}/{repo}/pulls/{number}
    PATCH  /repos/{owner}/{repo}/pulls/{number}
    POST   /repos/{owner}/{repo}/issues/{number}/labels

Authentication is checked like GitHub does (401 "Bad credentials" for any other token). Failures are
scriptable: `fail(...)` for the next matching requests, `rate_limit(after=n)` to exhaust the quota
(403 with X-RateLimit-Remaining: 0 and a reset an hour away), `protect(pattern)` for branches whose
creation or update a ruleset refuses (422). Every request is logged (`requests`), and anything the
server does not implement answers 404 and is listed in `unhandled`.

    with FakeGitHub(token="t") as gh:
        client = github.Github(auth=github.Auth.Token("t"), base_url=gh.base_url)
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import re
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PREFIX = "/api/v3"
RATE_LIMIT = 5000


@dataclass
class Request:
    method: str
    path: str                      # without the prefix and the query string
    query: dict[str, str]
    body: Any
    status: int = 0


@dataclass
class Failure:
    status: int
    message: str
    method: str | None = None
    path: str | None = None        # a regular expression searched in the path and query string
    headers: dict[str, str] = field(default_factory=dict)
    times: int = 1


class FakeGitHub:
    def __init__(self, *, owner: str = "acme", name: str = "shop", token: str = "ghp_fake_token",
                 default_branch: str = "main"):
        self.owner, self.name, self.token = owner, name, token
        self.default_branch = default_branch
        self.lock = threading.RLock()
        self.requests: list[Request] = []
        self.unhandled: list[Request] = []
        self.failures: list[Failure] = []
        self.protected: list[str] = []
        self.remaining: int | None = None      # None: unlimited
        self.commits: dict[str, dict] = {}
        self.branches: dict[str, str] = {}
        self.pulls: dict[int, dict] = {}
        root = self._commit({"README.md": b"# shop\n"}, None, "initial commit")
        self.branches[default_branch] = root
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------------

    def start(self) -> "FakeGitHub":
        fake = self

        class Handler(_Handler):
            server_fake = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> "FakeGitHub":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def base_url(self) -> str:
        return self.root_url + PREFIX

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"

    # -- scripting and inspection ---------------------------------------------------------------------

    def fail(self, status: int, message: str, *, method: str | None = None, path: str | None = None,
             headers: dict[str, str] | None = None, times: int = 1) -> None:
        with self.lock:
            self.failures.append(Failure(status, message, method, path, headers or {}, times))

    def rate_limit(self, *, after: int | None) -> None:
        """After `after` more requests every request gets GitHub's 403 rate-limit reply; None lifts it."""
        with self.lock:
            self.remaining = after

    def protect(self, pattern: str) -> None:
        with self.lock:
            self.protected.append(pattern)

    def close_pull(self, number: int, *, merged: bool = False, by: str = "reviewer") -> None:
        with self.lock:
            pr = self.pulls[number]
            pr["state"] = "closed"
            pr["closed_at"] = _now()
            pr["closed_by"] = by
            if merged:
                pr["merged_at"] = pr["closed_at"]
                self.branches[pr["base"]] = self.branches[pr["head"]]

    def delete_branch(self, name: str) -> None:
        with self.lock:
            self.branches.pop(name, None)

    def file(self, branch: str, path: str) -> str | None:
        with self.lock:
            content = self.commits[self.branches[branch]]["tree"].get(path)
        return None if content is None else content.decode()

    def tree(self, branch: str) -> dict[str, str]:
        with self.lock:
            return {p: c.decode() for p, c in self.commits[self.branches[branch]]["tree"].items()}

    def calls(self, method: str, pattern: str = "") -> list[Request]:
        return [r for r in self.requests if r.method == method and re.search(pattern, r.path)]

    def writes(self) -> list[Request]:
        return [r for r in self.requests if r.method != "GET"]

    # -- state ---------------------------------------------------------------------------------------

    def _commit(self, tree: dict[str, bytes], parent: str | None, message: str) -> str:
        payload = json.dumps([sorted((p, _blob_sha(c)) for p, c in tree.items()), parent, message, len(self.commits)])
        sha = hashlib.sha1(payload.encode()).hexdigest()
        self.commits[sha] = {"tree": dict(tree), "parent": parent, "message": message}
        return sha

    def _is_protected(self, branch: str) -> bool:
        return any(fnmatch.fnmatch(branch, p) for p in self.protected)

    def _api(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def _repo_json(self) -> dict:
        return {
            "id": 1, "node_id": "R_1", "name": self.name, "full_name": self.full_name,
            "owner": {"login": self.owner, "id": 1, "type": "Organization"},
            "private": True, "default_branch": self.default_branch,
            "url": self._api(f"/repos/{self.full_name}"), "html_url": f"{self.root_url}/{self.full_name}",
            "permissions": {"admin": False, "push": True, "pull": True},
        }

    def _pull_json(self, pr: dict) -> dict:
        repo = self._repo_json()
        n = pr["number"]
        return {
            "id": 1000 + n, "number": n, "state": pr["state"], "title": pr["title"], "body": pr["body"],
            "draft": pr["draft"], "merged": pr["merged_at"] is not None, "merged_at": pr["merged_at"],
            "closed_at": pr["closed_at"], "created_at": pr["created_at"], "updated_at": pr["updated_at"],
            "url": self._api(f"/repos/{self.full_name}/pulls/{n}"),
            "html_url": f"{self.root_url}/{self.full_name}/pull/{n}",
            "issue_url": self._api(f"/repos/{self.full_name}/issues/{n}"),
            "head": {"ref": pr["head"], "label": f"{self.owner}:{pr['head']}",
                     "sha": self.branches.get(pr["head"], ""), "repo": repo},
            "base": {"ref": pr["base"], "label": f"{self.owner}:{pr['base']}",
                     "sha": self.branches.get(pr["base"], ""), "repo": repo},
            "labels": [{"id": i + 1, "name": name, "color": "ededed"} for i, name in enumerate(pr["labels"])],
            "user": {"login": "dbarch-bot", "id": 2, "type": "User"},
        }

    def _content_json(self, path: str, content: bytes, ref: str) -> dict:
        return {
            "type": "file", "encoding": "base64", "size": len(content), "name": path.rsplit("/", 1)[-1],
            "path": path, "sha": _blob_sha(content),
            # GitHub wraps base64 at 60 characters
            "content": "\n".join(re.findall(".{1,60}", base64.b64encode(content).decode())) + "\n",
            "url": self._api(f"/repos/{self.full_name}/contents/{urllib.parse.quote(path)}?ref={ref}"),
            "html_url": f"{self.root_url}/{self.full_name}/blob/{ref}/{path}",
        }

    # -- request handling ----------------------------------------------------------------------------

    def handle(self, method: str, raw_path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict, Any]:
        parsed = urllib.parse.urlsplit(raw_path)
        path = urllib.parse.unquote(parsed.path)
        query = dict(urllib.parse.parse_qsl(parsed.query))
        try:
            data = json.loads(body) if body else None
        except ValueError:
            data = None
        request = Request(method, path[len(PREFIX):] if path.startswith(PREFIX) else path, query, data)
        with self.lock:
            self.requests.append(request)
            status, extra, payload = self._dispatch(request, headers)
            request.status = status
        return status, extra, payload

    def _dispatch(self, r: Request, headers: dict[str, str]) -> tuple[int, dict, Any]:
        auth = headers.get("authorization", "")
        if auth not in (f"token {self.token}", f"Bearer {self.token}"):
            return 401, {}, {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest",
                             "status": "401"}
        limit_headers = {"X-RateLimit-Limit": str(RATE_LIMIT), "X-RateLimit-Resource": "core"}
        if self.remaining is not None:
            if self.remaining <= 0:
                reset = str(int(time.time()) + 3600)
                return 403, {**limit_headers, "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset}, {
                    "message": "API rate limit exceeded for user ID 2. If you reach out to GitHub Support for "
                               "help, please include the request ID.",
                    "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api",
                    "status": "403"}
            self.remaining -= 1
        for failure in self.failures:
            target = r.path + ("?" + urllib.parse.urlencode(r.query, safe=":/") if r.query else "")
            if failure.times > 0 and (failure.method in (None, r.method)) and (
                    failure.path is None or re.search(failure.path, target)):
                failure.times -= 1
                return failure.status, failure.headers, {"message": failure.message, "status": str(failure.status)}
        status, payload = self._route(r)
        remaining = self.remaining if self.remaining is not None else RATE_LIMIT - len(self.requests)
        return status, {**limit_headers, "X-RateLimit-Remaining": str(max(remaining, 0))}, payload

    def _route(self, r: Request) -> tuple[int, Any]:
        repo = f"/repos/{self.owner}/{self.name}"
        if not r.path.startswith(repo) or (r.path != repo and not r.path.startswith(repo + "/")):
            return self._not_found(r)
        rest = r.path[len(repo):]
        routes = [
            ("GET", r"", self._get_repo),
            ("GET", r"/branches/(?P<branch>.+)", self._get_branch),
            ("GET", r"/git/refs?/(?P<ref>.+)", self._get_ref),
            ("POST", r"/git/refs", self._create_ref),
            ("GET", r"/contents/(?P<path>.+)", self._get_contents),
            ("PUT", r"/contents/(?P<path>.+)", self._put_contents),
            ("DELETE", r"/contents/(?P<path>.+)", self._delete_contents),
            ("GET", r"/pulls", self._list_pulls),
            ("POST", r"/pulls", self._create_pull),
            ("GET", r"/pulls/(?P<number>\d+)", self._get_pull),
            ("PATCH", r"/pulls/(?P<number>\d+)", self._edit_pull),
            ("POST", r"/issues/(?P<number>\d+)/labels", self._add_labels),
            ("GET", r"/issues/(?P<number>\d+)", self._get_issue),
            ("POST", r"/issues/(?P<number>\d+)/comments", self._add_comment),
        ]
        for method, pattern, handler in routes:
            m = re.fullmatch(pattern, rest)
            if m and method == r.method:
                return handler(r, **m.groupdict())
        return self._not_found(r)

    def _not_found(self, r: Request) -> tuple[int, Any]:
        self.unhandled.append(r)
        return 404, {"message": "Not Found", "documentation_url": "https://docs.github.com/rest", "status": "404"}

    @staticmethod
    def _missing() -> tuple[int, Any]:
        return 404, {"message": "Not Found", "documentation_url": "https://docs.github.com/rest", "status": "404"}

    def _get_repo(self, r: Request) -> tuple[int, Any]:
        return 200, self._repo_json()

    def _get_branch(self, r: Request, branch: str) -> tuple[int, Any]:
        if branch not in self.branches:
            return 404, {"message": "Branch not found", "status": "404"}
        sha = self.branches[branch]
        return 200, {"name": branch, "protected": self._is_protected(branch),
                     "commit": {"sha": sha, "url": self._api(f"/repos/{self.full_name}/commits/{sha}")},
                     "_links": {}}

    def _ref_json(self, branch: str) -> dict:
        sha = self.branches[branch]
        return {"ref": f"refs/heads/{branch}", "node_id": "REF", "url": self._api(
            f"/repos/{self.full_name}/git/refs/heads/{branch}"),
            "object": {"sha": sha, "type": "commit",
                       "url": self._api(f"/repos/{self.full_name}/git/commits/{sha}")}}

    def _get_ref(self, r: Request, ref: str) -> tuple[int, Any]:
        branch = ref.removeprefix("heads/")
        if not ref.startswith("heads/") or branch not in self.branches:
            return self._missing()
        return 200, self._ref_json(branch)

    def _create_ref(self, r: Request) -> tuple[int, Any]:
        ref, sha = (r.body or {}).get("ref", ""), (r.body or {}).get("sha", "")
        if not ref.startswith("refs/heads/") or sha not in self.commits:
            return 422, {"message": "Reference update failed", "status": "422"}
        branch = ref.removeprefix("refs/heads/")
        if self._is_protected(branch):
            return 422, {"message": "Repository rule violations found\n\nCannot create ref due to creations "
                                    "being restricted.\n\n", "status": "422"}
        if branch in self.branches:
            return 422, {"message": "Reference already exists", "status": "422"}
        self.branches[branch] = sha
        return 201, self._ref_json(branch)

    def _get_contents(self, r: Request, path: str) -> tuple[int, Any]:
        ref = r.query.get("ref") or self.default_branch
        if ref not in self.branches:
            return 404, {"message": f"No commit found for the ref {ref}", "status": "404"}
        tree = self.commits[self.branches[ref]]["tree"]
        if path in tree:
            return 200, self._content_json(path, tree[path], ref)
        children = sorted({p[len(path) + 1:].split("/")[0] for p in tree if p.startswith(path + "/")})
        if children:
            return 200, [{"type": "file" if f"{path}/{c}" in tree else "dir", "name": c, "path": f"{path}/{c}",
                          "sha": _blob_sha(tree.get(f"{path}/{c}", b"")),
                          "url": self._api(f"/repos/{self.full_name}/contents/{path}/{c}?ref={ref}")}
                         for c in children]
        return self._missing()

    def _write(self, r: Request, path: str, content: bytes | None) -> tuple[int, Any]:
        body = r.body or {}
        branch = body.get("branch") or self.default_branch
        if branch not in self.branches:
            return 404, {"message": f"Branch {branch} not found", "status": "404"}
        if self._is_protected(branch):
            return 422, {"message": f"Protected branch update failed for refs/heads/{branch}.", "status": "422"}
        tree = dict(self.commits[self.branches[branch]]["tree"])
        if path in tree:
            if "sha" not in body:
                return 422, {"message": "Invalid request.\n\n\"sha\" wasn't supplied.", "status": "422"}
            if body["sha"] != _blob_sha(tree[path]):
                return 409, {"message": f"{path} does not match {body['sha']}", "status": "409"}
        elif content is None:
            return 404, {"message": "Not Found", "status": "404"}
        existed = path in tree
        if content is None:
            del tree[path]
        else:
            tree[path] = content
        sha = self._commit(tree, self.branches[branch], body.get("message", ""))
        self.branches[branch] = sha
        commit = {"sha": sha, "message": body.get("message", ""),
                  "url": self._api(f"/repos/{self.full_name}/git/commits/{sha}"),
                  "html_url": f"{self.root_url}/{self.full_name}/commit/{sha}",
                  "author": {"name": "dbarch-bot", "email": "bot@example.com", "date": _now()},
                  "committer": {"name": "dbarch-bot", "email": "bot@example.com", "date": _now()},
                  "tree": {"sha": sha, "url": ""}, "parents": []}
        if content is None:
            return 200, {"content": None, "commit": commit}
        return (200 if existed else 201), {"content": self._content_json(path, content, branch), "commit": commit}

    def _put_contents(self, r: Request, path: str) -> tuple[int, Any]:
        try:
            content = base64.b64decode((r.body or {}).get("content", ""), validate=True)
        except ValueError:
            return 422, {"message": "content is not valid Base64", "status": "422"}
        return self._write(r, path, content)

    def _delete_contents(self, r: Request, path: str) -> tuple[int, Any]:
        return self._write(r, path, None)

    def _list_pulls(self, r: Request) -> tuple[int, Any]:
        state = r.query.get("state", "open")
        head = r.query.get("head")
        base = r.query.get("base")
        out = []
        for pr in sorted(self.pulls.values(), key=lambda p: -p["number"]):
            if state != "all" and pr["state"] != state:
                continue
            if head and head != f"{self.owner}:{pr['head']}":
                continue
            if base and base != pr["base"]:
                continue
            out.append(self._pull_json(pr))
        return 200, out

    def _create_pull(self, r: Request) -> tuple[int, Any]:
        body = r.body or {}
        head, base = body.get("head", ""), body.get("base", "")
        head = head.split(":", 1)[1] if ":" in head else head
        if head not in self.branches or base not in self.branches:
            return 422, {"message": "Validation Failed", "errors": [{"resource": "PullRequest", "field": "head",
                                                                    "code": "invalid"}], "status": "422"}
        if any(p["head"] == head and p["state"] == "open" for p in self.pulls.values()):
            return 422, {"message": "Validation Failed", "errors": [{
                "resource": "PullRequest", "code": "custom",
                "message": f"A pull request already exists for {self.owner}:{head}."}], "status": "422"}
        number = max(self.pulls, default=0) + 1
        self.pulls[number] = {"number": number, "state": "open", "title": body.get("title", ""),
                              "body": body.get("body"), "draft": bool(body.get("draft")), "head": head,
                              "base": base, "merged_at": None, "closed_at": None, "labels": [],
                              "created_at": _now(), "updated_at": _now()}
        return 201, self._pull_json(self.pulls[number])

    def _get_pull(self, r: Request, number: str) -> tuple[int, Any]:
        pr = self.pulls.get(int(number))
        return (200, self._pull_json(pr)) if pr else self._missing()

    def _edit_pull(self, r: Request, number: str) -> tuple[int, Any]:
        pr = self.pulls.get(int(number))
        if pr is None:
            return self._missing()
        body = r.body or {}
        if body.get("state") == "open" and pr["state"] == "closed":
            if pr["merged_at"] or pr["head"] not in self.branches:
                return 422, {"message": "Validation Failed", "errors": [{
                    "resource": "PullRequest", "code": "custom",
                    "message": "state cannot be changed. The head branch was deleted."}], "status": "422"}
            pr["closed_at"] = None
        if body.get("state") == "closed" and pr["state"] == "open":
            pr["closed_at"], pr["closed_by"] = _now(), "dbarch-bot"    # the token's user
        for key in ("title", "body", "state"):
            if key in body:
                pr[key] = body[key]
        pr["updated_at"] = _now()
        return 200, self._pull_json(pr)

    def _get_issue(self, r: Request, number: str) -> tuple[int, Any]:
        """A pull request seen as an issue: the one place GitHub says who closed it (`closed_by`)."""
        pr = self.pulls.get(int(number))
        if pr is None:
            return self._missing()
        pull = self._pull_json(pr)
        by = pr.get("closed_by") if pr["state"] == "closed" else None
        return 200, {
            "id": 5000 + pr["number"], "number": pr["number"], "state": pr["state"], "title": pr["title"],
            "body": pr["body"], "url": pull["issue_url"], "html_url": pull["html_url"],
            "labels": pull["labels"], "user": pull["user"], "comments": len(pr.get("comments", [])),
            "created_at": pr["created_at"], "updated_at": pr["updated_at"], "closed_at": pr["closed_at"],
            "closed_by": {"login": by, "id": 3, "type": "User"} if by else None,
            "pull_request": {"url": pull["url"], "html_url": pull["html_url"],
                             "merged_at": pr["merged_at"]},
        }

    def _add_comment(self, r: Request, number: str) -> tuple[int, Any]:
        pr = self.pulls.get(int(number))
        if pr is None:
            return self._missing()
        text = (r.body or {}).get("body", "")
        if not text:
            return 422, {"message": "Validation Failed", "errors": [{"resource": "IssueComment", "field": "body",
                                                                    "code": "missing_field"}], "status": "422"}
        comments = pr.setdefault("comments", [])
        comments.append(text)
        n = len(comments)
        return 201, {"id": 9000 + n, "body": text, "user": {"login": "dbarch-bot", "id": 2, "type": "User"},
                     "created_at": _now(), "updated_at": _now(),
                     "url": self._api(f"/repos/{self.full_name}/issues/comments/{9000 + n}"),
                     "html_url": f"{self.root_url}/{self.full_name}/pull/{pr['number']}#issuecomment-{9000 + n}"}

    def _add_labels(self, r: Request, number: str) -> tuple[int, Any]:
        pr = self.pulls.get(int(number))
        if pr is None:
            return self._missing()
        names = r.body.get("labels", []) if isinstance(r.body, dict) else (r.body or [])
        for name in names:
            if name not in pr["labels"]:
                pr["labels"].append(name)
        return 200, [{"id": i + 1, "name": n, "color": "ededed"} for i, n in enumerate(pr["labels"])]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"     # keep-alive, as PyGithub's session expects
    # headers and body go out in two writes: without this, Nagle's algorithm and delayed ACKs add
    # ~40 ms to every request
    disable_nagle_algorithm = True
    server_fake: FakeGitHub

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, extra, payload = self.server_fake.handle(self.command, self.path, headers, body)
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for key, value in extra.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the request log is in FakeGitHub
        pass


def _blob_sha(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
