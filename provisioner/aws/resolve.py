"""AMI and model-size resolution, done only when nothing recorded answers it.

The launch template records what it was built from (`provision:lt:*` tags). While the config's AMI
source and model are unchanged, the recorded image and sizes are reused: a new AMI release or a Hub
outage never changes a running fleet by itself. `--refresh-ami` re-resolves the AMI.
"""
from __future__ import annotations

import fnmatch
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from ..config import Cluster, Config
from ..desired import FALLBACK_MODEL_GB as FALLBACK, ImageFacts, ami_source, model_ref
from ..errors import CloudError
from .clients import Clients
from .retry import call

HUB_TIMEOUT = float(os.environ.get("PROVISION_HUB_TIMEOUT", "10"))


def resolve_images(clients: Clients, config: Config, region: str, clusters: list[Cluster],
                   recorded: dict[str, dict], refresh: bool = False) -> dict[str, ImageFacts]:
    out: dict[str, ImageFacts] = {}
    todo: dict[str, str] = {}  # cluster -> source
    for c in clusters:
        src = ami_source(config, c)
        rec = recorded.get(c.name) or {}
        if (not refresh and rec.get("ami_source") == src and rec.get("image_id") and rec.get("root_device")
                and isinstance(rec.get("snapshot_gb"), int)):
            out[c.name] = ImageFacts(rec["image_id"], rec["root_device"], rec["snapshot_gb"], src)
        else:
            todo[c.name] = src
    if not todo:
        return out
    ids: dict[str, str] = {s: s for s in todo.values() if not s.startswith("/")}
    paths = sorted({s for s in todo.values() if s.startswith("/")})
    if paths:
        ssm = clients.client("ssm", region)
        for i in range(0, len(paths), 10):
            got = call(ssm, "get_parameters", Names=paths[i:i + 10])
            for p in got.get("Parameters", []):
                ids[p["Name"]] = p["Value"]
            if got.get("InvalidParameters"):
                bad = got["InvalidParameters"][0]
                raise CloudError(f"SSM parameter {bad} does not exist in {region}: no AMI to launch",
                                 hint="set 'ami:' to an AMI id of that region on the cluster (or a parameter "
                                      "that exists under stack.ami)")
    ec2 = clients.client("ec2", region)
    want = sorted(set(ids.values()))
    images = {i["ImageId"]: i for i in call(ec2, "describe_images", ImageIds=want).get("Images", [])}
    for cname, src in todo.items():
        image_id = ids[src]
        img = images.get(image_id)
        if img is None:
            raise CloudError(f"AMI {image_id} (from {src}) was not found in {region} (cluster {cname})",
                             hint="AMI ids are regional: use one of the cluster's region")
        root = img.get("RootDeviceName") or "/dev/xvda"
        snap = 8
        for bdm in img.get("BlockDeviceMappings", []):
            if bdm.get("DeviceName") == root and bdm.get("Ebs", {}).get("VolumeSize"):
                snap = int(bdm["Ebs"]["VolumeSize"])
        out[cname] = ImageFacts(image_id, root, snap, src)
    return out


def model_sizes(clusters: list[Cluster], recorded: dict[str, dict],
                warn: Callable[[str], None] = lambda m: None) -> dict[str, float | None]:
    """GB of each cluster's model files: recorded, else asked of the Hub (None when it cannot tell)."""
    out: dict[str, float | None] = {}
    ask: list[Cluster] = []
    for c in clusters:
        rec = recorded.get(c.name) or {}
        if c.root_volume_gb:
            out[c.name] = rec.get("model_gb") if rec.get("model_ref") == model_ref(c) else None
        elif rec.get("model_ref") == model_ref(c) and "model_gb" in rec:
            out[c.name] = rec["model_gb"]
        else:
            ask.append(c)
    if ask:
        with ThreadPoolExecutor(max_workers=min(8, len(ask))) as pool:
            for c, gb in zip(ask, pool.map(lambda c: _hub_size(c, warn), ask)):
                out[c.name] = gb
    return out


def _hub_size(c: Cluster, warn: Callable[[str], None]) -> float | None:
    """Sum of the sizes of the files matching model_pattern, from the Hub's model API
    (HF_ENDPOINT and HF_HUB_OFFLINE are huggingface_hub's own variables, read at call time)."""
    import json
    import urllib.parse
    import urllib.request

    m = c.model
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        warn(f"cluster {c.name}: HF_HUB_OFFLINE is set; sizing the disk for a {FALLBACK} GB model "
             "(set root_volume_gb to choose)")
        return None
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    url = f"{endpoint}/api/models/{urllib.parse.quote(m.model_repo, safe='/')}?blobs=true"
    headers = {"User-Agent": "provision"}
    token = m.hf_token.reveal() if m.hf_token else os.environ.get("HF_TOKEN")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=HUB_TIMEOUT) as r:
            info = json.loads(r.read())
        patterns = [p.strip() for p in m.model_pattern.split(",") if p.strip()] or [m.model_file]
        total = 0
        for s in info.get("siblings") or []:
            name = s.get("rfilename", "")
            if any(fnmatch.fnmatch(name, p) or fnmatch.fnmatch(os.path.basename(name), p) for p in patterns):
                total += int(s.get("size") or (s.get("lfs") or {}).get("size") or 0)
        if total:
            return total / 1e9
        warn(f"cluster {c.name}: no file of {m.model_repo} matches {m.model_pattern!r} on the Hub; "
             f"sizing the disk for a {FALLBACK} GB model")
    except Exception as e:  # noqa: BLE001 - the Hub being down must not stop a plan
        warn(f"cluster {c.name}: cannot read the model size of {m.model_repo} from the Hub "
             f"({type(e).__name__}); sizing the disk for a {FALLBACK} GB model (set root_volume_gb to choose)")
    return None
