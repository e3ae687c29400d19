"""A controller process for test_shutdown: queue + workers + leader election on an embedded
store. It reconciles one key (printing `started` / `finished` / `cancelled`): the reconcile
runs until the stop is requested and WORK_SECONDS more, so the signal always lands in the
middle of it. It stops gracefully on SIGTERM.
Run: python sigterm_child.py STATE_DIR WORK_SECONDS GRACE_SECONDS"""

from __future__ import annotations

import asyncio
import logging
import sys

from kidp_ops.cluster.embedded import EmbeddedCluster
from kidp_ops.controller.leader import LeaderElector
from kidp_ops.controller.queue import Result, WorkerPool, WorkQueue
from kidp_ops.controller.shutdown import run_until_stopped, stop_on_signals, term_of

KEY = "kidp-system/db1"


def say(*words: str) -> None:
    print(*words, flush=True)


async def main(state_dir: str, work_seconds: float, grace: float) -> None:
    cluster = await EmbeddedCluster.open(state_dir, install_crds=False)
    try:
        stop = asyncio.Event()

        async def reconcile(key: str) -> Result:
            say("started", key)
            try:
                await stop.wait()
                await asyncio.sleep(work_seconds)  # the work left when the signal came
            except asyncio.CancelledError:
                say("cancelled", key)
                raise
            say("finished", key)
            return Result()

        queue: WorkQueue[str] = WorkQueue()
        queue.add(KEY)
        pool = WorkerPool(queue, reconcile, workers=2)
        elector = LeaderElector(
            cluster,
            name="kidp-ops",
            namespace="kidp-system",
            identity="child",
            lease_duration=3,
            renew_deadline=2,
            retry_period=0.2,
        )
        with stop_on_signals(stop):
            graceful = await run_until_stopped(
                term_of(pool), stop=stop, elector=elector, grace=grace
            )
        say("graceful" if graceful else "forced")
    finally:
        await cluster.close()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    try:
        asyncio.run(main(sys.argv[1], float(sys.argv[2]), float(sys.argv[3])))
    except asyncio.CancelledError:
        say("stopped at once")
        sys.exit(130)
