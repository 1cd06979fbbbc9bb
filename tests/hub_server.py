"""A small in-memory Hugging Face Hub for the tests: the HTTP endpoints ``huggingface_hub`` calls.

It answers what the real client (``HfApi.create_repo`` / ``create_commit`` / ``repo_info`` /
``list_repo_tree``, ``snapshot_download``, ``hf_hub_download``) sends for a push and a pull:

    POST /api/repos/create                                   create a repo (409 when it exists)
    GET  /api/{type}s/{ns}/{name}/revision/{rev}             repo info: id, sha, private, siblings
    GET  /api/{type}s/{ns}/{name}/tree/{rev}[/{path}]        file listing (recursive or one level)
    POST /api/{type}s/{ns}/{name}/preupload/{rev}            upload mode: always "regular" (no LFS / Xet)
    POST /api/{type}s/{ns}/{name}/commit/{rev}               NDJSON commit: header, file (base64), deletedFile/Folder
    HEAD|GET /[datasets/]{ns}/{name}/resolve/{rev}/{path}    file content with X-Repo-Commit, ETag, Content-Length

Errors carry ``X-Error-Code`` (RepoNotFound, RevisionNotFound, EntryNotFound) as the Hub's do, so
the client raises its usual exceptions.  ``fail`` injects HTTP 500s (``{"commit": 2}``: the next
two commits fail); ``requests`` logs (method, path) and ``auth`` the Authorization headers seen.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self
from urllib.parse import parse_qs, unquote, urlsplit

TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}


def git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)

    def resolve(self, rev: str) -> str | None:
        if rev in self.branches:
            return self.branches[rev]
        return rev if rev in self.commits else None


class HubState:
    def __init__(self) -> None:
        self.repos: dict[tuple[str, str], Repo] = {}
        self.fail: dict[str, int] = {}
        self.requests: list[tuple[str, str]] = []
        self.auth: list[str] = []
        self.lock = threading.Lock()
        self._n = 0

    def new_oid(self, seed: str) -> str:
        self._n += 1
        return hashlib.sha1(f"{seed}:{self._n}".encode()).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    server_version = "FakeHub/1.0"
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):
        return

    @property
    def state(self) -> HubState:
        return self.server.state  # type: ignore[attr-defined]

    # ------------------------------------------------------------ plumbing
    def _send(
        self, status: int, body: bytes = b"", headers: dict[str, str] | None = None, *, head: bool = False
    ) -> None:
        self.send_response(status)
        headers = {"Content-Type": "application/json", **(headers or {})}
        for k, v in headers.items():
            self.send_header(k, v)
        if "Content-Length" not in headers:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head and body:
            self.wfile.write(body)

    def _json(self, status: int, payload, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), headers)

    def _error(
        self, status: int, code: str | None, message: str, headers: dict[str, str] | None = None, head=False
    ) -> None:
        h = dict(headers or {})
        if code:
            h["X-Error-Code"] = code
        h["X-Error-Message"] = message
        self._send(status, json.dumps({"error": message}).encode(), h, head=head)

    def _body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _should_fail(self, what: str) -> bool:
        with self.state.lock:
            left = self.state.fail.get(what, 0)
            if left > 0:
                self.state.fail[what] = left - 1
                return True
        return False

    def _repo(self, repo_type: str, repo_id: str, head: bool = False) -> Repo | None:
        repo = self.state.repos.get((repo_type, repo_id))
        authorized = self.headers.get("Authorization", "").startswith("Bearer ")
        if repo is None or (repo.private and not authorized):
            self._error(404 if repo is None else 401, "RepoNotFound", f"Repository {repo_id} not found", head=head)
            return None
        return repo

    def _route(self, method: str) -> None:
        url = urlsplit(self.path)
        self.state.requests.append((method, url.path))
        if self.headers.get("Authorization"):
            self.state.auth.append(self.headers["Authorization"])
        parts = [unquote(p) for p in url.path.split("/") if p]
        query = parse_qs(url.query)
        try:
            if parts[:3] == ["api", "repos", "create"] and method == "POST":
                return self._create()
            if len(parts) >= 6 and parts[0] == "api" and parts[1] in TYPES:
                repo_type, repo_id, action, rest = TYPES[parts[1]], f"{parts[2]}/{parts[3]}", parts[4], parts[5:]
                if action == "revision" and method == "GET":
                    return self._info(repo_type, repo_id, "/".join(rest))
                if action == "tree" and method == "GET":
                    return self._tree(repo_type, repo_id, rest[0], "/".join(rest[1:]), query)
                if action == "preupload" and method == "POST":
                    return self._preupload(repo_type, repo_id, "/".join(rest))
                if action == "commit" and method == "POST":
                    return self._commit(repo_type, repo_id, "/".join(rest))
            prefix = parts[0] if parts and parts[0] in ("datasets", "spaces") else None
            p = parts[1:] if prefix else parts
            if len(p) >= 5 and p[2] == "resolve" and method in ("GET", "HEAD"):
                repo_type = TYPES[prefix] if prefix else "model"
                return self._resolve(repo_type, f"{p[0]}/{p[1]}", p[3], "/".join(p[4:]), head=method == "HEAD")
            self._error(404, None, f"no route for {method} {url.path}")
        except BrokenPipeError:
            pass

    def do_GET(self):
        self._route("GET")

    def do_HEAD(self):
        self._route("HEAD")

    def do_POST(self):
        self._route("POST")

    # ------------------------------------------------------------ endpoints
    def _create(self) -> None:
        payload = json.loads(self._body() or b"{}")
        if not self.headers.get("Authorization"):
            return self._error(401, None, "Invalid username or password.")
        repo_type = payload.get("type") or "model"
        repo_id = f"{payload.get('organization') or 'user'}/{payload['name']}"
        url_prefix = "" if repo_type == "model" else f"{repo_type}s/"
        url = f"http://{self.headers['Host']}/{url_prefix}{repo_id}"
        with self.state.lock:
            if (repo_type, repo_id) in self.state.repos:
                msg = (
                    "You already created this model repo"  # the Hub's 409 body carries the url, which create_repo reads
                )
                return self._send(409, json.dumps({"error": msg, "url": url}).encode(), {"X-Error-Message": msg})
            private = payload.get("visibility", "public") == "private" or bool(payload.get("private"))
            repo = Repo(repo_type, repo_id, private)
            oid = self.state.new_oid(repo_id)
            repo.commits[oid] = {".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"}
            repo.branches["main"] = oid
            self.state.repos[(repo_type, repo_id)] = repo
        self._json(200, {"url": url, "name": repo_id})

    def _info(self, repo_type: str, repo_id: str, rev: str) -> None:
        repo = self._repo(repo_type, repo_id)
        if repo is None:
            return
        oid = repo.resolve(rev)
        if oid is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        files = repo.commits[oid]
        self._json(
            200,
            {"id": repo_id, "sha": oid, "private": repo.private, "siblings": [{"rfilename": p} for p in sorted(files)]},
        )

    def _tree(self, repo_type: str, repo_id: str, rev: str, path: str, query: dict) -> None:
        repo = self._repo(repo_type, repo_id)
        if repo is None:
            return
        oid = repo.resolve(rev)
        if oid is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        recursive = query.get("recursive", ["False"])[0].lower() in ("true", "1")
        prefix = path.strip("/") + "/" if path.strip("/") else ""
        files = {p: d for p, d in repo.commits[oid].items() if p.startswith(prefix)}
        if prefix and not files:
            return self._error(404, "EntryNotFound", f"{path} does not exist on {rev}", {"X-Repo-Commit": oid})
        entries, folders = [], set()
        for p in sorted(files):
            rel = p[len(prefix) :]
            if not recursive and "/" in rel:
                folders.add(prefix + rel.split("/", 1)[0])
                continue
            if recursive:
                parts = rel.split("/")[:-1]
                folders.update(prefix + "/".join(parts[: i + 1]) for i in range(len(parts)))
            entries.append({"type": "file", "oid": git_blob_oid(files[p]), "size": len(files[p]), "path": p})
        entries += [
            {"type": "directory", "oid": hashlib.sha1(f.encode()).hexdigest(), "size": 0, "path": f}
            for f in sorted(folders)
        ]
        self._json(200, entries)

    def _preupload(self, repo_type: str, repo_id: str, rev: str) -> None:
        if self._should_fail("preupload"):
            return self._error(500, None, "internal error (injected)")
        repo = self._repo(repo_type, repo_id)
        if repo is None:
            return
        payload = json.loads(self._body())
        oid = repo.resolve(rev)
        current = repo.commits[oid] if oid else {}
        out = [
            {
                "path": f["path"],
                "uploadMode": "regular",
                "shouldIgnore": False,
                "oid": git_blob_oid(current[f["path"]]) if f["path"] in current else None,
            }
            for f in payload["files"]
        ]
        self._json(200, {"files": out, "commitOid": oid})

    def _commit(self, repo_type: str, repo_id: str, rev: str) -> None:
        body = self._body()
        if self._should_fail("commit"):
            return self._error(500, None, "internal error (injected)")
        repo = self._repo(repo_type, repo_id)
        if repo is None:
            return
        if self.headers.get("Content-Type") != "application/x-ndjson":
            return self._error(400, None, "expected an application/x-ndjson commit payload")
        with self.state.lock:
            parent = repo.resolve(rev)
            if parent is None:
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
            files = dict(repo.commits[parent])
            summary = ""
            for line in body.splitlines():
                item = json.loads(line)
                key, value = item["key"], item["value"]
                if key == "header":
                    summary = value["summary"]
                elif key == "file":
                    files[value["path"]] = base64.b64decode(value["content"])
                elif key == "deletedFile":
                    files.pop(value["path"], None)
                elif key == "deletedFolder":
                    folder = value["path"].rstrip("/") + "/"
                    files = {p: d for p, d in files.items() if not p.startswith(folder)}
                else:
                    return self._error(400, None, f"unsupported commit operation {key!r} (this server has no LFS)")
            oid = self.state.new_oid(summary)
            repo.commits[oid] = files
            if rev not in repo.branches:
                return self._error(400, None, f"commits go to a branch; {rev} is not one")
            repo.branches[rev] = oid
        url_prefix = "" if repo_type == "model" else f"{repo_type}s/"
        self._json(
            200,
            {
                "commitUrl": f"http://{self.headers['Host']}/{url_prefix}{repo_id}/commit/{oid}",
                "commitOid": oid,
                "pullRequestUrl": None,
            },
        )

    def _resolve(self, repo_type: str, repo_id: str, rev: str, path: str, head: bool) -> None:
        repo = self._repo(repo_type, repo_id, head=head)
        if repo is None:
            return
        oid = repo.resolve(rev)
        if oid is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}", head=head)
        files = repo.commits[oid]
        if path not in files:
            return self._error(404, "EntryNotFound", f"{path} does not exist", {"X-Repo-Commit": oid}, head=head)
        data = files[path]
        etag = f'"{git_blob_oid(data)}"'
        self._send(
            200,
            data,
            {
                "Content-Type": "application/octet-stream",
                "X-Repo-Commit": oid,
                "ETag": etag,
                "Content-Length": str(len(data)),
            },
            head=head,
        )


class FakeHub:
    """``with FakeHub() as hub:`` serves on ``hub.url`` (127.0.0.1, a free port) until the block ends."""

    def __init__(self) -> None:
        self.state = HubState()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.state = self.state  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="fake-hub", daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def files(self, repo_id: str, repo_type: str = "model", rev: str = "main") -> dict[str, bytes]:
        repo = self.state.repos[(repo_type, repo_id)]
        return repo.commits[repo.resolve(rev)]
