"""Check data against schemas/asg-config.schema.json and say each problem the way an operator reads it."""
from __future__ import annotations

import difflib
import json
import re
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

import jsonschema

SCHEMA_NAME = "asg-config.schema.json"
CLUSTER_NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}$")

# What a value of each key should look like, for pattern and oneOf failures.
SHAPES = {
    "slug": "a lowercase letter followed by up to 19 lowercase letters, digits or hyphens",
    "cloudflare-zone-id": "the zone's 32-character hex id (Cloudflare dashboard, zone overview)",
    "acme_directory": "an https:// URL of an ACME directory",
    "type": "an EC2 instance type like g5.xlarge, or a list of them",
    "hosts": "a lowercase hostname like llm-01.example.com",
    "ami": "an AMI id like ami-0123456789abcdef0",
    "api_name": "a model name of letters, digits, '.', '_', ':' or '-' (e.g. deepseek-r1)",
    "model_repo": "a Hugging Face repository as owner/name (e.g. unsloth/DeepSeek-R1-GGUF)",
    "chat_template_url": "an http(s):// URL",
    "gpu_layers": "a number of layers (e.g. 99), 'auto' or 'all'",
    "flash_attn": "true, false, 'on', 'off' or 'auto'",
    "tensor_split": "comma-separated fractions like '3,1', or a list of numbers",
}

TYPE_NAMES = {
    "object": "a mapping", "array": "a list", "string": "a string", "integer": "a whole number",
    "number": "a number", "boolean": "true or false", "null": "empty",
}


def _describe(value: Any) -> str:
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"the string {value!r}" if len(value) <= 60 else "a long string"
    if isinstance(value, float):
        return f"the number {value!r}"
    if isinstance(value, int):
        return f"the number {value}"
    return f"a {type(value).__name__}"


@lru_cache(maxsize=1)
def load_schema() -> dict:
    here = Path(__file__).resolve()
    candidates = [
        here.parents[2] / "schemas" / SCHEMA_NAME,  # source checkout / editable install
        Path(sys.prefix) / "share" / "provision" / "schemas" / SCHEMA_NAME,  # wheel install
    ]
    for candidate in candidates:
        if candidate.is_file():
            return json.loads(candidate.read_text())
    raise FileNotFoundError(f"{SCHEMA_NAME} not found in {', '.join(map(str, candidates))}")


@lru_cache(maxsize=1)
def _validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(load_schema())


def known_keys(schema_node: dict) -> list[str]:
    root = load_schema()
    if "$ref" in schema_node:
        name = schema_node["$ref"].rsplit("/", 1)[-1]
        schema_node = root["$defs"][name]
    return list(schema_node.get("properties", {}))


def _suggest(key: str, options: list[str]) -> str | None:
    norm = {o.replace("-", "_").lower(): o for o in options}
    k = key.replace("-", "_").lower()
    if k in norm:
        return norm[k]
    close = difflib.get_close_matches(k, list(norm), n=1, cutoff=0.6)
    return norm[close[0]] if close else None


def _unknown_keys(err: jsonschema.ValidationError) -> Iterator[tuple[tuple, str]]:
    path = tuple(err.absolute_path)
    props = list(err.schema.get("properties", {}))
    patterns = [re.compile(p) for p in err.schema.get("patternProperties", {})]
    for key in err.instance:
        if key in props or any(p.search(key) for p in patterns):
            continue
        if not path:  # top level: cluster names and `stack`
            hint = _suggest(key, props)
            if hint:
                yield (key,), f"unknown key {key!r}; did you mean {hint!r}?"
            else:
                yield (key,), (f"{key!r} is not a valid cluster name: use a lowercase letter followed by up to "
                               f"30 lowercase letters, digits or hyphens (the reserved key 'stack' holds "
                               f"stack-wide settings)")
            continue
        hint = _suggest(key, props)
        tail = f"did you mean {hint!r}?" if hint else f"known keys: {', '.join(props)}"
        yield path + (key,), f"unknown key {key!r}; {tail}"


