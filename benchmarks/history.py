"""The history store (issue 12): reading, size, and what writing it costs the health sweep.

(a) 1,000,000 probes into a tidy DataFrame (`history.frames.probes_frame`: UTC index,
    categorical brokers, nullable ints) <= 2 s, against a bare `pandas.read_sql` of the
    same probes stored one row per probe (the obvious schema), measured in the same run.
    The probes are written as the writer leaves them: 1,000-probe blocks (a busy
    daemon's flush), then compacted blocks (what `maintain` makes of small ones).
(b) The store's size per million probes: raw blocks, and after downsampling to
    per-minute aggregates (1,000 brokers probed every 10 s).
(c) History on vs off in the health sweep of `benchmarks/health.py` (c): the real
    BrokerReconciler sweeping 1,000 healthy brokers of an embedded store, with the
    daemon's history (`MeteredHistory` over a `HistoryWriter`, its thread writing) or
    without (`NullSink`); sweeps alternate, the median of each is compared. Target: on
    costs <= 10%.

Run:
    .venv/bin/python benchmarks/history.py            # (a), (b), (c)
    .venv/bin/python benchmarks/history.py --only a   # one part
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from kidp_ops.history import ProbeRecord  # noqa: E402
from kidp_ops.history.sqlite import FILE_NAME, HistoryDB  # noqa: E402

START = datetime(2026, 11, 25, tzinfo=UTC)
BROKERS = 1_000
ROWS = 1_000_000


def probes(count: int, *, brokers: int = BROKERS) -> list[ProbeRecord]:
    """`count` probes of `brokers` brokers every 10 s (+-1 s jitter, as the scheduler's),
    latencies log-normal around 7 ms, 1 in 17 failing: as incompressible as real ones."""
    rng = random.Random(12)
    return [
        ProbeRecord(
            time=START + timedelta(seconds=10 * (i // brokers) + rng.uniform(-1, 1)),
            broker=f"kidp-system/broker-{i % brokers:04d}",
            ok=i % 17 != 0,
            phase="Ready",
            latency_ms=rng.lognormvariate(2, 0.5),
            active_deployments=rng.randrange(10),
            reason="" if i % 17 else "timeout after 5s",
            max_concurrent_deployments=10,
            version="1.0.0",
        )
        for i in range(count)
    ]


def write_store(folder: Path, records: list[ProbeRecord], *, block: int) -> Path:
    db = HistoryDB(folder / FILE_NAME)
    for start in range(0, len(records), block):
        db.write(records[start : start + block])
    db.close()
    return folder / FILE_NAME


def write_rows(path: Path, records: list[ProbeRecord]) -> None:
    """The same probes, one row per probe: what pandas.read_sql reads as the baseline."""
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE probes(t INTEGER, broker TEXT, phase TEXT, ok INTEGER, n INTEGER, "
        "failures INTEGER, latency_ms REAL, active INTEGER, max INTEGER, version TEXT, "
        "reason TEXT)"
    )
    conn.executemany(
        "INSERT INTO probes VALUES (?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?)",
        [
            (int(r.time.timestamp() * 1000), r.broker, r.phase, int(r.ok), int(not r.ok),
             r.latency_ms, r.active_deployments, r.max_concurrent_deployments, r.version,
             r.reason)
            for r in records
        ],
    )  # fmt: skip
    conn.commit()
    conn.close()


def best_of(runs: int, work: object) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        work()  # type: ignore[operator]
        times.append(time.perf_counter() - started)
    return min(times)


def read_speed() -> bool:
    import pandas as pd

    from kidp_ops.history.frames import probes_frame
    from kidp_ops.history.store import StoreReader

    print(f"\n(a) {ROWS:,} probes of {BROKERS:,} brokers into a DataFrame")
    records = probes(ROWS)
    ok = True
    with tempfile.TemporaryDirectory(prefix="kidp-history-a-") as folder:
        rows_db = Path(folder) / "rows.db"
        write_rows(rows_db, records)
        conn = sqlite3.connect(rows_db)
        baseline = best_of(3, lambda: pd.read_sql("SELECT * FROM probes", conn))
        conn.close()
        print(f"  baseline: pandas.read_sql, one row per probe        {baseline:6.2f} s")
        for label, block in (("1,000-probe blocks", 1_000), ("compacted (65,536)", 65_536)):
            store = write_store(Path(folder) / str(block), records, block=block)
            reader = StoreReader(store)
            frame = probes_frame(reader)
            assert len(frame) == ROWS and str(frame.index.tz) == "UTC"
            took = best_of(3, lambda reader=reader: probes_frame(reader))
            reader.close()
            passed = took <= 2.0
            ok &= passed
            print(f"  probes_frame, {label:20s}                  {took:6.2f} s   "
                  f"{baseline / took:5.1f}x faster than the baseline   "
                  f"{'PASS' if passed else 'FAIL'} (<= 2 s)")  # fmt: skip
    return ok


def size() -> bool:
    print(f"\n(b) the store's size per million probes ({BROKERS:,} brokers every 10 s)")
    records = probes(ROWS)
    with tempfile.TemporaryDirectory(prefix="kidp-history-b-") as folder:
        store = write_store(Path(folder), records, block=1_000)
        raw = store.stat().st_size
        db = HistoryDB(store)
        db.maintain(now=records[-1].time + timedelta(days=2), retention=timedelta(days=7),
                    raw_for=timedelta(days=1), compact_after=timedelta(minutes=10))  # fmt: skip
        db.conn.execute("VACUUM")
        db.close()
        aggregated = store.stat().st_size
        rows = Path(folder) / "rows.db"
        write_rows(rows, records)
        print(f"  raw blocks:              {raw / 1e6:6.1f} MB per million probes "
              f"({raw / ROWS:.1f} bytes each)")  # fmt: skip
        print(f"  per-minute aggregates:   {aggregated / 1e6:6.1f} MB for the same million "
              f"(1 row per broker and minute instead of 6)")  # fmt: skip
        print(f"  (one row per probe, for comparison: {rows.stat().st_size / 1e6:.1f} MB)")
    return True


async def sweeps(count: int, rounds: int) -> tuple[list[float], list[float], int]:
    """Alternating sweeps of the same brokers: (seconds off, seconds on, records written)."""
    from benchmarks.health import HealthApp, steady_broker
    from kidp_ops.cluster.base import BROKERS as KIND
    from kidp_ops.cluster.embedded import EmbeddedCluster
    from kidp_ops.controller.informer import Informer
    from kidp_ops.health.probing import Prober
    from kidp_ops.history import NullSink
    from kidp_ops.history.series import MeteredHistory
    from kidp_ops.history.writer import HistoryWriter
    from kidp_ops.reconcilers.broker import BrokerReconciler

    frozen = datetime.now(UTC)  # no 30 s heartbeat refresh between the sweeps
    with tempfile.TemporaryDirectory(prefix="kidp-history-c-") as folder:
        cluster = await EmbeddedCluster.open(Path(folder) / "state")
        writer = HistoryWriter(Path(folder) / "state")
        try:
            async with HealthApp() as app:
                names = [f"b{i:04d}" for i in range(count)]
                for name in names:
                    await cluster.create(steady_broker(name, app.url))
                informer = Informer(cluster, KIND)
                async with Prober(cluster=cluster) as prober, informer.running():
                    await informer.wait_synced(30)
                    keys = [f"bench/{name}" for name in names]
                    made = {
                        label: BrokerReconciler(cluster=cluster, informer=informer,
                                                prober=prober, clock=lambda: frozen,
                                                history=sink)
                        for label, sink in (("off", NullSink()), ("on", MeteredHistory(writer)))
                    }  # fmt: skip
                    for reconciler in made.values():  # warm up: Pending -> Ready, once each
                        await asyncio.gather(*(reconciler.reconcile(k) for k in keys))
                    seconds: dict[str, list[float]] = {"off": [], "on": []}
                    for _ in range(rounds):
                        for label in ("off", "on"):
                            started = time.perf_counter()
                            await asyncio.gather(*(made[label].reconcile(k) for k in keys))
                            seconds[label].append(time.perf_counter() - started)
        finally:
            writer.close()
            await cluster.close()
    return seconds["off"], seconds["on"], writer.written["probe"]


def sweep_cost(count: int = 1_000, rounds: int = 7) -> bool:
    print(f"\n(c) health sweep of {count:,} brokers (benchmarks/health.py (c)), history off vs on")
    off, on, written = asyncio.run(sweeps(count, rounds))
    ratio = statistics.median(on) / statistics.median(off)
    print(f"  off: median {statistics.median(off) * 1000:6.0f} ms   "
          f"({', '.join(f'{s * 1000:.0f}' for s in off)})")  # fmt: skip
    print(f"  on:  median {statistics.median(on) * 1000:6.0f} ms   "
          f"({', '.join(f'{s * 1000:.0f}' for s in on)}); {written:,} probes written")  # fmt: skip
    passed = ratio <= 1.10
    print(f"  on / off: {ratio:.3f}   {'PASS' if passed else 'FAIL'} (<= 1.10)")
    return passed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=("a", "b", "c"))
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores)")
    parts = {"a": read_speed, "b": size, "c": sweep_cost}
    results = [part() for name, part in parts.items() if args.only in (None, name)]
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
