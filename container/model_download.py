"""Model download for the container: Hugging Face Hub -> $MODELS_DIR/$API_NAME/, resumable, verified.

Layout of a model directory (`model_dir` = $MODELS_DIR/$API_NAME):

    <repo paths>                      the matched files, e.g. Q8_0/x-00001-of-00002.gguf
    chat_template.jinja               CHAT_TEMPLATE_URL, fetched once
    .provision/complete.json          the completeness record (written last, atomically)
    .provision/partial/<sha>.part     bytes of a file being downloaded (kept across restarts)
    .provision/verified/<path>.sha256 written once a file's size and sha256 were checked

A start with a completeness record that matches the request (repo, revision, patterns, model file,
template URL) and every recorded file present at its recorded size makes no network call at all:
huggingface_hub is not even imported, and HF_HUB_OFFLINE=1 is set for anything downstream.

Otherwise huggingface_hub lists the repository (model info, then the tree listing with sizes and
LFS sha256), the patterns select the files, and each file is fetched:

- through huggingface_hub's Xet path (`hf_hub_download`, with HF_XET_HIGH_PERFORMANCE=1 set by the
  image) when the Hub offers the file over Xet and hf_xet is installed;
- otherwise by plain HTTP with huggingface_hub's `http_get`, appending to a partial file that
  survives a killed process, so the next start resumes with a Range request. (huggingface_hub's own
  temporary files are per-process and are deleted or orphaned on interruption, so they never resume
  across restarts: a spot instance that is replaced mid-download would start over.)

Every file's size, and its sha256 when the Hub gives one (LFS files), is checked before the file
takes its final name; a mismatch deletes the partial file and fails with a message.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

RECORD_FORMAT = 1
STATE_DIR = ".provision"
RECORD_NAME = "complete.json"
TEMPLATE_NAME = "chat_template.jinja"
HF_HOME_URL = "https://huggingface.co"
SHARD_RE = re.compile(r"^(?P<stem>.*)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$")


class DownloadError(Exception):
    """A problem with one clear, operator-facing message (no traceback needed)."""


@dataclass(frozen=True)
class ModelSpec:
    repo: str
    patterns: tuple[str, ...]
    model_file: str
    revision: str = "main"
    template_url: str | None = None


@dataclass
class Result:
    model_path: Path
    template_path: Path | None
    offline: bool
    files: dict[str, int] = field(default_factory=dict)


def split_patterns(value: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in value.split(",") if p.strip())


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} TiB"


# -- the completeness record ------------------------------------------------------------------
def record_path(model_dir: Path) -> Path:
    return model_dir / STATE_DIR / RECORD_NAME


def read_record(model_dir: Path) -> dict | None:
    try:
        rec = json.loads(record_path(model_dir).read_text())
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) and rec.get("format") == RECORD_FORMAT else None


def _atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def cached_result(spec: ModelSpec, model_dir: Path) -> tuple[Result | None, str]:
    """The fast path: (result, "") when the record says the model is complete, else (None, why)."""
    rec = read_record(model_dir)
    if rec is None:
        return None, "no completeness record"
    want = {"repo": spec.repo, "revision": spec.revision, "patterns": list(spec.patterns),
            "model_file": spec.model_file}
    for key, value in want.items():
        if rec.get(key) != value:
            return None, f"the record is for {key}={rec.get(key)!r}, this start asks {value!r}"
    tmpl = rec.get("chat_template") or {}
    if (tmpl.get("url") or None) != (spec.template_url or None):
        return None, "CHAT_TEMPLATE_URL changed"
    files = rec.get("files") or {}
    if spec.model_file not in files:
        return None, "the record does not list MODEL_FILE"
    for rpath, meta in files.items():
        p = model_dir / rpath
        try:
            size = p.stat().st_size
        except OSError:
            return None, f"{rpath} is missing"
        if size != meta.get("size"):
            return None, f"{rpath} has {size} bytes, the record says {meta.get('size')}"
    template_path = None
    if spec.template_url:
        template_path = model_dir / TEMPLATE_NAME
        if not template_path.is_file():
            return None, f"{TEMPLATE_NAME} is missing"
    return Result(model_dir / spec.model_file, template_path, True,
                  {k: v["size"] for k, v in files.items()}), ""


# -- progress -----------------------------------------------------------------------------------
class Progress:
    """Prints a line every `interval` seconds: bytes, percentage, rate, ETA, files done."""

    def __init__(self, total: int, sizes: Callable[[], int], nfiles: int,
                 log: Callable[[str], None], interval: float):
        self.total, self.sizes, self.nfiles, self.log, self.interval = total, sizes, nfiles, log, interval
        self.done_files = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._start_bytes = sizes()
        self._t0 = time.monotonic()
        self._window: list[tuple[float, int]] = [(self._t0, self._start_bytes)]

    def line(self) -> str:
        now, have = time.monotonic(), min(self.sizes(), self.total)
        self._window.append((now, have))
        while len(self._window) > 2 and now - self._window[0][0] > 30:
            self._window.pop(0)
        t_old, b_old = self._window[0]
        rate = (have - b_old) / (now - t_old) if now > t_old else 0.0
        pct = 100.0 * have / self.total if self.total else 100.0
        if rate > 0:
            eta_s = int((self.total - have) / rate)
            eta = f"{eta_s // 3600}:{eta_s % 3600 // 60:02d}:{eta_s % 60:02d}"
        else:
            eta = "unknown"
        return (f"download: {human(have)} of {human(self.total)} ({pct:.1f}%) at {human(rate)}/s, "
                f"ETA {eta}, {self.done_files} of {self.nfiles} files done")

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.log(self.line())

    def __enter__(self) -> "Progress":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def average_rate(self) -> float:
        dt = time.monotonic() - self._t0
        return (self.sizes() - self._start_bytes) / dt if dt > 0 else 0.0


# -- the download -------------------------------------------------------------------------------
def _sha256_file(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as f:
        while chunk := f.read(8 << 20):
            h.update(chunk)
    return h.hexdigest()


class _HashingWriter:
    """The file object handed to http_get: writes go to the partial file and, through a queue, to
    a sha256 computed in another thread (hashlib releases the GIL), so the check costs no second
    pass over the file. The bytes already in a resumed partial file are hashed first. If http_get
    rewinds (a server that ignored Range), the in-stream hash is dropped and the file is re-read."""

    def __init__(self, f, prefix: Path | None, prefix_len: int):
        import queue

        self.f, self.valid = f, True
        self._h = hashlib.sha256()
        self._q: "queue.Queue[bytes | None]" = queue.Queue(maxsize=64)
        self._prefix, self._prefix_len = prefix, prefix_len
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        if self._prefix is not None and self._prefix_len:
            with open(self._prefix, "rb") as pf:
                left = self._prefix_len
                while left > 0 and (chunk := pf.read(min(8 << 20, left))):
                    self._h.update(chunk)
                    left -= len(chunk)
        while (chunk := self._q.get()) is not None:
            self._h.update(chunk)

    def write(self, b: bytes) -> int:
        n = self.f.write(b)
        if self.valid:
            self._q.put(bytes(b))
        return n

    def tell(self) -> int:
        return self.f.tell()

    def seek(self, *a):
        self.valid = False
        return self.f.seek(*a)

    def truncate(self, *a):
        self.valid = False
        return self.f.truncate(*a)

    def flush(self) -> None:
        self.f.flush()

    def digest(self) -> str | None:
        self._q.put(None)
        self._t.join()
        return self._h.hexdigest() if self.valid else None


def _endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or HF_HOME_URL).rstrip("/")


def _same_origin(a: str, b: str) -> bool:
    pa, pb = urlparse(a), urlparse(b)
    return (pa.scheme, pa.hostname, pa.port) == (pb.scheme, pb.hostname, pb.port)


def _hub_error_message(spec: ModelSpec, err: Exception) -> str:
    return (f"cannot access model_repo {spec.repo!r} at {_endpoint()}: the Hub answered "
            f"{getattr(getattr(err, 'response', None), 'status_code', '?')}. The repository does not "
            "exist, or it is private or gated and no token with access was given (the Hub answers 401 "
            "for all of these without a token). Check MODEL_REPO; for a gated repository accept its "
            "terms on the Hub and set hf_token (HF_TOKEN or HF_TOKEN_PATH).")


def _list_repo(spec: ModelSpec, cached_reason: str):
    """(commit, {path: (size, sha256|None, xet_hash|None)}) from the Hub, or DownloadError."""
    import httpx2  # huggingface_hub's HTTP client
    from huggingface_hub import HfApi
    from huggingface_hub.errors import (GatedRepoError, HfHubHTTPError, RepositoryNotFoundError,
                                        RevisionNotFoundError)
    from huggingface_hub.hf_api import RepoFile

    api = HfApi()
    try:
        info = api.model_info(spec.repo, revision=spec.revision)
        commit = info.sha
        tree = {}
        for f in api.list_repo_tree(spec.repo, recursive=True, revision=commit):
            if isinstance(f, RepoFile):
                tree[f.path] = (f.size if f.lfs is None else f.lfs.size,
                                f.lfs.sha256 if f.lfs is not None else None, f.xet_hash)
    except RevisionNotFoundError:
        raise DownloadError(f"model_repo {spec.repo!r} has no revision {spec.revision!r}") from None
    except (RepositoryNotFoundError, GatedRepoError) as e:
        raise DownloadError(_hub_error_message(spec, e)) from None
    except HfHubHTTPError as e:
        if e.response is not None and e.response.status_code in (401, 403):
            raise DownloadError(_hub_error_message(spec, e)) from None
        raise DownloadError(f"the Hub at {_endpoint()} failed listing {spec.repo!r}: {e}; and the "
                            f"model is not complete in the cache ({cached_reason})") from None
    except (httpx2.HTTPError, OSError) as e:
        raise DownloadError(f"cannot reach the Hub at {_endpoint()} ({e.__class__.__name__}: {e}) "
                            f"and the model is not complete in the cache ({cached_reason})") from None
    return commit, tree


def select_files(spec: ModelSpec, tree: dict[str, tuple]) -> list[str]:
    """The files MODEL_PATTERN selects, checked against MODEL_FILE (and its shard set)."""
    from fnmatch import fnmatchcase

    def matches(path: str) -> bool:
        for p in spec.patterns:
            if p.endswith("/"):
                p += "*"
            if fnmatchcase(path, p):
                return True
        return False

    matched = sorted(p for p in tree if matches(p))
    pats = ", ".join(repr(p) for p in spec.patterns)
    if not matched:
        listing = sorted(tree)
        shown = ", ".join(listing[:40]) + (f", ... ({len(listing) - 40} more)" if len(listing) > 40 else "")
        raise DownloadError(f"MODEL_PATTERN {pats} matches no file in {spec.repo}. "
                            f"The repository has: {shown or '(no files)'}")
    if spec.model_file not in matched:
        raise DownloadError(f"MODEL_FILE {spec.model_file!r} is not among the files MODEL_PATTERN "
                            f"{pats} matched in {spec.repo}: {', '.join(matched)}")
    m = SHARD_RE.match(spec.model_file)
    if m:
        count = int(m.group("count"))
        want = [f"{m.group('stem')}-{i:05d}-of-{count:05d}.gguf" for i in range(1, count + 1)]
        missing = [w for w in want if w not in matched]
        if missing:
            raise DownloadError(f"MODEL_FILE {spec.model_file!r} is shard 1 of {count}, but MODEL_PATTERN "
                                f"{pats} does not select {', '.join(missing)} (matched: {', '.join(matched)})")
    return matched


def ensure_model(spec: ModelSpec, model_dir: Path, log: Callable[[str], None] = print,
                 progress_interval: float = 10.0, max_workers: int = 8) -> Result:
    model_dir.mkdir(parents=True, exist_ok=True)
    cached, reason = cached_result(spec, model_dir)
    if cached is not None:
        os.environ["HF_HUB_OFFLINE"] = "1"
        log(f"model complete in {model_dir} (completeness record): no network call, HF_HUB_OFFLINE=1")
        return cached
    log(f"model not complete in {model_dir} ({reason}): checking {spec.repo} on {_endpoint()}")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # we print our own progress lines
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    commit, tree = _list_repo(spec, reason)
    matched = select_files(spec, tree)
    state = model_dir / STATE_DIR
    partial_dir, verified_dir = state / "partial", state / "verified"
    partial_dir.mkdir(parents=True, exist_ok=True)

    def part_path(rpath: str) -> Path:
        size, sha, _ = tree[rpath]
        key = sha or hashlib.sha256(f"{commit}/{rpath}".encode()).hexdigest()
        return partial_dir / f"{key}.part"

    def marker(rpath: str) -> Path:
        return verified_dir / f"{rpath}.sha256"

    def is_done(rpath: str) -> bool:
        size, sha, _ = tree[rpath]
        p = model_dir / rpath
        try:
            if p.stat().st_size != size:
                return False
            return marker(rpath).read_text().strip() == (sha or f"size:{size}")
        except OSError:
            return False

    todo = [p for p in matched if not is_done(p)]
    total = sum(tree[p][0] for p in matched)
    have = sum(tree[p][0] for p in matched if p not in todo) + \
        sum(min(part_path(p).stat().st_size, tree[p][0]) for p in todo if part_path(p).exists())
    need = total - have
    free = shutil.disk_usage(model_dir).free
    margin = 64 << 20
    if need + margin > free:
        raise DownloadError(f"not enough disk space in {model_dir}: the model needs {human(need)} more "
                            f"({human(total)} in all, {len(matched)} files: {', '.join(matched)}), "
                            f"{human(free)} free. Give the instance a bigger root volume "
                            "(root_volume_gb) or free space under MODELS_DIR.")
    log(f"{spec.repo}@{commit[:12]}: {len(matched)} files, {human(total)} "
        f"({human(have)} already here): {', '.join(matched)}")

    def xet_tmp_bytes(rpath: str) -> int:
        """Bytes of huggingface_hub's temp file for rpath: <hash>.<etag>.<uuid>.incomplete next to
        the metadata, the etag of an LFS file being its sha256."""
        sha = tree[rpath][1]
        d = (model_dir / ".cache" / "huggingface" / "download" / rpath).parent
        n = 0
        if sha and d.is_dir():
            for f in d.glob(f"*.{sha}.*incomplete"):
                try:
                    n += f.stat().st_size
                except OSError:
                    pass
        return n

    def on_disk() -> int:
        n = 0
        for p in matched:
            if p not in todo or p in finished:
                n += tree[p][0]
                continue
            try:
                n += part_path(p).stat().st_size
            except OSError:
                n += xet_tmp_bytes(p)
        return n

    finished: set[str] = set()
    progress = Progress(total, on_disk, len(matched), log, progress_interval)
    progress.done_files = len(matched) - len(todo)

    def fetch(rpath: str) -> None:
        _fetch_one(spec, model_dir, commit, rpath, tree[rpath], part_path(rpath), marker(rpath), log)
        finished.add(rpath)
        progress.done_files += 1

    t0 = time.monotonic()
    try:
        with progress:
            if todo:
                with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(todo)))) as pool:
                    for fut in [pool.submit(fetch, p) for p in todo]:
                        fut.result()
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise DownloadError(f"disk full while downloading into {model_dir} "
                                f"({human(shutil.disk_usage(model_dir).free)} free); partial files are "
                                "kept and the next start resumes once space is freed") from None
        raise
    if todo:
        dt = time.monotonic() - t0
        log(f"downloaded {human(need)} in {dt:.1f}s ({human(need / dt if dt else 0)}/s)")

    template_path = None
    template_rec = None
    if spec.template_url:
        template_path, template_rec = _fetch_template(spec.template_url, model_dir, log)

    record = {"format": RECORD_FORMAT, "repo": spec.repo, "revision": spec.revision, "commit": commit,
              "patterns": list(spec.patterns), "model_file": spec.model_file,
              "files": {p: {"size": tree[p][0], "sha256": tree[p][1]} for p in matched},
              "chat_template": template_rec, "completed_at": int(time.time()),
              "endpoint": _endpoint()}
    _atomic_write(record_path(model_dir), json.dumps(record, indent=2).encode())
    _cleanup(model_dir, {part_path(p).name for p in matched})
    log(f"model complete: {model_dir / spec.model_file}")
    return Result(model_dir / spec.model_file, template_path, False, {p: tree[p][0] for p in matched})


def _fetch_one(spec: ModelSpec, model_dir: Path, commit: str, rpath: str, meta: tuple,
               part: Path, mark: Path, log: Callable[[str], None]) -> None:
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_download, hf_hub_url
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError
    from huggingface_hub.file_download import http_get
    from huggingface_hub.utils import build_hf_headers

    size, sha, xet_hash = meta
    final = model_dir / rpath
    streamed_sha = None
    via_xet = False
    if final.is_file() and final.stat().st_size == size:
        # Present but not yet verified by us (e.g. written by the Xet path just before a restart).
        got = _sha256_file(final) if sha else None
        if sha is None or got == sha:
            _atomic_write(mark, (sha or f"size:{size}").encode())
            log(f"{rpath}: already present, verified")
            return
        final.unlink()
    url = hf_hub_url(spec.repo, rpath, revision=commit, endpoint=_endpoint())
    try:
        fmeta = get_hf_file_metadata(url)
        resume = part.stat().st_size if part.exists() else 0
        use_xet = False
        if fmeta.xet_file_data is not None and not _is_true(os.environ.get("HF_HUB_DISABLE_XET")):
            try:
                import hf_xet  # noqa: F401
                use_xet = True
            except ImportError:
                log(f"{rpath}: the Hub offers Xet but hf_xet is not installed: plain HTTP")
            if use_xet and resume:
                use_xet = False  # finishing a partial file over HTTP beats starting over
                log(f"{rpath}: {human(resume)} already here from plain HTTP: resuming that")
        if use_xet:
            log(f"{rpath}: {human(size)} via Xet")
            try:
                hf_hub_download(spec.repo, rpath, revision=commit, local_dir=str(model_dir))
            except (RepositoryNotFoundError, GatedRepoError):
                raise
            except Exception as e:  # noqa: BLE001 - any Xet failure: fall back, below
                if isinstance(e, HfHubHTTPError) and e.response is not None and \
                        e.response.status_code in (401, 403):
                    raise
                if isinstance(e, OSError) and e.errno == errno.ENOSPC:
                    raise
                log(f"{rpath}: Xet download failed ({e.__class__.__name__}: "
                    f"{str(e).splitlines()[0] if str(e) else ''}); falling back to plain HTTP")
                use_xet = False
            else:
                via_xet = True
                part.unlink(missing_ok=True)
        if not use_xet:
            if resume > size:
                part.unlink()
                resume = 0
            log(f"{rpath}: {human(size)} via HTTP" + (f", resuming at {human(resume)}" if resume else ""))
            headers = build_hf_headers()
            headers["Accept-Encoding"] = "identity"
            location = fmeta.location or url
            if not _same_origin(location, _endpoint()):
                # Signed CDN URL: the token stays on the Hub.
                headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
            # http_get writes in chunks of DOWNLOAD_CHUNK_SIZE (10 MiB): 1 MiB loses less to a
            # kill and makes the progress lines smoother, at no measurable cost.
            constants.DOWNLOAD_CHUNK_SIZE = min(constants.DOWNLOAD_CHUNK_SIZE, 1 << 20)
            with open(part, "ab") as f:
                writer = _HashingWriter(f, part if resume else None, resume)
                try:
                    http_get(location, writer, resume_size=resume, headers=headers, expected_size=size,
                             displayed_filename=rpath)
                finally:
                    streamed_sha = writer.digest()
            final.parent.mkdir(parents=True, exist_ok=True)
    except (RepositoryNotFoundError, GatedRepoError) as e:
        raise DownloadError(_hub_error_message(spec, e)) from None
    except HfHubHTTPError as e:
        if e.response is not None and e.response.status_code in (401, 403):
            raise DownloadError(_hub_error_message(spec, e)) from None
        raise DownloadError(f"{rpath}: the Hub answered {e}; partial data is kept, the next start "
                            "resumes") from None
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise
        raise DownloadError(f"{rpath}: download failed ({e.__class__.__name__}: {e}); partial data is "
                            "kept, the next start resumes") from None
    src = final if via_xet else part
    got_size = src.stat().st_size
    if got_size != size:
        src.unlink()
        raise DownloadError(f"{rpath}: got {got_size} bytes, the Hub lists {size}; deleted it, the next "
                            "start downloads it again")
    if sha:
        got = streamed_sha if (src is part and streamed_sha) else _sha256_file(src)
        if got != sha:
            src.unlink()
            raise DownloadError(f"{rpath}: sha256 {got} does not match the Hub's {sha}; deleted it, the "
                                "next start downloads it again")
    if src is part:
        os.replace(part, final)
    _atomic_write(mark, (sha or f"size:{size}").encode())
    log(f"{rpath}: done, {human(size)}" + (", sha256 verified" if sha else ", size verified"))


def _is_true(v: str | None) -> bool:
    return (v or "").strip().lower() in ("1", "true", "yes", "on")


def template_fetch_url(url: str) -> str:
    """A huggingface.co URL goes to HF_ENDPOINT when that is set (a mirror, or a test endpoint)."""
    ep = os.environ.get("HF_ENDPOINT")
    if ep and url.startswith(HF_HOME_URL + "/"):
        return ep.rstrip("/") + url[len(HF_HOME_URL):]
    return url


def _fetch_template(url: str, model_dir: Path, log: Callable[[str], None]) -> tuple[Path, dict]:
    from huggingface_hub.utils import build_hf_headers, get_session

    target = model_dir / TEMPLATE_NAME
    real = template_fetch_url(url)
    headers = build_hf_headers() if _same_origin(real, _endpoint()) else {}
    try:
        r = get_session().get(real, headers=headers, follow_redirects=True, timeout=60)
    except Exception as e:  # noqa: BLE001 - httpx errors, one message
        raise DownloadError(f"cannot fetch CHAT_TEMPLATE_URL {url}: {e.__class__.__name__}: {e}") from None
    if r.status_code != 200:
        raise DownloadError(f"cannot fetch CHAT_TEMPLATE_URL {url}: HTTP {r.status_code}")
    body = r.content
    if not body.strip():
        raise DownloadError(f"CHAT_TEMPLATE_URL {url} returned an empty document")
    _atomic_write(target, body)
    log(f"chat template: {human(len(body))} from {url} -> {target}")
    return target, {"url": url, "file": TEMPLATE_NAME, "sha256": hashlib.sha256(body).hexdigest()}


def _cleanup(model_dir: Path, keep_parts: set[str]) -> None:
    """Drop partial files of other versions and huggingface_hub's orphaned per-process temp files."""
    for f in (model_dir / STATE_DIR / "partial").glob("*.part"):
        if f.name not in keep_parts:
            f.unlink(missing_ok=True)
    hf_dl = model_dir / ".cache" / "huggingface" / "download"
    if hf_dl.is_dir():
        for f in hf_dl.rglob("*.incomplete"):
            f.unlink(missing_ok=True)
