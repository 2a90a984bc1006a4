"""The checks a JSON Schema cannot say. Runs on data the schema already accepted; no network."""
from __future__ import annotations

import fnmatch
import ipaddress
import re
from functools import lru_cache
from pathlib import Path
from typing import Iterator

HOSTNAME = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$")
AMI_ID = re.compile(r"^ami-[0-9a-f]{8,17}$")
SSH_KEY = re.compile(r"^(ssh-(rsa|ed25519|dss)|ecdsa-sha2-nistp(256|384|521)|sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com) [A-Za-z0-9+/=]+( .*)?$")
IMAGE = re.compile(r"^[a-z0-9]([a-z0-9._-]*[a-z0-9])?(:[0-9]+)?(/[a-z0-9]([a-z0-9._-]*[a-z0-9])?)*(:[A-Za-z0-9_][A-Za-z0-9._-]{0,127})?(@sha256:[0-9a-f]{64})?$")
# llama-server flags the container sets itself; passing them again would fight it (or leak a secret).
MANAGED_FLAGS = {
    "--api-key": "would put the API key on a command line where `ps` shows it; the container passes it as a file",
    "--api-key-file": "is set by the container from the stack's api-key secret",
    "--host": "is set by the container (HOST)",
    "--port": "is set by the container (PORT)",
    "-m": "is set by the container from model_file",
    "--model": "is set by the container from model_file",
    "--alias": "is set by the container from api_name",
    "-a": "is set by the container from api_name",
    "--hf-token": "would put the token on a command line; use model_config.hf_token",
}


@lru_cache(maxsize=1)
def known_regions() -> frozenset[str]:
    """Regions of every AWS partition, from botocore's bundled endpoints data (no network).

    Read as JSON rather than through a botocore session: importing botocore.session costs more than
    the whole rest of `validate`.
    """
    import importlib.util
    import json

    spec = importlib.util.find_spec("botocore")
    data_dir = Path(spec.origin).parent / "data"
    regions: set[str] = set()
    try:
        endpoints = json.loads((data_dir / "endpoints.json").read_text())
        for partition in endpoints.get("partitions", []):
            regions.update(partition.get("regions", {}))
    except (OSError, ValueError):  # pragma: no cover - a botocore without its data: ask it properly
        import botocore.session

        session = botocore.session.get_session()
        for partition in session.get_available_partitions():
            regions.update(session.get_available_regions("ec2", partition_name=partition))
    return frozenset(regions)


def _region_problem(region: str) -> str | None:
    if region in known_regions():
        return None
    close = nearest(region, known_regions(), max_distance=2)
    hint = f"did you mean {close!r}?" if close else "use an AWS region code like us-east-1"
    return f"{region!r} is not an AWS region; {hint}"


def edit_distance(a: str, b: str) -> int:
    """Damerau-Levenshtein distance (optimal string alignment): a swap of two letters counts once."""
    d = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a) + 1):
        d[i][0] = i
    for j in range(len(b) + 1):
        d[0][j] = j
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[len(a)][len(b)]


def nearest(word: str, options, max_distance: int) -> str | None:
    best = min(sorted(options), key=lambda o: edit_distance(word, o), default=None)
    return best if best is not None and edit_distance(word, best) <= max_distance else None


def _az_problem(az: str, region: str) -> str | None:
    # us-east-1a, or a Local Zone such as us-west-2-lax-1a
    if re.fullmatch(re.escape(region) + r"[a-z]", az) or re.fullmatch(re.escape(region) + r"-[a-z0-9-]+[a-z]", az):
        return None
    if re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d+[a-z]", az):
        return f"{az!r} is an availability zone of {az[:-1]!r}, not of this cluster's region {region!r}"
    return f"{az!r} is not an availability zone name (like {region}a)"


def _patterns(model_pattern: str) -> list[str]:
    return [p.strip() for p in model_pattern.split(",")]


def semantic_problems(data: dict) -> Iterator[tuple[tuple, str]]:
    stack = data.get("stack") or {}
    yield from _stack_problems(stack)
    domain = (stack.get("domain-name") or "").lower().rstrip(".")
    host_seen: dict[str, tuple] = {}
    for name, c in data.items():
        if name == "stack":
            continue
        yield from _cluster_problems(name, c, domain, host_seen)


