"""The dependency rules of docs/architecture.md, enforced on the source (as import-linter would).

- only `kidp_ops/cluster/` imports `kubernetes` (at any level);
- `kidp_ops` never imports `tui`;
- `kidp_ops` imports `textual`, `plotly`, `ipywidgets`, `pandas` only inside functions
  (lazily), never at module level (start-up time, and the core stays UI-free).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

PACKAGE = REPO / "kidp_ops"
LAZY_ONLY = ("textual", "plotly", "ipywidgets", "pandas", "kubernetes")


def _imports(tree: ast.AST) -> list[tuple[str, bool]]:
    """(module, at_module_level) of every import; `if TYPE_CHECKING:` blocks are skipped."""
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                found.extend((alias.name, top) for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and not child.level:
                found.append((child.module, top))
            inner = top and not isinstance(
                child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda
            )
            visit(child, inner)

    visit(tree, True)
    return found


def _sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_rules_see_imports() -> None:
    """The checker itself works: it finds a nested import and a module-level one."""
    tree = ast.parse("import a\ndef f():\n    import b\nif TYPE_CHECKING:\n    import c\n")
    assert _imports(tree) == [("a", True), ("b", False)]


def test_only_cluster_imports_kubernetes() -> None:
    offenders = [
        f"{path.relative_to(REPO)} imports {module}"
        for path in _sources()
        if "cluster" not in path.relative_to(PACKAGE).parts[:1]
        for module, _ in _imports(ast.parse(path.read_text()))
        if module.split(".")[0] == "kubernetes"
    ]
    assert not offenders


def test_core_never_imports_tui() -> None:
    offenders = [
        f"{path.relative_to(REPO)} imports {module}"
        for path in _sources()
        for module, _ in _imports(ast.parse(path.read_text()))
        if module.split(".")[0] == "tui"
    ]
    assert not offenders


def test_heavy_libraries_only_lazily() -> None:
    offenders = [
        f"{path.relative_to(REPO)} imports {module} at module level"
        for path in _sources()
        if not path.name.startswith("kube")  # the kube adapter is itself imported lazily
        for module, top in _imports(ast.parse(path.read_text()))
        if top and module.split(".")[0] in LAZY_ONLY
    ]
    assert not offenders


def test_cli_start_up_imports_nothing_heavy() -> None:
    """What `kidp-ops --help` loads: the standard library and kidp_ops.cli only."""
    code = (
        "import sys, kidp_ops.cli\n"
        "heavy = {'yaml', 'jsonschema', 'kubernetes', 'aiohttp', 'httpx', 'textual', "
        "'pandas', 'cryptography'}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
