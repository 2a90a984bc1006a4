"""Obtain a certificate through ACME DNS-01 with certbot's `acme` library.

The ACME account key lives in Secrets Manager (home region); challenge TXT records go through the
operator's Cloudflare token and are removed afterwards (also those a crashed earlier run left,
found by their comment). Key material stays in memory: never on disk, in logs or in state.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import time
from dataclasses import dataclass
from typing import Callable

import josepy as jose
from acme import challenges, client, crypto_util, errors as acme_errors, messages
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ..errors import CloudError

USER_AGENT = "provision (+acme)"
CA_BUNDLE_ENV = "PROVISION_ACME_CA_BUNDLE"  # a CA file to trust for the ACME server (the sandbox's pebble)
PROPAGATION_ENV = "PROVISION_ACME_PROPAGATION_SECONDS"


@dataclass
class Material:
    certificate: str  # PEM chain, leaf first
    private_key: str  # PEM (PKCS#8)
    names: tuple[str, ...]
    not_after: dt.datetime

    def to_secret(self) -> str:
        return json.dumps({"certificate": self.certificate, "private_key": self.private_key,
                           "names": list(self.names),
                           "not_after": self.not_after.strftime("%Y-%m-%dT%H:%M:%SZ")})

    @classmethod
    def from_secret(cls, value: str) -> "Material":
        d = json.loads(value)
        return cls(d["certificate"], d["private_key"], tuple(d["names"]),
                   dt.datetime.fromisoformat(d["not_after"].replace("Z", "+00:00")))

    def __repr__(self) -> str:  # never show the key
        return f"Material(names={self.names!r}, not_after={self.not_after:%Y-%m-%d})"


def new_account_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _verify() -> bool | str:
    return os.environ.get(CA_BUNDLE_ENV) or True


def _is_local(directory: str) -> bool:
    return directory.startswith(("https://127.0.0.1", "https://localhost", "http://127.0.0.1", "http://localhost"))


class TxtRecords:
    """Where DNS-01 challenge records are written (the Cloudflare zone, see dns01.py)."""

    def cleanup(self) -> None: ...

    def add(self, name: str, value: str) -> str: ...

    def remove(self, record_id: str) -> None: ...


def issue(directory: str, account_key_pem: str, names: tuple[str, ...], txt: TxtRecords,
          progress: Callable[[str], None] = lambda m: None, timeout: float = 300.0) -> Material:
    """Order, prove and finalize one certificate for names. Raises CloudError naming the names."""
    label = ", ".join(names[:3]) + (f" (+{len(names) - 3} more)" if len(names) > 3 else "")
    key = serialization.load_pem_private_key(account_key_pem.encode(), password=None)
    jwk = jose.JWKRSA(key=key)
    added: list[str] = []
    try:
        net = client.ClientNetwork(jwk, user_agent=USER_AGENT, verify_ssl=_verify())
        acme = client.ClientV2(client.ClientV2.get_directory(directory, net), net=net)
        try:
            acme.new_account(messages.NewRegistration.from_data(terms_of_service_agreed=True))
        except acme_errors.ConflictError as exc:  # this key is registered already: use that account
            acme.query_registration(messages.RegistrationResource(uri=exc.location, body=messages.Registration()))
        cert_key = ec.generate_private_key(ec.SECP256R1())
        key_pem = cert_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption())
        order = acme.new_order(crypto_util.make_csr(key_pem, list(names)))
        txt.cleanup()
        answers = []
        for authz in order.authorizations:
            domain = authz.body.identifier.value
            dns01 = next((c for c in authz.body.challenges if isinstance(c.chall, challenges.DNS01)), None)
            if dns01 is None:
                raise CloudError(f"certificate for {label}: the ACME server offers no DNS-01 challenge for {domain}")
            added.append(txt.add(dns01.chall.validation_domain_name(domain), dns01.chall.validation(jwk)))
            answers.append(dns01)
        wait = float(os.environ.get(PROPAGATION_ENV, "0" if _is_local(directory) else "20"))
        if wait > 0:
            progress(f"waiting {wait:.0f}s for challenge records of {label} to propagate")
            time.sleep(wait)
        for challenge in answers:
            acme.answer_challenge(challenge, challenge.chall.response(jwk))
        deadline = dt.datetime.now() + dt.timedelta(seconds=timeout)
        order = acme.poll_and_finalize(order, deadline=deadline)
        chain = order.fullchain_pem
        leaf = x509.load_pem_x509_certificate(chain.encode())
        return Material(chain, key_pem.decode(), tuple(names), leaf.not_valid_after_utc)
    except CloudError:
        raise
    except acme_errors.ValidationError as exc:
        details = "; ".join(str(getattr(a.body, "error", None) or a.body.status) for a in exc.failed_authzrs)
        raise CloudError(f"certificate for {label}: the ACME server refused the DNS-01 validation: {details}",
                         hint="check CAA records and that the zone is served by Cloudflare; the old certificate keeps serving") from None
    except acme_errors.TimeoutError:
        raise CloudError(f"certificate for {label}: the ACME order did not complete within {timeout:.0f}s",
                         hint="re-run: the order is retried; the old certificate keeps serving") from None
    except messages.Error as exc:
        what = exc.detail or exc.typ
        hint = ("Let's Encrypt allows 50 certificates a week per registered domain and 5 for the same names"
                if "rateLimited" in str(exc.typ) else "the old certificate keeps serving; re-run to retry")
        raise CloudError(f"certificate for {label}: the ACME server said: {what}", hint=hint) from None
    except (acme_errors.Error, OSError) as exc:
        raise CloudError(f"certificate for {label}: ACME request to {directory} failed: {exc}",
                         hint="check acme_directory and the network; the old certificate keeps serving") from None
    finally:
        for rid in added:
            try:
                txt.remove(rid)
            except Exception:  # noqa: BLE001 - the next run's cleanup() finds leftovers by comment
                pass
