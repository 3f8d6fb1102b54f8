"""Emulates the Hugging Face Hub's HTTP API for dataset repos, served from local folders.

It stands in for huggingface.co, which tests cannot reach. It is installed as
huggingface_hub's HTTP backend (`configure_http_backend`), so `datasets`,
`hf_hub_download` and `HfFileSystem` run unmodified against it. It serves the
endpoints they use, as huggingface_hub 0.3x calls them:

- `GET /api/datasets/{repo}[/revision/{rev}]`: repo info with `sha` and `siblings`;
- `GET /api/datasets/{repo}/tree/{rev}[/{path}]`: a folder's entries (`recursive`);
- `POST /api/datasets/{repo}/paths-info/{rev}`: entries for given paths;
- `GET|HEAD /datasets/{repo}/resolve/{rev}/{path}`: the file, with `ETag`,
  `X-Repo-Commit` and `Content-Length`, and byte ranges (`Range`, 206);
- `GET /api/{datasets|models}/{repo}/auth-check`: whether the caller may read a repo;
- `GET /api/models/{repo}[/revision/{rev}]`: info of a model repo named in `models`.

As the Hub does, a repo in `gated` lists its info to anyone, but its files and
its auth-check answer 401 (`X-Error-Code: GatedRepo`) without a token and 403
with a token it has not granted; a repo in `revisions` has only those branches
(and its commit), and any other is 404 `RevisionNotFound`; an unknown repo is
404 `RepoNotFound`.

Every request is logged in `requests` and every byte of file content served is
counted per file in `bytes_served`, so tests can show what a selection read.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import datasets
import requests
from huggingface_hub import configure_http_backend
from huggingface_hub import constants as hf_constants
from huggingface_hub.utils import _http

from harness.plugins import benchmarks as registry
from harness.types import Sample

ENDPOINT = "https://huggingface.co"
_INFO = re.compile(r"/api/datasets/(?P<repo>[^/]+/[^/]+)(?:/revision/(?P<rev>[^/]+))?/?$")
_MODEL_INFO = re.compile(r"/api/models/(?P<repo>[^/]+/[^/]+)(?:/revision/(?P<rev>[^/]+))?/?$")
_AUTH_CHECK = re.compile(r"/api/(?P<type>datasets|models)/(?P<repo>[^/]+/[^/]+)/auth-check$")
_TREE = re.compile(r"/api/datasets/(?P<repo>[^/]+/[^/]+)/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?$")
_PATHS = re.compile(r"/api/datasets/(?P<repo>[^/]+/[^/]+)/paths-info/(?P<rev>[^/]+)$")
_RESOLVE = re.compile(r"/datasets/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


class HubEmulator(requests.adapters.BaseAdapter):
    """Serves dataset repos `{repo_id: folder}` as the Hub would."""

    def __init__(
        self,
        repos: dict[str, Path],
        *,
        gated: dict[str, set[str]] | None = None,
        revisions: dict[str, set[str]] | None = None,
        models: tuple[str, ...] = (),
    ) -> None:
        """`gated`: repo -> the tokens granted access; `revisions`: repo -> its branches;
        `models`: model repos whose info is served (they hold no files)."""
        super().__init__()
        self.repos = {repo: Path(folder) for repo, folder in repos.items()}
        self.gated = gated or {}
        self.revisions = revisions or {}
        self.models = models
        self.requests: list[tuple[str, str]] = []
        self.bytes_served: Counter[str] = Counter()

    @contextlib.contextmanager
    def installed(self) -> Iterator[HubEmulator]:
        """Route huggingface_hub's HTTP (and so datasets') here for the block.

        The tests run with HF_HUB_OFFLINE=1 so nothing reaches the real Hub; inside
        the block the libraries are online, and every request lands here.
        """

        def session() -> requests.Session:
            s = requests.Session()
            s.mount("https://", self)
            s.mount("http://", self)
            return s

        offline = (hf_constants.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE)
        hf_constants.HF_HUB_OFFLINE = datasets.config.HF_HUB_OFFLINE = False
        configure_http_backend(backend_factory=session)
        try:
            yield self
        finally:
            configure_http_backend(backend_factory=_http._default_backend_factory)
            hf_constants.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE = offline

    def sha(self, repo: str) -> str:
        """The repo's commit id: a hash of its files' names and contents."""
        digest = hashlib.sha1()
        for path in sorted(self._files(repo)):
            digest.update(
                path.encode() + hashlib.sha256(self._path(repo, path).read_bytes()).digest()
            )
        return digest.hexdigest()

    # -- requests adapter -----------------------------------------------------------

    def send(self, request: requests.PreparedRequest, **kwargs) -> requests.Response:
        url = urlparse(request.url)
        path, query = unquote(url.path), parse_qs(url.query)
        self.requests.append((request.method, request.url))
        if match := _AUTH_CHECK.match(path):
            return self._auth_check(request, match["repo"], match["type"] == "models")
        if match := _MODEL_INFO.match(path):
            return self._model_info(request, match["repo"], match["rev"])
        if match := _RESOLVE.match(path):
            refused = self._gate(request, match["repo"]) if match["repo"] in self.gated else None
            if refused is not None:  # (an error response is falsy)
                return refused
            return self._resolve(request, match["repo"], match["path"])
        if match := _PATHS.match(path):
            form = parse_qs(
                request.body.decode() if isinstance(request.body, bytes) else request.body or ""
            )
            paths = form.get("paths", [])
            entries = [self._entry(match["repo"], p) for p in paths]
            return self._json(request, [e for e in entries if e])
        if match := _TREE.match(path):
            recursive = query.get("recursive", ["false"])[0].lower() == "true"
            return self._tree(request, match["repo"], match["path"] or "", recursive)
        if match := _INFO.match(path):
            repo = match["repo"]
            refused = self._refusal(request, repo, match["rev"])
            if refused is not None:
                return refused
            siblings = [{"rfilename": f} for f in sorted(self._files(repo))]
            info = {
                "_id": repo,
                "id": repo,
                "sha": self.sha(repo),
                "private": False,
                "gated": "auto" if repo in self.gated else False,
                "disabled": False,
                "lastModified": "2024-01-01T00:00:00.000Z",
                "siblings": siblings,
                "tags": [],
                "cardData": {},
            }
            return self._json(request, info)
        return self._error(request, 404, "EntryNotFound", f"no such endpoint {path}")

    def close(self) -> None:
        pass

    # -- endpoints ------------------------------------------------------------------

    def _refusal(self, request, repo: str, revision: str | None) -> requests.Response | None:
        """The Hub's answer to info about a repo it lacks, or a revision the repo lacks."""
        if repo not in self.repos:
            return self._error(request, 404, "RepoNotFound", f"Repository {repo} not found")
        branches = self.revisions.get(repo)
        if revision and branches is not None and revision not in {*branches, self.sha(repo)}:
            return self._error(
                request, 404, "RevisionNotFound", f"Invalid rev id: {unquote(revision)}"
            )
        return None

    def _gate(self, request, repo: str, kind: str = "dataset") -> requests.Response | None:
        """401 without a token, 403 with one not granted, None with one granted."""
        authorization = request.headers.get("authorization", "")
        token = authorization.removeprefix("Bearer ").strip()
        if not token:
            message = (
                f"Access to {kind} {repo} is restricted. You must have access to it and be "
                "authenticated to access it. Please log in."
            )
            return self._error(request, 401, "GatedRepo", message)
        if token not in self.gated[repo]:
            message = (
                f"Access to {kind} {repo} is restricted and you are not in the authorized "
                f"list. Visit {ENDPOINT}/datasets/{repo} to ask for access."
            )
            return self._error(request, 403, "GatedRepo", message)
        return None

    def _auth_check(self, request, repo: str, model: bool) -> requests.Response:
        known = repo in self.models if model else repo in self.repos
        if not known:
            return self._error(request, 404, "RepoNotFound", f"Repository {repo} not found")
        refused = self._gate(request, repo, "model" if model else "dataset")
        return self._json(request, {"ok": True}) if refused is None else refused

    def _model_info(self, request, repo: str, revision: str | None) -> requests.Response:
        if repo not in self.models:
            return self._error(request, 404, "RepoNotFound", f"Repository {repo} not found")
        sha = hashlib.sha1(repo.encode()).hexdigest()
        info = {"_id": repo, "id": repo, "modelId": repo, "sha": sha, "private": False}
        return self._json(request, {**info, "gated": False, "disabled": False, "siblings": []})

    def _resolve(self, request, repo: str, path: str) -> requests.Response:
        if repo not in self.repos or path not in self._files(repo):
            return self._error(request, 404, "EntryNotFound", f"{path} not found in {repo}")
        data = self._path(repo, path).read_bytes()
        headers = {
            "ETag": f'"{hashlib.sha256(data).hexdigest()}"',
            "X-Repo-Commit": self.sha(repo),
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
        }
        status, body = 200, data
        if match := _RANGE.fullmatch(request.headers.get("Range", "")):
            start, end = match.groups()
            first = int(start) if start else max(len(data) - int(end), 0)
            last = int(end) if start and end else len(data) - 1
            body = data[first : last + 1]
            status = 206
            headers["Content-Range"] = f"bytes {first}-{first + len(body) - 1}/{len(data)}"
        headers["Content-Length"] = str(len(body))
        if request.method == "HEAD":
            body = b""
        else:
            self.bytes_served[path] += len(body)
        return self._response(request, status, body, headers)

    def _tree(self, request, repo: str, folder: str, recursive: bool) -> requests.Response:
        if repo not in self.repos:
            return self._error(request, 404, "RepoNotFound", f"Repository {repo} not found")
        prefix = f"{folder.strip('/')}/" if folder.strip("/") else ""
        entries, folders = [], set()
        for path in sorted(self._files(repo)):
            if not path.startswith(prefix):
                continue
            rest = path[len(prefix) :].split("/")
            for depth in range(1, len(rest)):
                sub = prefix + "/".join(rest[:depth])
                if (recursive or depth == 1) and sub not in folders:
                    folders.add(sub)
                    entries.append({"type": "directory", "oid": "0" * 40, "size": 0, "path": sub})
            if recursive or len(rest) == 1:
                entries.append(self._entry(repo, path))
        return self._json(request, entries)

    def _entry(self, repo: str, path: str) -> dict | None:
        full = self._path(repo, path)
        if full.is_dir():
            return {"type": "directory", "oid": "0" * 40, "size": 0, "path": path}
        if not full.is_file():
            return None
        data = full.read_bytes()
        return {
            "type": "file",
            "oid": hashlib.sha1(data).hexdigest(),
            "size": len(data),
            "path": path,
        }

    # -- helpers --------------------------------------------------------------------

    def _files(self, repo: str) -> set[str]:
        root = self.repos[repo]
        return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}

    def _path(self, repo: str, path: str) -> Path:
        return self.repos[repo] / path

    def _json(self, request, data) -> requests.Response:
        body = json.dumps(data).encode()
        headers = {"Content-Type": "application/json", "Content-Length": str(len(body))}
        return self._response(request, 200, body, headers)

    def _error(self, request, status: int, code: str, message: str) -> requests.Response:
        body = json.dumps({"error": message}).encode()
        headers = {"Content-Type": "application/json", "X-Error-Code": code}
        return self._response(request, status, body, headers)

    @staticmethod
    def _response(request, status: int, body: bytes, headers: dict) -> requests.Response:
        response = requests.Response()
        response.status_code = status
        response.headers.update(headers)
        response.raw = io.BytesIO(body)
        response.url = request.url
        response.request = request
        reasons = {200: "OK", 206: "Partial Content", 401: "Unauthorized", 403: "Forbidden"}
        response.reason = {**reasons, 404: "Not Found"}.get(status, "")
        return response


SMALL_BLOCK = 16 * 1024
"""Bytes per range request with `small_blocks`."""


@contextlib.contextmanager
def serving(
    repos: dict[str, Path],
    cache: Path,
    monkeypatch,
    *,
    small_blocks: type | None = None,
    **options: Any,
) -> Iterator[HubEmulator]:
    """The emulator serving `repos` (repo id -> folder), the harness cache in `cache`; with
    `small_blocks`, that benchmark reads zips in `SMALL_BLOCK`s, so that reading one member
    is visibly not reading the zip. `options` go to `HubEmulator` (`gated`, ...)."""
    monkeypatch.setenv("VQA_HARNESS_CACHE", str(cache))
    if small_blocks is not None:
        monkeypatch.setattr(small_blocks, "block_size_kb", SMALL_BLOCK // 1024)
    with HubEmulator(repos, **options).installed() as emulator:
        yield emulator


def loaded(name: str, **options) -> tuple[Any, dict[str, Sample]]:
    """The benchmark `name` created with `options`, and its samples by id."""
    benchmark = registry.create(name, **options)
    return benchmark, {sample.id: sample for sample in benchmark.samples()}