def _message(err: jsonschema.ValidationError) -> Iterator[tuple[tuple, str]]:
    path = tuple(err.absolute_path)
    key = next((p for p in reversed(path) if isinstance(p, str)), "")
    v = err.validator
    if v == "additionalProperties":
        yield from _unknown_keys(err)
    elif v == "required":
        missing = [k for k in err.validator_value if k not in err.instance]
        props = err.schema.get("properties", {})
        for k in missing:
            desc = props.get(k, {}).get("description", "")
            yield path, f"missing required key {k!r}" + (f" ({desc.rstrip('.')})" if desc else "")
    elif v == "type":
        want = err.validator_value
        want = [want] if isinstance(want, str) else want
        yield path, f"is {_describe(err.instance)}; expected {' or '.join(TYPE_NAMES.get(w, w) for w in want)}"
    elif v in ("minimum", "maximum"):
        bound = "at least" if v == "minimum" else "at most"
        yield path, f"is {err.instance}; it must be {bound} {err.validator_value}"
    elif v == "minItems":
        yield path, "must not be empty" if err.validator_value == 1 else f"needs at least {err.validator_value} items"
    elif v == "uniqueItems":
        seen, dups = set(), []
        for item in err.instance:
            marker = json.dumps(item, sort_keys=True)
            if marker in seen and item not in dups:
                dups.append(item)
            seen.add(marker)
        yield path, f"lists {', '.join(map(repr, dups))} more than once; keep one"
    elif v == "minLength":
        yield path, "must not be empty" if err.validator_value == 1 else (
            f"is too short: at least {err.validator_value} characters")
    elif v == "maxLength":
        yield path, f"is too long: at most {err.validator_value} characters"
    elif v == "enum":
        yield path, f"is {_describe(err.instance)}; use one of {', '.join(map(json.dumps, err.validator_value))}"
    elif v == "pattern":
        shape = SHAPES.get(key) or SHAPES.get(str(path[-2]) if len(path) > 1 else "") or f"a value matching {err.validator_value}"
        yield path, f"{_describe(err.instance)} is not valid; expected {shape}"
    elif v == "oneOf":
        # Prefer the one branch whose type fits: its error is the useful one.
        # Recurse only into errors about nested values (a bad list item); about the value itself, say
        # every shape it may take.
        fitting = [e for e in err.context if e.validator != "type" and len(e.absolute_path) > len(path)]
        if fitting and len({tuple(e.relative_schema_path)[:1] for e in fitting}) == 1:
            for sub in fitting:
                yield from _message(sub)
            return
        shape = SHAPES.get(key, "a valid value")
        yield path, f"is {_describe(err.instance)}; expected {shape}"
    else:
        yield path, err.message


def _misspelled_stack(data: Any) -> list[str]:
    """Top-level keys that look like a misspelt `stack:` (a valid cluster name, but no cluster inside)."""
    if not isinstance(data, dict):
        return []
    out = []
    for key, value in data.items():
        if key == "stack" or not isinstance(value, dict) or "region" in value or "model_config" in value:
            continue
        if difflib.SequenceMatcher(None, key, "stack").ratio() >= 0.75:
            out.append(key)
    return out


def schema_problems(data: Any) -> list[tuple[tuple, str]]:
    out: list[tuple[tuple, str]] = []
    seen: set[tuple[tuple, str]] = set()
    stackish = _misspelled_stack(data)
    for key in stackish:
        out.append(((key,), f"unknown key {key!r}; did you mean 'stack'? (a cluster needs region, type, hosts "
                            f"and model_config)"))
    errors = sorted(_validator().iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path])
    for err in errors:
        if err.absolute_path and err.absolute_path[0] in stackish:
            continue
        for item in _message(err):
            if item not in seen:
                seen.add(item)
                out.append(item)
    return out
