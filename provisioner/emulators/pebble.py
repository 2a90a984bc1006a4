"""Run Debian's `pebble` (Let's Encrypt's ACME test server) on loopback, for the sandbox and tests.

pebble ships no certificate for its own listener: we make a throwaway CA and a localhost
certificate, and hand the CA's path to ACME clients (`ca_bundle`). Validation is skipped by
pebble's own setting (PEBBLE_VA_ALWAYS_VALID), since emulated DNS is not resolvable.
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import shutil
import socket
import ssl
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def pebble_binary() -> str | None:
    return shutil.which("pebble") or ("/usr/bin/pebble" if os.access("/usr/bin/pebble", os.X_OK) else None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_listener_cert(folder: Path) -> tuple[Path, Path, Path]:
    """A CA and a certificate for 127.0.0.1/localhost signed by it. Returns (ca, cert, key) paths."""
    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "provision test CA for pebble")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    folder.mkdir(parents=True, exist_ok=True)
    ca_path, cert_path, key_path = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    os.chmod(key_path, 0o600)
    return ca_path, cert_path, key_path


@dataclass
class Pebble:
    folder: Path
    port: int = 0
    management_port: int = 0
    process: subprocess.Popen | None = None
    ca_bundle: Path | None = None

    @property
    def directory(self) -> str:
        return f"https://127.0.0.1:{self.port}/dir"

    def start(self, timeout: float = 20.0) -> "Pebble":
        binary = pebble_binary()
        if binary is None:
            raise FileNotFoundError("pebble is not installed (Debian package 'pebble')")
        self.port = self.port or _free_port()
        self.management_port = self.management_port or _free_port()
        self.ca_bundle, cert, key = make_listener_cert(self.folder)
        config = {"pebble": {
            "listenAddress": f"127.0.0.1:{self.port}",
            "managementListenAddress": f"127.0.0.1:{self.management_port}",
            "certificate": str(cert), "privateKey": str(key),
            "httpPort": _free_port(), "tlsPort": _free_port(),
            "ocspResponderURL": "", "externalAccountBindingRequired": False,
        }}
        cfg_path = self.folder / "pebble-config.json"
        cfg_path.write_text(json.dumps(config))
        env = dict(os.environ, PEBBLE_VA_ALWAYS_VALID="1", PEBBLE_VA_NOSLEEP="1", PEBBLE_WFE_NONCEREJECT="0",
                   PEBBLE_AUTHZREUSE="0")
        log = open(self.folder / "pebble.log", "ab")
        self.process = subprocess.Popen([binary, "-config", str(cfg_path), "-dnsserver", "127.0.0.1:1"],
                                        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        ctx = ssl.create_default_context(cafile=str(self.ca_bundle))
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"pebble exited: {(self.folder / 'pebble.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.directory, context=ctx, timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"pebble did not answer on {self.directory} within {timeout}s")

    def root_pem(self, index: int = 0) -> str:
        """pebble's current root certificate (regenerated on every start)."""
        ctx = ssl.create_default_context(cafile=str(self.ca_bundle))
        url = f"https://127.0.0.1:{self.management_port}/roots/{index}"
        with urllib.request.urlopen(url, context=ctx, timeout=5) as r:
            return r.read().decode()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.process = None


def sandbox_start(sandbox_dir: Path) -> tuple[int, dict[str, str]] | None:
    """The sandbox's hook (provisioner.sandbox): start pebble in the background for `--sandbox`.

    Returns its pid and the variables that point provision's ACME client at it, or None when
    pebble is not installed (the sandbox then runs without certificates' server).
    """
    if pebble_binary() is None:
        return None
    p = Pebble(Path(sandbox_dir) / "pebble").start()
    assert p.process is not None
    return p.process.pid, {"PROVISION_ACME_DIRECTORY": p.directory, "PROVISION_ACME_CA_BUNDLE": str(p.ca_bundle)}
