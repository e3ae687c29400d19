"""`kidp-ops history export|report` on a generated history, through the real CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from kidp_ops import cli
from tests.support.history import EU, Generated


class Page(HTMLParser):
    """What a browser would load: scripts (inline or not), links, headings, figures."""

    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []
        self.inline_scripts: list[int] = []
        self.headings: list[str] = []
        self.figures = 0
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        for key in ("src", "href"):
            if found.get(key):
                self.sources.append(str(found[key]))
        if tag == "div" and "plotly-graph-div" in (found.get("class") or ""):
            self.figures += 1
        self._in = tag

    def handle_endtag(self, tag: str) -> None:
        self._in = None

    def handle_data(self, data: str) -> None:
        if self._in == "script" and data.strip():
            self.inline_scripts.append(len(data))
        if self._in == "h2":
            self.headings.append(data)


def run(*args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_report_is_one_self_contained_page(
    generated: Generated, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report.html"
    code, printed, _ = run("history", "report", "--state", str(generated.directory),
                           "--out", str(out), capsys=capsys)  # fmt: skip
    assert code == 0 and "self-contained" in printed
    page = Page()
    page.feed(out.read_text())
    assert page.sources == []  # nothing fetched from anywhere: opens offline
    assert max(page.inline_scripts) > 1_000_000  # plotly.js, inlined once
    assert page.headings == ["Broker health", "Capacity", "Provisioning", "Selection",
                             "What if a broker were removed?"]  # fmt: skip
    assert page.figures == 10  # the what-if's replay against what happened too
    text = out.read_text()
    assert EU in text and "0.75" in text  # the availability table


def test_the_report_renders_in_a_browser_offline(generated: Generated, tmp_path: Path) -> None:
    from kidp_ops.analysis import report
    from kidp_ops.history.frames import load

    assert shutil.which("chromium"), "chromium is missing: ./test installs Debian's chromium"

    out = report.write(load(generated.directory), tmp_path / "report.html")
    dom = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=20000",
         "--dump-dom", out.as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    assert dom.count('class="main-svg"') >= 10  # plotly drew every figure


def test_export_parquet_and_csv(
    generated: Generated, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for fmt in ("parquet", "csv"):
        folder = tmp_path / fmt
        code, printed, _ = run("history", "export", "--history", str(generated.directory),
                               "--format", fmt, "--out", str(folder), capsys=capsys)  # fmt: skip
        assert code == 0 and f"probes.{fmt}: 2163 rows" in printed
    probes = pd.read_parquet(tmp_path / "parquet" / "probes.parquet")
    assert str(probes["time"].dt.tz) == "UTC" and len(probes) == 2163
    brokers = pd.read_csv(tmp_path / "csv" / "brokers.csv")
    assert json.loads(brokers["spec"][0])["cloudProvider"] in ("gcp", "aws", "azure")
    selections = pd.read_parquet(tmp_path / "parquet" / "selections.parquet")
    assert selections["broker"].isna().sum() == 3


def test_window_options(
    generated: Generated, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, printed, _ = run("history", "export", "--state", str(generated.directory), "--format",
                           "csv", "--out", str(tmp_path), "--since", "2026-11-25T11:00:00Z",
                           "--until", "2026-11-25T11:30:00Z", capsys=capsys)  # fmt: skip
    assert code == 0 and "probes.csv: 543 rows" in printed  # 181 probe times x 3 brokers


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--state", "{missing}"], 1, "error: no history in {missing}/ (history.db not found)"),
        (["--since", "5x"], 2, "error: --since '5x': expected an age like 30m, 6h, 7d, or an"),
        (["--until", "6h"], 2, "error: --until '6h': expected an RFC 3339 time"),
        (["--history", "a", "--prometheus", "http://127.0.0.1:1"], 2, "not both"),
        (["--prometheus", "127.0.0.1:9090"], 2, "expected an http(s) URL"),
        (["--prometheus", "http://127.0.0.1:1"], 1, "error: cannot reach Prometheus at"),
    ],
)
def test_bad_input_is_one_line(
    args: list[str], code: int, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = str(tmp_path / "none")
    args = [a.replace("{missing}", missing) for a in args]
    got, _, err = run("history", "report", "--out", str(tmp_path / "r.html"), *args,
                      capsys=capsys)  # fmt: skip
    assert got == code
    assert message.replace("{missing}", missing) in err and len(err.splitlines()) == 1


def test_daemon_and_dev_take_history_off_or_a_directory() -> None:
    parser = cli.build_parser()
    assert parser.parse_args(["daemon", "--history", "off"]).history == "off"
    assert parser.parse_args(["dev", "--history", "/tmp/h"]).history == "/tmp/h"
    assert parser.parse_args(["dev"]).history is None  # the state directory
