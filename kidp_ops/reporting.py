"""`kidp-ops history export|report`: the recorded history as files, or as one HTML page.

The history comes from `--history DIR` (default: the `--state` directory) or, with
`--prometheus URL`, from Prometheus. Exit 0 done, 1 no history or unreadable, 2 bad usage.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from datetime import datetime
    from pathlib import Path

    from kidp_ops.cluster.target import Target

OK, FAILED, USAGE = 0, 1, 2
NEEDS_ANALYSIS = "kidp-ops history needs pandas and plotly: pip install 'kidp-ops[analysis]'"


class UsageError(Exception):
    pass


def parse_when(text: str | None, *, option: str, now: datetime, ages: bool) -> datetime | None:
    """`--since`/`--until` (see `times.parse_moment`); a UsageError names the option."""
    from kidp_ops.times import parse_moment  # lazy: cli imports this module for its parser

    if text is None:
        return None
    try:
        return parse_moment(text, now=now, ages=ages)
    except ValueError as exc:
        raise UsageError(f"{option} {exc}") from None


def add_parser(sub: Any, target: argparse.ArgumentParser) -> None:
    """`kidp-ops history export|report` (called by cli.py)."""
    history = sub.add_parser(
        "history",
        help="the recorded history: export it, or make an HTML report",
        description="Read the history a daemon or `kidp-ops dev` recorded (DIR/history.db, "
        "default the --state directory) or, with --prometheus, the daemon's own metrics "
        "from Prometheus.",
    )
    actions = history.add_subparsers(dest="action", metavar="ACTION", required=True)
    source = argparse.ArgumentParser(add_help=False, parents=[target])
    group = source.add_argument_group("where the history is (default: --state)")
    group.add_argument("--history", metavar="DIR", help="the history store's directory")
    group.add_argument("--prometheus", metavar="URL", help="read from Prometheus instead")
    source.add_argument("--since", metavar="AGE|RFC3339", help="from (e.g. 6h, 7d; default all)")
    source.add_argument("--until", metavar="RFC3339", help="to (default: the last record)")
    export = actions.add_parser(
        "export", parents=[source], help="write the history's frames as Parquet or CSV files"
    )
    export.add_argument("--format", choices=("parquet", "csv"), default="parquet")
    export.add_argument("--out", metavar="DIR", required=True, help="folder for the files")
    report = actions.add_parser(
        "report", parents=[source], help="one self-contained HTML page of the main figures"
    )
    report.add_argument("--out", metavar="FILE.html", required=True)


def run(args: argparse.Namespace, target: Target, *, out: TextIO, err: TextIO) -> int:
    from datetime import UTC, datetime  # lazy: cli imports this module for its parser
    from pathlib import Path  # lazy: as above

    from kidp_ops.history import HistoryError  # lazy: as above

    now = datetime.now(UTC)
    try:
        since = parse_when(args.since, option="--since", now=now, ages=True)
        until = parse_when(args.until, option="--until", now=now, ages=False)
        frames = _load(args, target, since=since, until=until)
        if args.action == "export":
            return export(frames, Path(args.out), fmt=args.format, out=out)
        return report(frames, Path(args.out), out=out)
    except UsageError as exc:
        print(f"error: {exc}", file=err)
        return USAGE
    except HistoryError as exc:
        print(f"error: {exc}", file=err)
        return FAILED
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in ("pandas", "plotly", "numpy", "pyarrow"):
            print(f"error: {NEEDS_ANALYSIS}", file=err)
            return FAILED
        raise


def _load(
    args: argparse.Namespace, target: Target, *, since: datetime | None, until: datetime | None
) -> Any:
    from kidp_ops.analysis import load  # lazy: pandas is optional and slow to import

    if args.prometheus and args.history:
        raise UsageError("give --history DIR or --prometheus URL, not both")
    if args.prometheus:
        if not args.prometheus.startswith(("http://", "https://")):
            raise UsageError(f"--prometheus {args.prometheus!r}: expected an http(s) URL")
        return load(args.prometheus, since=since, until=until)
    if target.is_kube and not args.history:
        raise UsageError("on a cluster, give --history DIR or --prometheus URL")
    return load(args.history or target.state, since=since, until=until)


def export(frames: Any, folder: Path, *, fmt: str, out: TextIO) -> int:
    """Each frame as `folder/NAME.parquet` (or `.csv`), the time index as a column."""
    import json  # lazy: cli imports this module for its parser

    folder.mkdir(parents=True, exist_ok=True)
    names = (
        "probes",
        "transitions",
        "selections",
        "rejections",
        "lifecycle",
        "provisions",
        "brokers",
    )
    for name in names:
        frame = getattr(frames, name).reset_index()
        if "spec" in frame.columns:  # a dict per row: JSON text in files
            frame["spec"] = frame["spec"].map(lambda s: json.dumps(s, sort_keys=True))
        path = folder / f"{name}.{fmt}"
        if fmt == "parquet":
            frame.to_parquet(path, index=False)
        else:
            frame.to_csv(path, index=False, date_format="%Y-%m-%dT%H:%M:%S.%fZ")
        print(f"{path}: {len(frame)} rows", file=out)
    return OK


def report(frames: Any, path: Path, *, out: TextIO) -> int:
    from kidp_ops.analysis import report as html  # lazy: plotly is optional and slow to import

    written = html.write(frames, path)
    size = written.stat().st_size / 1024
    print(f"wrote {written} ({size:,.0f} KiB, self-contained: open it in a browser)", file=out)
    return OK
