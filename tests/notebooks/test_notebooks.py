"""The notebooks: committed without outputs, and executed for real (nbclient, a python3
kernel) on a small generated history, with their widgets driven inside the kernel."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import REPO
from tests.support.history import Generated

NOTEBOOKS = REPO / "notebooks"
NAMES = ("01-broker-health", "02-capacity", "03-selection-history")

# Run in the kernel after the notebook: each changes a control and checks the
# FigureWidget that follows it (EU, US: tests.support.history's brokers).
DRIVE = {
    "01-broker-health": """
EU, US = "kidp-system/eu", "kidp-system/us"
bars = explorer.figures["availability"]
assert list(bars.data[0].x)[0] == EU and round(bars.data[0].y[0], 2) == 0.75
explorer.brokers.value = (EU,)
assert list(bars.data[0].x) == [EU], bars.data[0].x
explorer.window.index = (0, 99)  # the first hour: eu was Ready all along
assert bars.data[0].y[0] == 1.0, bars.data[0].y
timeline = explorer.figures["timeline"]
assert {t.name for t in timeline.data} == {"Ready"}, [t.name for t in timeline.data]
""",
    "02-capacity": """
lines = explorer.figures["providers"]
assert {t.name for t in lines.data if t.showlegend is not False} == {"aws", "azure", "gcp"}
explorer.providers.value = ("gcp",)
assert [t.name for t in lines.data if t.showlegend is not False] == ["gcp"]
assert max(lines.data[0].y) == 12
headroom = explorer.figures["headroom"]
assert "least-squares line" in headroom.layout.annotations[0].text
""",
    "03-selection-history": """
EU, US = "kidp-system/eu", "kidp-system/us"
share = explorer.figures["share"]
explorer.brokers.value = (US,)
assert list(share.data[0].x) == [US, "(none)"], share.data[0].x
what.removed.value = (EU,)
bars = dict(zip(what.figure.data[2].x, what.figure.data[2].y))
assert bars == {"(none)": 12, US: 12}, bars
assert "9 of 24 decisions change, 9 of them would find no broker" in what.summary.value
what.removed.value = ()
what.broker.value = EU
what.capacity.value = 1
assert "8 of 24 decisions change" in what.summary.value, what.summary.value
""",
}


def test_notebooks_are_committed_without_outputs() -> None:
    for name in NAMES:
        book = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
        nbformat.validate(book)
        first = book.cells[0]
        assert first.cell_type == "code" and "parameters" in first.metadata.get("tags", [])
        for cell in book.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, (name, cell.id)
        assert "widgets" not in book.metadata, name  # no saved widget state either


def with_parameters(name: str, state_dir: Path) -> Any:
    """The notebook with papermill's injected-parameters cell after its parameters cell."""
    book = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    injected = nbformat.v4.new_code_cell(f"state_dir = {json.dumps(str(state_dir))}")
    injected.metadata["tags"] = ["injected-parameters"]
    book.cells.insert(1, injected)
    return book


def errors(book: Any) -> list[str]:
    return [
        f"{output.ename}: {output.evalue}"
        for cell in book.cells
        for output in cell.get("outputs", [])
        if output.output_type == "error"
    ]


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_a_notebook_runs_and_its_widgets_update_the_figures(
    name: str, generated: Generated
) -> None:
    book = with_parameters(name, generated.directory)
    client = NotebookClient(book, timeout=180, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOKS)}})  # fmt: skip
    with client.setup_kernel():
        for index, cell in enumerate(book.cells):
            client.execute_cell(cell, index)
        assert not errors(book)
        printed = "".join(o.get("text", "") for o in book.cells[3].outputs)
        assert f"store {generated.directory}" in printed and "3 brokers" in printed
        book.cells.append(nbformat.v4.new_code_cell(DRIVE[name]))
        client.execute_cell(book.cells[-1], len(book.cells) - 1)
    widgets = [o for c in book.cells for o in c.get("outputs", [])
               if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]  # fmt: skip
    assert widgets, "the notebook shows its controls"