def _stack_problems(s: dict) -> Iterator[tuple[tuple, str]]:
    if "domain-name" in s and not HOSTNAME.match(s["domain-name"].lower().rstrip(".")):
        yield ("stack", "domain-name"), f"{s['domain-name']!r} is not a domain name (like example.com)"
    if "home_region" in s:
        problem = _region_problem(s["home_region"])
        if problem:
            yield ("stack", "home_region"), problem
    for i, key in enumerate(s.get("ssh_keys", [])):
        if not SSH_KEY.match(key.strip()):
            yield ("stack", "ssh_keys", i), ("is not an OpenSSH public key (a line like 'ssh-ed25519 AAAA... "
                                             "comment' from a .pub file); never put a private key here")
    for i, cidr in enumerate(s.get("ssh_cidrs", [])):
        try:
            ipaddress.ip_network(cidr, strict=True)
        except ValueError:
            try:
                net = ipaddress.ip_network(cidr, strict=False)
                yield ("stack", "ssh_cidrs", i), f"{cidr!r} has host bits set; did you mean {str(net)!r}?"
            except ValueError:
                yield ("stack", "ssh_cidrs", i), f"{cidr!r} is not a CIDR block (like 203.0.113.0/24)"
    ami = s.get("ami")
    if ami is not None and not (AMI_ID.match(ami) or re.match(r"^(resolve:ssm:)?/[A-Za-z0-9_./-]+$", ami)):
        yield ("stack", "ami"), (f"{ami!r} is neither an AMI id (ami-...) nor an SSM parameter path "
                                 f"(resolve:ssm:/aws/service/...)")
    image = s.get("image")
    if image is not None and not IMAGE.match(image):
        lower = image.lower() if IMAGE.match(image.lower()) else None
        hint = f"; image names are lowercase: {lower!r}?" if lower else " (like ghcr.io/owner/c3-llamacpp:b1234)"
        yield ("stack", "image"), f"{image!r} is not a container image reference{hint}"
    acme = s.get("acme_directory")
    if acme and acme.startswith("http://") and not re.match(r"^http://(localhost|127\.0\.0\.1)(:\d+)?/", acme):
        yield ("stack", "acme_directory"), "must be https:// (plain http only for a local test server)"


def _cluster_problems(name: str, c: dict, domain: str, host_seen: dict[str, tuple]) -> Iterator[tuple[tuple, str]]:
    region = c["region"]
    problem = _region_problem(region)
    if problem:
        yield (name, "region"), problem
    else:
        for i, az in enumerate(c.get("azs", [])):
            problem = _az_problem(az, region)
            if problem:
                yield (name, "azs", i), problem
    hosts = [h.lower() for h in c["hosts"]]
    for i, host in enumerate(hosts):
        here = (name, "hosts", i)
        if host in host_seen:
            first = host_seen[host]
            where = "earlier in this cluster" if first[0] == name else f"in cluster {first[0]!r}"
            yield here, f"{host!r} is already listed {where} ({'.'.join(map(str, first[:2]))}[{first[2]}]); each host is one instance, list it once"
        else:
            host_seen[host] = here
        if domain and host != domain and not host.endswith("." + domain):
            yield here, f"{host!r} is not inside domain-name {domain!r}; use a name under it or change stack.domain-name"
    on_demand = c.get("on-demand", 0)
    if on_demand > len(hosts):
        yield (name, "on-demand"), (f"is {on_demand} but the cluster has {len(hosts)} host(s); on-demand capacity "
                                    f"is at most the number of hosts")
    m = c["model_config"]
    mp = (name, "model_config")
    patterns = _patterns(m["model_pattern"])
    if any(not p for p in patterns):
        yield mp + ("model_pattern",), "has an empty pattern between commas; remove the extra comma"
    model_file = m["model_file"]
    if model_file.startswith("/") or ".." in model_file.split("/") or "\\" in model_file:
        yield mp + ("model_file",), f"{model_file!r} must be a path inside the repository, like Q8_0/model-00001-of-00003.gguf"
    elif not model_file.lower().endswith(".gguf"):
        yield mp + ("model_file",), f"{model_file!r} is not a .gguf file; llama-server loads GGUF models"
    elif not any(fnmatch.fnmatchcase(model_file, p) for p in patterns if p):
        nocase = any(fnmatch.fnmatchcase(model_file.lower(), p.lower()) for p in patterns if p)
        why = " (it matches only if case is ignored, and Hub patterns are case-sensitive)" if nocase else ""
        yield mp + ("model_file",), (f"{model_file!r} is not matched by model_pattern {m['model_pattern']!r}{why}, "
                                     f"so it would never be downloaded; fix the pattern or the file name")
    if m.get("ubatch_size", 512) > m.get("batch_size", 2048):
        yield mp + ("ubatch_size",), (f"is {m.get('ubatch_size', 512)}, larger than batch_size "
                                      f"{m.get('batch_size', 2048)}; the physical batch cannot exceed the logical one")
    for i, arg in enumerate(m.get("extra_args", [])):
        flag = arg.split("=", 1)[0]
        if flag in MANAGED_FLAGS:
            yield mp + ("extra_args", i), f"{flag!r} {MANAGED_FLAGS[flag]}; remove it"
    if "ami" in c and not AMI_ID.match(c["ami"]):  # schema checks the shape; keep the message in one place
        yield (name, "ami"), f"{c['ami']!r} is not an AMI id"
    types = c["type"] if isinstance(c["type"], list) else [c["type"]]
    if len(types) > 20:
        yield (name, "type"), "lists more than 20 instance types; an Auto Scaling Group takes at most 20 overrides"

