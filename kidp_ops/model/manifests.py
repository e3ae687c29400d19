"""Reading manifest files: directories, multi-document YAML, JSON, stdin, with limits.

Every failure becomes a `Problem` naming the file (and line and column for YAML syntax);
nothing here raises for bad input.

A directory is walked recursively for `*.yaml`, `*.yml` and `*.json`, skipping kustomize's
build files (`kustomization.yaml`, `kustomization.yml`, `Kustomization`): they describe how
to assemble objects and are not objects themselves, so `kidp-ops validate crds/` and
`apply -f crds/` see only the CRDs. A build file named explicitly is read like any file.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kidp_ops.model import yamlguard
from kidp_ops.model.validation import Problem, manifest_problems, object_label

MAX_FILE_BYTES = 5 * 1024 * 1024
SUFFIXES = (".yaml", ".yml", ".json")
# kustomize build files: skipped when walking a directory (see the module docstring).
BUILD_FILES = frozenset({"kustomization.yaml", "kustomization.yml", "Kustomization"})
# The order kubectl users expect: definitions before the things that use them.
_APPLY_ORDER = {"CustomResourceDefinition": 0, "Namespace": 1, "Secret": 2, "Broker": 3}


@dataclass(frozen=True, slots=True)
class Document:
    source: str
    index: int  # 1-based position in its file
    manifest: dict[str, Any] = field(repr=False)

    @property
    def label(self) -> str:
        return object_label(self.manifest)


@dataclass
class Loaded:
    documents: list[Document] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def in_apply_order(self) -> list[Document]:
        return sorted(
            self.documents, key=lambda d: _APPLY_ORDER.get(str(d.manifest.get("kind")), 9)
        )


def _files(path: Path) -> Iterator[Path]:
    if path.is_dir():
        yield from sorted(
            p
            for p in path.rglob("*")
            if p.suffix in SUFFIXES and p.name not in BUILD_FILES and p.is_file()
        )
    else:
        yield path


def _read_text(path: Path, shown: str, problems: list[Problem]) -> str | None:
    try:
        if shown == "-":
            raw = sys.stdin.buffer.read(MAX_FILE_BYTES + 1)
        else:
            with path.open("rb") as handle:
                raw = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        problems.append(Problem(shown, "", "", exc.strerror or str(exc)))
        return None
    if len(raw) > MAX_FILE_BYTES:
        size = path.stat().st_size if shown != "-" else len(raw)
        problems.append(
            Problem(
                shown,
                "",
                "",
                f"file is {size / 1024 / 1024:.1f} MiB; manifests over "
                f"{MAX_FILE_BYTES // 1024 // 1024} MiB are refused (split it into smaller files)",
            )
        )
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        problems.append(
            Problem(
                shown,
                "",
                "",
                f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
                "manifests must be UTF-8 YAML or JSON",
            )
        )
        return None


def _parse(text: str, shown: str, problems: list[Problem]) -> list[Any]:
    refused = yamlguard.refusal(text)  # alias bombs, recursive aliases, deep nesting
    if refused is not None:
        problems.append(Problem(shown, "", "", refused))
        return []
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return list(yaml.load_all(text, Loader=loader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problems.append(Problem(shown, "", "", f"invalid YAML: {where}{exc.problem or exc}"))
    except (yaml.YAMLError, RecursionError) as exc:
        problems.append(Problem(shown, "", "", f"invalid YAML: {str(exc)[:200]}"))
    return []


def _expand(raw: Any, shown: str, index: int, problems: list[Problem]) -> Iterator[Document]:
    if not isinstance(raw, dict):
        what = type(raw).__name__.replace("str", "a string").replace("list", "a list")
        problems.append(
            Problem(
                shown,
                f"document {index}",
                "",
                f"is {what}, expected a Kubernetes object (a mapping with apiVersion, kind, "
                "metadata)",
            )
        )
        return
    if raw.get("kind") == "List" and isinstance(raw.get("items"), list):
        for item in raw["items"]:
            yield from _expand(item, shown, index, problems)
        return
    yield Document(shown, index, raw)


def load(paths: Iterable[str]) -> Loaded:
    """Read every manifest under `paths` ("-" is stdin)."""
    loaded = Loaded()
    for given in paths:
        root = Path(given)
        if given != "-" and not root.exists():
            loaded.problems.append(Problem(given, "", "", "no such file or directory"))
            continue
        files = [root] if given == "-" else list(_files(root))
        if not files:
            loaded.problems.append(
                Problem(given, "", "", f"no manifest files ({', '.join(SUFFIXES)}) found")
            )
        for path in files:
            shown = "-" if given == "-" else str(path)
            text = _read_text(path, shown, loaded.problems)
            if text is None:
                continue
            for index, raw in enumerate(_parse(text, shown, loaded.problems), start=1):
                if raw is not None:
                    loaded.documents.extend(_expand(raw, shown, index, loaded.problems))
    return loaded


def validate(loaded: Loaded) -> list[Problem]:
    """File problems first, then every field problem of every document."""
    problems = list(loaded.problems)
    for doc in loaded.documents:
        for found in manifest_problems(doc.manifest):
            problems.append(Problem(doc.source, doc.label, found.field, found.message))
    return problems
