"""A local HTTP endpoint that speaks the part of the Hugging Face Hub API huggingface_hub 2.x uses
to download a model (reach it through HF_ENDPOINT):

- GET  /api/models/{repo}[/revision/{rev}][?blobs=true]   model info: sha, siblings (+sizes, lfs sha256)
- GET  /api/models/{repo}/tree/{rev}[/{path}]?recursive=  tree listing (what snapshot_download reads)
- HEAD/GET /{repo}/resolve/{rev}/{path}                   small files: 200 with ETag, X-Repo-Commit,
        Content-Length; LFS files: 302 to a "CDN" URL on another host name (localhost instead of
        127.0.0.1, so huggingface_hub treats it as off-Hub and drops the Authorization header) with
        X-Linked-Etag (the sha256), X-Linked-Size and X-Repo-Commit, like the real Hub
- HEAD/GET /_cdn/{sha256}/{name}                          the bytes, with Range (206) support
- GET  /{repo}/raw/{rev}/{path}                           raw file (chat templates)

Unknown repos and private repos without the right token get 401 with X-Error-Code RepoNotFound;
gated repos list their metadata but answer 401 GatedRepo on /resolve without the right token,
which is what the Hub does for a caller without access. No Xet: no X-Xet-Hash headers and no
xetHash in listings, so clients take the plain HTTP path.

Every request is recorded in `hub.requests` (method, path, range, authorization) so tests can count
them; `hub.rate` (bytes/s) throttles file bodies so a test can interrupt a download midway.
"""
from __future__ import annotations

import hashlib
import http.server
import json
import os
import re
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

POINTER_SIZE = 134


@dataclass
class HubFile:
    path: str
    local: Path
    size: int
    sha256: str
    oid: str  # git blob id of the content (small files) / of the LFS pointer (LFS files)
    lfs: bool


@dataclass
class HubRepo:
    repo_id: str
    files: dict[str, HubFile]
    sha: str
    gated: bool = False
    private: bool = False
    token: str | None = None
    xet: bool = False


@dataclass
class Request:
    method: str
    path: str
    range: str | None
    authorization: str | None
    status: int = 0


def _git_blob_id(data_len: int, digest_source: Path | bytes) -> str:
    h = hashlib.sha1(f"blob {data_len}\0".encode())
    if isinstance(digest_source, bytes):
        h.update(digest_source)
    else:
        with open(digest_source, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def _sha256(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class HubEmulator:
    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.host = host
        self._port = port
        self.repos: dict[str, HubRepo] = {}
        self.requests: list[Request] = []
        self.rate: float | None = None  # bytes per second for file bodies, None = unthrottled
        self._lock = threading.Lock()
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._tmp = Path(tempfile.mkdtemp(prefix="hub-emulator-"))

    # -- repositories -------------------------------------------------------------------------
    def add_repo(self, repo_id: str, files: dict[str, Path | bytes | str], *, gated: bool = False,
                 private: bool = False, token: str | None = None,
                 sha256s: dict[str, str] | None = None, xet: bool = False) -> HubRepo:
        """Files: repo path -> local file path, or bytes/str content. *.gguf and files of 10 KiB
        or more are LFS files, like on the Hub. `sha256s` gives a file's sha256 instead of hashing
        it (a huge sparse file that is never downloaded). `xet=True` advertises its LFS files as
        Xet-backed (xetHash in the tree, X-Xet-Hash and X-Xet-Refresh-Route on /resolve) without
        serving Xet: the refresh route answers 404, as a Hub whose Xet service is unreachable
        would fail; the plain bytes stay available at the redirect target."""
        entries: dict[str, HubFile] = {}
        for rpath, src in files.items():
            if isinstance(src, (bytes, str)):
                data = src.encode() if isinstance(src, str) else src
                local = self._tmp / hashlib.sha256(repo_id.encode() + rpath.encode()).hexdigest()
                local.write_bytes(data)
            else:
                local = Path(src)
            size = local.stat().st_size
            sha = (sha256s or {}).get(rpath) or _sha256(local)
            lfs = rpath.endswith(".gguf") or size >= 10 * 1024
            if lfs:
                pointer = (f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha}\n"
                           f"size {size}\n").encode()
                oid = _git_blob_id(len(pointer), pointer)
            else:
                oid = _git_blob_id(size, local) if size < 1 << 30 else sha[:40]
            entries[rpath] = HubFile(rpath, local, size, sha, oid, lfs)
        sha = hashlib.sha1(json.dumps(sorted((f.path, f.sha256) for f in entries.values()))
                           .encode() + repo_id.encode()).hexdigest()
        repo = HubRepo(repo_id, entries, sha, gated=gated, private=private, token=token, xet=xet)
        self.repos[repo_id] = repo
        return repo

    # -- lifecycle ----------------------------------------------------------------------------
    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "HubEmulator":
        hub = self

        class Handler(_Handler):
            emulator = hub

        self._server = http.server.ThreadingHTTPServer((self.host, self._port), Handler)
        self._server.daemon_threads = True
        self._port = self._server.server_address[1]  # a restart keeps the same address
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        kwargs={"poll_interval": 0.1})
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> "HubEmulator":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def record(self, req: Request) -> None:
        with self._lock:
            self.requests.append(req)

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()


