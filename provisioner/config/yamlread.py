"""Read YAML into plain data while remembering where each value stood.

PyYAML's safe_load silently keeps the last of two equal keys (two clusters of one name would merge
without a word) and forgets line numbers. This walks the composed node graph instead: duplicate
keys and non-string keys are errors, and every value's line is kept by its YAML path.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

try:  # the C parser is much faster on large files
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

MAX_NODES = 2_000_000  # aliases can make a small file expand into a huge walk


class YamlProblem(Exception):
    def __init__(self, message: str, line: int | None = None, column: int | None = None):
        self.message = message
        self.line = line
        self.column = column
        super().__init__(message)


Path_ = tuple  # a YAML path: keys (str) and indices (int)


def format_path(path: tuple) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


@dataclass
class Document:
    data: Any
    lines: dict[tuple, int] = field(default_factory=dict)

    def line_of(self, path: tuple) -> int | None:
        """The line of the value at path, or of its nearest ancestor that has one."""
        path = tuple(path)
        while True:
            if path in self.lines:
                return self.lines[path]
            if not path:
                return None
            path = path[:-1]


def read_yaml(text: str) -> Document:
    loader = _Loader(text)
    try:
        try:
            node = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            what = exc.problem or exc.context or "invalid YAML"
            if mark is not None:
                raise YamlProblem(f"YAML syntax error: {what}", mark.line + 1, mark.column + 1) from None
            raise YamlProblem(f"YAML syntax error: {what}") from None
        except yaml.YAMLError as exc:
            raise YamlProblem(f"YAML syntax error: {exc}") from None
        doc = Document(data=None)
        if node is None:
            return doc
        budget = [MAX_NODES]
        doc.data = _walk(loader, node, (), doc, budget)
        return doc
    finally:
        loader.dispose()


def _walk(loader: Any, node: yaml.Node, path: tuple, doc: Document, budget: list[int]) -> Any:
    budget[0] -= 1
    if budget[0] < 0:
        raise YamlProblem(f"the document expands to more than {MAX_NODES} values (aliases?); simplify it")
    doc.lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        own_keys = {id(k) for k, _ in node.value if not (isinstance(k, yaml.ScalarNode) and k.tag == "tag:yaml.org,2002:merge")}
        try:
            loader.flatten_mapping(node)  # resolve `<<: *anchor` merges
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark
            raise YamlProblem(f"YAML merge error: {exc.problem}", mark.line + 1 if mark else None) from None
        out: dict[str, Any] = {}
        merged_keys: set[str] = set()
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise YamlProblem(
                    f"{format_path(path)}: a key must be a plain string, not a "
                    f"{'list' if isinstance(key_node, yaml.SequenceNode) else 'mapping'}",
                    key_node.start_mark.line + 1,
                    key_node.start_mark.column + 1,
                )
            key = loader.construct_object(key_node)
            if not isinstance(key, str):
                raise YamlProblem(
                    f"{format_path(path)}: key {key_node.value!r} is read as a {type(key).__name__}, "
                    f"not a string; quote it",
                    key_node.start_mark.line + 1,
                    key_node.start_mark.column + 1,
                )
            # flatten_mapping puts merged keys first; an explicit key may then override one.
            from_merge = id(key_node) not in own_keys
            if key in out and key not in merged_keys:
                raise YamlProblem(
                    f"{format_path(path + (key,))}: duplicate key {key!r} "
                    f"(the first stands at line {doc.lines.get(path + (key,))}); keep one",
                    key_node.start_mark.line + 1,
                    key_node.start_mark.column + 1,
                )
            merged_keys.discard(key)
            if from_merge:
                merged_keys.add(key)
            doc.lines[path + (key,)] = key_node.start_mark.line + 1
            out[key] = _walk(loader, value_node, path + (key,), doc, budget)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_walk(loader, item, path + (i,), doc, budget) for i, item in enumerate(node.value)]
    try:
        return loader.construct_object(node, deep=True)
    except yaml.YAMLError as exc:
        raise YamlProblem(f"{format_path(path)}: {exc}", node.start_mark.line + 1) from None
