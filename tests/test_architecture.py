"""The walls of the design, checked on the source: what may import what."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: resolve against the file's package
                pkg = list(path.relative_to(ROOT).with_suffix("").parts[:-1])
                base = pkg[: len(pkg) - (node.level - 1)] if node.level > 1 else pkg
                mod = ".".join(base + ([node.module] if node.module else []))
                names.add(mod)
            elif node.module:
                names.add(node.module)
    return names


def py_files(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def top(name: str) -> str:
    return name.split(".")[0]


def test_only_cli_imports_click():
    offenders = [str(p.relative_to(ROOT)) for p in py_files("provisioner")
                 if p.name != "cli.py" and "click" in {top(n) for n in imports_of(p)}]
    assert not offenders


def test_planner_imports_no_cloud_sdk():
    planners = [p for p in py_files("provisioner") if "planner" in p.name or p.parent.name == "planner"]
    assert planners, "the pure planner module is missing"
    for p in planners:
        bad = {top(n) for n in imports_of(p)} & {"boto3", "botocore", "cloudflare", "click"}
        assert not bad, f"{p.relative_to(ROOT)} imports {bad}"


def test_config_imports_no_cloud_sdk():
    for p in py_files("provisioner/config"):
        bad = {top(n) for n in imports_of(p)} & {"boto3", "cloudflare", "click"}
        assert not bad, f"{p.relative_to(ROOT)} imports {bad}"


def test_instance_side_imports_nothing_from_provisioner():
    for folder in ("userdata", "container"):
        for p in py_files(folder):
            assert "provisioner" not in {top(n) for n in imports_of(p)}, f"{p.relative_to(ROOT)} imports provisioner"


def test_no_system_exit_in_library():
    for p in py_files("provisioner"):
        if p.name in ("cli.py", "__main__.py") or "emulators" in p.parts:
            continue
        for node in ast.walk(ast.parse(p.read_text())):
            called = node.func if isinstance(node, ast.Call) else None
            exits = (isinstance(called, ast.Attribute) and called.attr in ("exit", "_exit")
                     and isinstance(called.value, ast.Name) and called.value.id in ("sys", "os")) or \
                    (isinstance(called, ast.Name) and called.id in ("exit", "quit", "SystemExit"))
            assert not exits, f"{p.relative_to(ROOT)}:{node.lineno} exits the process"


def test_no_giant_module():
    for folder in ("provisioner", "userdata", "container"):
        for p in py_files(folder):
            n = len(p.read_text().splitlines())
            assert n < 1200, f"{p.relative_to(ROOT)} has {n} lines; split it"
