#!/usr/bin/env python3
"""Container entrypoint: check the configuration, get the model, exec llama-server.

    python container/entrypoint.py [extra llama-server args...]

Reads the seed's variables (see container/README.md for the table), downloads the model into
$MODELS_DIR/$API_NAME/ (model_download.py), then replaces itself with llama-server (exec), so
llama-server is PID 1 in the container, receives SIGTERM directly and exits cleanly.

Exit status before the exec: 2 invalid configuration, 3 model download/verification problem,
4 llama-server binary missing. Every one prints one clear message, no traceback
(ENTRYPOINT_DEBUG=1 adds tracebacks).

Secrets never reach a command line: the API key goes to llama-server with --api-key-file through
an inherited pipe (/dev/fd/N), so it is written to no file and `ps` shows only the path;
LLAMA_API_KEY and HF_TOKEN are removed from llama-server's environment.
"""
from __future__ import annotations

import os
import re
import shlex
import signal
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import model_download  # noqa: E402  (this directory; the container ships it next to us)

EXIT_CONFIG, EXIT_MODEL, EXIT_BINARY = 2, 3, 4
KV_CACHE_TYPES = ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1")
SPLIT_MODES = ("none", "layer", "row", "tensor")
NUMA_MODES = ("distribute", "isolate", "numactl")
TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off")
DEFAULTS = {"PORT": "8080", "HOST": "0.0.0.0", "CTX_SIZE": "16384", "GPU_LAYERS": "99",
            "PARALLEL": "4", "BATCH_SIZE": "2048", "UBATCH_SIZE": "512"}
SECRET_ENV = ("LLAMA_API_KEY", "HF_TOKEN")


_LOG_LOCK = threading.Lock()


def log(msg: str) -> None:
    line = f"[entrypoint {time.strftime('%H:%M:%S')}] {msg}\n"
    with _LOG_LOCK:  # download threads log too: one write per line
        sys.stderr.write(line)
        sys.stderr.flush()


class ConfigError(Exception):
    pass