_API = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)(?:/revision/(?P<rev>[^/]+)"
                  r"|/tree/(?P<trev>[^/]+)(?P<tpath>/.*)?)?$")
_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/(?P<kind>resolve|raw)/(?P<rev>[^/]+)/(?P<path>.+)$")
_CDN = re.compile(r"^/_cdn/(?P<sha>[0-9a-f]{64})/(?P<name>[^/]+)$")


class _Handler(http.server.BaseHTTPRequestHandler):
    emulator: HubEmulator
    protocol_version = "HTTP/1.1"
    server_version = "hub-emulator"

    def log_message(self, fmt, *args):  # quiet
        pass

    # -- helpers ------------------------------------------------------------------------------
    def _rec(self) -> Request:
        r = Request(self.command, self.path, self.headers.get("Range"),
                    self.headers.get("Authorization"))
        self.emulator.record(r)
        return r

    def _send(self, rec: Request, status: int, body: bytes = b"", headers: dict | None = None,
              ctype: str = "application/json") -> None:
        rec.status = status
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _error(self, rec: Request, status: int, code: str, message: str) -> None:
        self._send(rec, status, json.dumps({"error": message}).encode(),
                   {"X-Error-Code": code, "X-Error-Message": message})

    def _token(self) -> str | None:
        auth = self.headers.get("Authorization") or ""
        return auth[7:] if auth.startswith("Bearer ") else None

    def _repo(self, rec: Request, repo_id: str, *, for_download: bool) -> HubRepo | None:
        repo = self.emulator.repos.get(repo_id)
        if repo is None or (repo.private and self._token() != repo.token):
            self._error(rec, 401, "RepoNotFound", "Repository not found")
            return None
        if for_download and repo.gated and self._token() != repo.token:
            self._error(rec, 401, "GatedRepo",
                        f"Access to model {repo_id} is restricted. You must have access to it "
                        "and be authenticated to access it. Please log in.")
            return None
        return repo

    def _rev_ok(self, rec: Request, repo: HubRepo, rev: str) -> bool:
        if unquote(rev) in ("main", repo.sha):
            return True
        self._error(rec, 404, "RevisionNotFound", f"Invalid rev id: {rev}")
        return False

    # -- verbs --------------------------------------------------------------------------------
    def do_HEAD(self):
        self._dispatch()

    def do_GET(self):
        self._dispatch()

    def _dispatch(self) -> None:
        rec = self._rec()
        try:
            u = urlparse(self.path)
            path = unquote(u.path)
            q = parse_qs(u.query)
            if m := _API.match(path):
                return self._api(rec, m, q)
            if m := _RESOLVE.match(path):
                return self._resolve(rec, m)
            if m := _CDN.match(path):
                return self._cdn(rec, m.group("sha"))
            self._error(rec, 404, "EntryNotFound", "not found")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _api(self, rec: Request, m: re.Match, q: dict) -> None:
        repo = self._repo(rec, m.group("repo"), for_download=False)
        if repo is None:
            return
        if m.group("trev") is not None:
            if not self._rev_ok(rec, repo, m.group("trev")):
                return
            prefix = (m.group("tpath") or "").strip("/")
            recursive = q.get("recursive", ["false"])[0].lower() in ("true", "1")
            out, dirs = [], set()
            for f in sorted(repo.files.values(), key=lambda f: f.path):
                if prefix and not f.path.startswith(prefix + "/"):
                    continue
                rel = f.path[len(prefix) + 1:] if prefix else f.path
                parts = rel.split("/")
                for i in range(1, len(parts)):
                    d = "/".join(([prefix] if prefix else []) + parts[:i])
                    if d not in dirs and (recursive or i == 1):
                        dirs.add(d)
                        out.append({"type": "directory", "oid": hashlib.sha1(d.encode()).hexdigest(),
                                    "size": 0, "path": d})
                if len(parts) > 1 and not recursive:
                    continue
                entry = {"type": "file", "oid": f.oid, "size": f.size, "path": f.path}
                if f.lfs:
                    entry["lfs"] = {"oid": f.sha256, "size": f.size, "pointerSize": POINTER_SIZE}
                    if repo.xet:
                        entry["xetHash"] = hashlib.sha256(b"xet" + f.sha256.encode()).hexdigest()
                out.append(entry)
            return self._send(rec, 200, json.dumps(out).encode())
        rev = m.group("rev") or "main"
        if not self._rev_ok(rec, repo, rev):
            return
        blobs = q.get("blobs", ["false"])[0].lower() in ("true", "1")
        siblings = []
        for f in sorted(repo.files.values(), key=lambda f: f.path):
            s: dict = {"rfilename": f.path}
            if blobs:
                s.update(size=f.size, blobId=f.oid)
                if f.lfs:
                    s["lfs"] = {"size": f.size, "sha256": f.sha256, "pointerSize": POINTER_SIZE}
            siblings.append(s)
        body = {"_id": repo.sha[:24], "id": repo.repo_id, "modelId": repo.repo_id,
                "author": repo.repo_id.split("/")[0], "sha": repo.sha, "private": repo.private,
                "gated": "manual" if repo.gated else False, "disabled": False, "downloads": 0,
                "likes": 0, "tags": ["gguf"], "library_name": "gguf",
                "lastModified": "2026-01-01T00:00:00.000Z", "createdAt": "2026-01-01T00:00:00.000Z",
                "siblings": siblings}
        self._send(rec, 200, json.dumps(body).encode())

    def _resolve(self, rec: Request, m: re.Match) -> None:
        repo = self._repo(rec, m.group("repo"), for_download=True)
        if repo is None or not self._rev_ok(rec, repo, m.group("rev")):
            return
        f = repo.files.get(m.group("path"))
        if f is None:
            return self._error(rec, 404, "EntryNotFound", f"Entry not found: {m.group('path')}")
        common = {"X-Repo-Commit": repo.sha, "Accept-Ranges": "bytes"}
        if m.group("kind") == "raw" or not f.lfs:
            if m.group("kind") == "raw" and f.lfs:
                pointer = (f"version https://git-lfs.github.com/spec/v1\noid sha256:{f.sha256}\n"
                           f"size {f.size}\n").encode()
                return self._send(rec, 200, pointer, {**common, "ETag": f'"{f.oid}"'}, "text/plain")
            return self._body(rec, f, {**common, "ETag": f'"{f.oid}"'})
        # LFS: redirect to the "CDN" on another host name, with the linked metadata headers.
        cdn = f"http://localhost:{self.emulator.port}/_cdn/{f.sha256}/{Path(f.path).name}"
        headers = {**common, "Location": cdn, "ETag": f'"{f.oid}"',
                   "X-Linked-Etag": f'"{f.sha256}"', "X-Linked-Size": str(f.size)}
        if repo.xet:
            headers["X-Xet-Hash"] = hashlib.sha256(b"xet" + f.sha256.encode()).hexdigest()
            headers["X-Xet-Refresh-Route"] = (f"{self.emulator.url}/api/models/{repo.repo_id}"
                                              f"/xet-read-token/{repo.sha}")
        self._send(rec, 302, b"", headers, "text/plain")

    def _cdn(self, rec: Request, sha: str) -> None:
        for repo in self.emulator.repos.values():
            for f in repo.files.values():
                if f.sha256 == sha:
                    return self._body(rec, f, {"ETag": f'"{f.sha256}"'})
        self._error(rec, 404, "EntryNotFound", "no such blob")

    def _body(self, rec: Request, f: HubFile, headers: dict) -> None:
        start, end = 0, f.size - 1
        status = 200
        rng = self.headers.get("Range")
        if rng:
            mm = re.fullmatch(r"bytes=(\d*)-(\d*)", rng.strip())
            if not mm or (mm.group(1) == "" and mm.group(2) == ""):
                return self._error(rec, 416, "RangeNotSatisfiable", f"bad range {rng}")
            if mm.group(1) == "":
                start = max(0, f.size - int(mm.group(2)))
            else:
                start = int(mm.group(1))
                if mm.group(2):
                    end = min(end, int(mm.group(2)))
            if start >= f.size:
                rec.status = 416
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{f.size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
            headers = {**headers, "Content-Range": f"bytes {start}-{end}/{f.size}"}
        length = end - start + 1
        rec.status = status
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command == "HEAD":
            return
        with open(f.local, "rb") as fh:
            rate = self.emulator.rate
            if rate is None:
                self.wfile.flush()
                sent = 0
                while sent < length:
                    n = os.sendfile(self.connection.fileno(), fh.fileno(), start + sent,
                                    min(length - sent, 1 << 24))
                    if n == 0:
                        break
                    sent += n
                return
            fh.seek(start)
            left = length
            chunk = 16 * 1024
            t0 = time.monotonic()
            done = 0
            while left > 0:
                data = fh.read(min(chunk, left))
                if not data:
                    break
                self.wfile.write(data)
                self.wfile.flush()
                left -= len(data)
                done += len(data)
                delay = done / (self.emulator.rate or 1e18) - (time.monotonic() - t0)
                if delay > 0:
                    time.sleep(delay)
