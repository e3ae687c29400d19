"""The dependency rules of docs/architecture.md.

Most are import-linter contracts (`.importlinter`, run by `./test`): the layers of
kidp_ops, the reference broker free of the manager, pure decision modules, and
`kubernetes` only in `kidp_ops.cluster`. The tests here prove those contracts bite, and
check what an import graph cannot see:

- `kidp_ops` never imports `tui` (the dashboard plugs in from outside);
- `textual`, `plotly`, `ipywidgets`, `pandas` and `kubernetes` are imported lazily, never
  at module level on the way to the CLI (start-up time, and a UI-free core);
- an import inside a function says why (`# lazy: ...`): none hides a cycle;
- decision modules never read a clock (time is passed in);
- every package has an `__init__.py`, so no module escapes the contracts.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGE = REPO / "kidp_ops"
LAZY_ONLY = ("textual", "plotly", "ipywidgets", "pandas", "kubernetes")
DECISIONS = (
    "selection.py",
    "placement.py",
    "explaining.py",
    "health/states.py",
    "reconcilers/provisioning.py",
    "reconcilers/outcomes.py",
    "reconcilers/patches.py",
    "conditions.py",
    "health/untrusted.py",
    "trust.py",
)
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 40
SIZE_REASON = "# size:"
CLOCK_CALLS = ("now", "utcnow", "today", "time", "monotonic", "perf_counter")


def _imports(tree: ast.AST) -> list[tuple[str, bool, int]]:
    """(module, at_module_level, line) of every import; `if TYPE_CHECKING:` is skipped."""
    found: list[tuple[str, bool, int]] = []

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                found.extend((alias.name, top, child.lineno) for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and not child.level:
                found.append((child.module, top, child.lineno))
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
    assert _imports(tree) == [("a", True, 1), ("b", False, 3)]


def test_every_package_has_an_init() -> None:
    """A folder without `__init__.py` is a namespace package that import-linter skips."""
    missing = [
        str(folder.relative_to(REPO))
        for root in (PACKAGE, REPO / "tests")
        for folder in [root, *root.rglob("*")]
        if folder.is_dir() and folder.name != "__pycache__" and any(folder.glob("*.py"))
        if not (folder / "__init__.py").exists()
    ]
    assert not missing


def test_core_never_imports_tui() -> None:
    offenders = [
        f"{path.relative_to(REPO)} imports {module}"
        for path in _sources()
        for module, _, _ in _imports(ast.parse(path.read_text()))
        if module.split(".")[0] == "tui"
    ]
    assert not offenders


def test_heavy_libraries_only_lazily() -> None:
    offenders = [
        f"{path.relative_to(REPO)} imports {module} at module level"
        for path in _sources()
        if not path.name.startswith("kube")  # the kube adapter is itself imported lazily
        for module, top, _ in _imports(ast.parse(path.read_text()))
        if top and module.split(".")[0] in LAZY_ONLY
    ]
    assert not offenders


def test_imports_inside_functions_say_why() -> None:
    """No function-level import hides a cycle: each one is marked `# lazy: <reason>` on its
    line or the line above (start-up time, an optional heavy library, a child process)."""
    offenders = []
    for path in _sources():
        lines = path.read_text().splitlines()
        for module, top, line in _imports(ast.parse("\n".join(lines))):
            here, above = lines[line - 1], lines[line - 2] if line > 1 else ""
            if not top and "# lazy" not in here and "# lazy" not in above:
                offenders.append(f"{path.relative_to(REPO)}:{line} imports {module}")
    assert not offenders


def _sized_sources() -> list[Path]:
    """The code the size rule covers: the package, and the dashboard once it exists."""
    return [*_sources(), *sorted((REPO / "tui").rglob("*.py"))]


def test_long_modules_and_functions_say_why() -> None:
    """A module over 400 lines carries `# size: <reason>` in its first 60 lines; a function
    over 40 lines carries it on the line above its `def` (or its first decorator)."""
    offenders = []
    for path in _sized_sources():
        lines = path.read_text().splitlines()
        where = path.relative_to(REPO)
        if len(lines) > MAX_MODULE_LINES and not any(
            line.startswith(SIZE_REASON) for line in lines[:60]
        ):
            offenders.append(f"{where}: {len(lines)} lines")
        for node in ast.walk(ast.parse("\n".join(lines))):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            above = lines[first - 2].strip() if first > 1 else ""
            if length > MAX_FUNCTION_LINES and not above.startswith(SIZE_REASON):
                offenders.append(f"{where}:{node.lineno} {node.name}() {length} lines")
    assert not offenders, "\n".join(offenders)


def test_decisions_never_read_a_clock() -> None:
    """`now` is a parameter of every decision; a call like `datetime.now()` is a bug."""
    offenders = []
    for name in DECISIONS:
        path = PACKAGE / name
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in CLOCK_CALLS
            ):
                offenders.append(f"{name}:{node.lineno} calls .{node.func.attr}()")
    assert not offenders


def test_cli_start_up_imports_nothing_heavy() -> None:
    """What `kidp-ops --help` loads: the standard library and light kidp_ops modules only."""
    code = (
        "import sys, kidp_ops.cli\n"
        "heavy = {'yaml', 'jsonschema', 'kubernetes', 'aiohttp', 'httpx', 'textual', "
        "'pandas', 'cryptography', 'plotly', 'fastapi', 'pydantic'}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_validating_never_loads_the_iri_grammar() -> None:
    """jsonschema would import rfc3987_syntax (2.5 s to build its grammar) when the dev
    install has it; the schema module keeps it out, and leaves it importable."""
    code = (
        "import sys, importlib.util, kidp_ops.model.schema\n"
        "print('rfc3987_syntax' in sys.modules, "
        "importlib.util.find_spec('rfc3987_syntax') is not None)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    loaded, installed = result.stdout.split()
    assert loaded == "False"
    assert installed == "True"  # the dev install has it: the check above means something


LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root)},
    )


@pytest.fixture
def copy_of_package(tmp_path: Path) -> Path:
    shutil.copytree(PACKAGE, tmp_path / "kidp_ops", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "tui", tmp_path / "tui", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / ".importlinter", tmp_path / ".importlinter")
    return tmp_path


def test_contracts_hold_on_the_tree() -> None:
    result = _lint_imports(REPO)
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize(
    ("module", "added", "contract"),
    [
        ("model/convert.py", "import kidp_ops.daemon", "kidp_ops is layered"),
        ("selection.py", "import kidp_ops.registry", "kidp_ops is layered"),
        ("simbroker/app.py", "import kidp_ops.reconcilers.database", "never imports the manager"),
        ("reconcilers/provisioning.py", "import kidp_ops.clock", "Decisions are pure"),
        ("health/states.py", "import aiohttp", "Decisions are pure"),
        ("registry.py", "import kubernetes", "kubernetes client"),
        ("devenv.py", "import tui.app", "never imports the dashboard"),
        ("output.py", "import textual", "never imports the dashboard"),
        ("history/store.py", "import kidp_ops.reconcilers.broker", "history store never"),
        ("analysis/whatif.py", "import kidp_ops.daemon", "Analysis reads history"),
    ],
)
def test_a_new_import_that_breaks_a_rule_fails(
    copy_of_package: Path, module: str, added: str, contract: str
) -> None:
    path = copy_of_package / "kidp_ops" / module
    path.write_text(path.read_text() + f"\n{added}  # noqa\n")
    result = _lint_imports(copy_of_package)
    assert result.returncode != 0
    broken = [line for line in result.stdout.splitlines() if line.endswith(" BROKEN")]
    assert any(contract in line for line in broken), result.stdout