class Settings:
    """Every variable parsed and checked; `errors` lists every problem at once."""

    def __init__(self, env: dict[str, str]):
        self.env = env
        self.errors: list[str] = []
        g = self._get
        self.api_name = g("API_NAME", required=True)
        if self.api_name and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", self.api_name):
            self.errors.append(f"API_NAME={self.api_name!r}: letters, digits, '.', '_' and '-' only "
                               "(it names the model directory and the served model)")
        self.model_repo = g("MODEL_REPO", required=True)
        if self.model_repo and not re.fullmatch(r"[\w.-]+/[\w.-]+", self.model_repo):
            self.errors.append(f"MODEL_REPO={self.model_repo!r}: expected owner/name")
        self.model_file = g("MODEL_FILE", required=True)
        if self.model_file and (self.model_file.startswith("/") or ".." in self.model_file.split("/")):
            self.errors.append(f"MODEL_FILE={self.model_file!r}: a path inside the repository")
        pattern = g("MODEL_PATTERN") or self.model_file or ""
        self.patterns = model_download.split_patterns(pattern)
        if self.model_file and not self.patterns:
            self.errors.append("MODEL_PATTERN: no pattern given")
        self.revision = g("MODEL_REVISION") or "main"
        self.template_url = g("CHAT_TEMPLATE_URL")
        if self.template_url and not re.match(r"https?://", self.template_url):
            self.errors.append(f"CHAT_TEMPLATE_URL={self.template_url!r}: an http(s) URL")
        self.host = g("HOST")
        self.port = self._int("PORT", 1, 65535)
        self.ctx_size = self._int("CTX_SIZE", 0)
        gl = g("GPU_LAYERS")
        if gl not in ("auto", "all"):
            self._int("GPU_LAYERS", -1)
        self.gpu_layers = gl
        self.parallel = self._int("PARALLEL", 1)
        self.batch_size = self._int("BATCH_SIZE", 1)
        self.ubatch_size = self._int("UBATCH_SIZE", 1)
        self.cont_batching = self._bool("CONT_BATCHING")
        self.mlock = self._bool("MLOCK")
        fa = (g("FLASH_ATTN") or "").lower()
        self.flash_attn: str | None = None  # false/unset: llama-server's own default stands
        if fa in ("on", "off", "auto"):
            self.flash_attn = fa
        elif fa in TRUE:
            self.flash_attn = "on"  # the seed's true
        elif fa not in FALSE and fa != "":
            self.errors.append(f"FLASH_ATTN={fa!r}: one of true, false, on, off, auto")
        self.cache_type_k = self._choice("CACHE_TYPE_K", KV_CACHE_TYPES)
        self.cache_type_v = self._choice("CACHE_TYPE_V", KV_CACHE_TYPES)
        self.override_tensor = g("OVERRIDE_TENSOR")
        if self.override_tensor and not all("=" in part for part in self.override_tensor.split(",")):
            self.errors.append(f"OVERRIDE_TENSOR={self.override_tensor!r}: "
                               "<tensor name pattern>=<buffer type>[,...]")
        self.tensor_split = g("TENSOR_SPLIT")
        if self.tensor_split and not re.fullmatch(r"\d+(\.\d+)?([,/]\d+(\.\d+)?)*", self.tensor_split):
            self.errors.append(f"TENSOR_SPLIT={self.tensor_split!r}: numbers separated by commas, e.g. 3,1")
        self.split_mode = self._choice("SPLIT_MODE", SPLIT_MODES)
        self.main_gpu = self._int("MAIN_GPU", 0) if g("MAIN_GPU") else None
        self.numa = self._choice("NUMA", NUMA_MODES)
        try:
            self.extra_args = shlex.split(g("EXTRA_ARGS") or "")
        except ValueError as e:
            self.errors.append(f"EXTRA_ARGS: {e}")
            self.extra_args = []
        self.models_dir = Path(g("MODELS_DIR") or "/models")
        self.server_bin = g("LLAMA_SERVER_BIN") or "/app/llama-server"
        self.progress_interval = 10.0
        if g("DOWNLOAD_PROGRESS_INTERVAL"):
            try:
                self.progress_interval = max(0.2, float(g("DOWNLOAD_PROGRESS_INTERVAL")))
            except ValueError:
                self.errors.append("DOWNLOAD_PROGRESS_INTERVAL: seconds, a number")
        # Secrets: read here, handed over without a command line.
        self.api_keys = self._api_keys()
        # HF_TOKEN_PATH naming no file means no token (the agent writes it only when one is set);
        # a file that exists but cannot be read is an error.
        token_path = g("HF_TOKEN_PATH")
        self.notes: list[str] = []
        if token_path and os.path.exists(token_path) and not os.access(token_path, os.R_OK):
            self.errors.append(f"HF_TOKEN_PATH={token_path!r}: not readable by uid {os.getuid()}")
        elif token_path and not os.path.exists(token_path):
            self.notes.append(f"HF_TOKEN_PATH={token_path} does not exist: no Hub token")

    # -- parsing helpers ------------------------------------------------------------------------
    def _get(self, name: str, required: bool = False) -> str | None:
        v = self.env.get(name, "").strip() or DEFAULTS.get(name)
        if required and not v:
            self.errors.append(f"{name} is required")
        return v or None

    def _int(self, name: str, lo: int, hi: int | None = None) -> int | None:
        v = self._get(name)
        if v is None:
            return None
        try:
            n = int(v)
        except ValueError:
            self.errors.append(f"{name}={v!r}: not an integer")
            return None
        if n < lo or (hi is not None and n > hi):
            self.errors.append(f"{name}={v!r}: must be " + (f"between {lo} and {hi}" if hi else f">= {lo}"))
        return n

    def _bool(self, name: str) -> bool:
        v = (self._get(name) or "").lower()
        if v in TRUE:
            return True
        if v in FALSE or v == "":
            return False
        self.errors.append(f"{name}={v!r}: true or false")
        return False

    def _choice(self, name: str, allowed: tuple[str, ...]) -> str | None:
        v = self._get(name)
        if v is not None and v.lower() not in allowed:
            self.errors.append(f"{name}={v!r}: one of {', '.join(allowed)}")
        return v.lower() if v else None

    def _api_keys(self) -> list[str]:
        path = self._get("LLAMA_API_KEY_FILE")
        if path:
            try:
                text = Path(path).read_text()
            except OSError as e:
                self.errors.append(f"LLAMA_API_KEY_FILE={path!r}: {e.strerror}")
                return []
            keys = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
            if not keys:
                self.errors.append(f"LLAMA_API_KEY_FILE={path!r}: the file holds no key")
            return keys
        key = self.env.get("LLAMA_API_KEY", "").strip()
        return [key] if key else []

    # -- the llama-server command line -----------------------------------------------------------
    def server_args(self, model: Path, template: Path | None, key_file: str | None) -> list[str]:
        a = [self.server_bin, "--model", str(model), "--alias", self.api_name,
             "--host", self.host, "--port", str(self.port),
             "--ctx-size", str(self.ctx_size), "--n-gpu-layers", str(self.gpu_layers),
             "--parallel", str(self.parallel), "--batch-size", str(self.batch_size),
             "--ubatch-size", str(self.ubatch_size)]
        if self.cont_batching:
            a.append("--cont-batching")
        if self.flash_attn:
            a += ["--flash-attn", self.flash_attn]
        if self.mlock:
            # --mlock is gone in this build: the load mode carries it (mmap as before, plus mlock).
            a += ["--load-mode", "mmap+mlock"]
        for flag, value in (("--cache-type-k", self.cache_type_k), ("--cache-type-v", self.cache_type_v),
                            ("--override-tensor", self.override_tensor),
                            ("--tensor-split", self.tensor_split), ("--split-mode", self.split_mode),
                            ("--numa", self.numa)):
            if value:
                a += [flag, value]
        if self.main_gpu is not None:
            a += ["--main-gpu", str(self.main_gpu)]
        if template is not None:
            a += ["--jinja", "--chat-template-file", str(template)]
        if key_file:
            a += ["--api-key-file", key_file]
        return a


