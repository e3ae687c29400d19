"""A small Prometheus on 127.0.0.1: it keeps the samples of scrapes it is given (real
exposition text, parsed by prometheus_client) and answers `/api/v1/query_range` for bare
series names as Prometheus does: one point per step, the last sample at or before it
within a 5-minute lookback."""

from __future__ import annotations

import bisect
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from prometheus_client.parser import text_string_to_metric_families

LOOKBACK = 300.0


class Samples:
    def __init__(self) -> None:
        self.series: dict[str, dict[tuple[tuple[str, str], ...], list[tuple[float, float]]]] = {}
        self.queries: list[str] = []

    def scrape(self, text: str, at: float) -> None:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = tuple(sorted(sample.labels.items()))
                points = self.series.setdefault(sample.name, {}).setdefault(labels, [])
                points.append((at, float(sample.value)))

    def query_range(self, query: str, start: float, end: float, step: float) -> list[Any]:
        self.queries.append(query)
        result = []
        for labels, points in self.series.get(query, {}).items():
            times = [t for t, _ in points]
            values, t = [], start
            while t <= end + 1e-9:
                i = bisect.bisect_right(times, t)
                if i and t - times[i - 1] <= LOOKBACK:
                    values.append([t, repr(points[i - 1][1])])
                t += step
            if values:
                result.append({"metric": {"__name__": query, **dict(labels)}, "values": values})
        return result


@contextmanager
def serving(samples: Samples) -> Iterator[str]:
    """The URL of a Prometheus answering from `samples`, until the block ends."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path != "/api/v1/query_range":
                self._answer(404, {"status": "error", "errorType": "not_found", "error": url.path})
                return
            q = {k: v[0] for k, v in parse_qs(url.query).items()}
            query = q.get("query", "")
            if not query.replace("_", "").isalnum():
                self._answer(
                    400,
                    {
                        "status": "error",
                        "errorType": "bad_data",
                        "error": f"this test Prometheus answers bare names: {query}",
                    },
                )
                return
            data = samples.query_range(query, float(q["start"]), float(q["end"]), float(q["step"]))
            self._answer(
                200, {"status": "success", "data": {"resultType": "matrix", "result": data}}
            )

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