def key_pipe(keys: list[str]) -> str:
    """An inherited pipe holding the keys: llama-server reads /dev/fd/N like a file, nothing on disk."""
    r, w = os.pipe()
    data = ("\n".join(keys) + "\n").encode()
    if len(data) > 60000:
        raise ConfigError("the API key file is too large")
    os.write(w, data)
    os.close(w)
    os.set_inheritable(r, True)
    return f"/dev/fd/{r}"


def _stop(signum, _frame) -> None:
    """SIGTERM/SIGINT before the exec (during a download). In a container the entrypoint is PID 1,
    which the kernel gives no default signal action: without this handler `docker stop` would wait
    its whole grace period. Partial downloads are kept; the next start resumes them."""
    log(f"{signal.Signals(signum).name}: stopping before llama-server started; partial downloads are kept")
    os._exit(128 + signum)


def main(argv: list[str]) -> int:
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _stop)  # exec resets these: llama-server handles its own signals
    debug = os.environ.get("ENTRYPOINT_DEBUG", "").lower() in TRUE
    s = Settings(dict(os.environ))
    if s.errors:
        log("invalid configuration, nothing started:\n  - " + "\n  - ".join(s.errors))
        return EXIT_CONFIG
    for note in s.notes:
        log(note)
    if not (os.path.isfile(s.server_bin) and os.access(s.server_bin, os.X_OK)):
        log(f"llama-server not found or not executable at LLAMA_SERVER_BIN={s.server_bin!r}")
        return EXIT_BINARY

    spec = model_download.ModelSpec(repo=s.model_repo, patterns=s.patterns, model_file=s.model_file,
                                     revision=s.revision, template_url=s.template_url)
    model_dir = s.models_dir / s.api_name
    try:
        result = model_download.ensure_model(spec, model_dir, log=log,
                                             progress_interval=s.progress_interval)
    except model_download.DownloadError as e:
        log(f"model: {e}")
        if debug:
            raise
        return EXIT_MODEL
    except OSError as e:
        log(f"model: {model_dir}: {e.strerror or e}")
        if debug:
            raise
        return EXIT_MODEL

    key_file = key_pipe(s.api_keys) if s.api_keys else None
    args = s.server_args(result.model_path, result.template_path, key_file) + s.extra_args + argv
    env = {k: v for k, v in os.environ.items() if k not in SECRET_ENV}
    log("exec " + " ".join(shlex.quote(x) for x in args)
        + ("" if key_file else "   (no API key: the API is open)"))
    try:
        os.execve(s.server_bin, args, env)
    except OSError as e:
        log(f"cannot exec {s.server_bin}: {e.strerror}")
        return EXIT_BINARY
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
