"""The dashboard's copy of the world: the objects of each view by key, fed by the sources'
watch events. Events are staged as they come (any number per frame) and applied together
when the app draws; while paused they are held (the newest per key) and applied on resume.
No Textual here: the app calls `stage` from the handlers and `apply` when it draws.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Manifest = Mapping[str, Any]
KINDS = ("brokers", "databases", "events")


class Model:
    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Manifest]] = {kind: {} for kind in KINDS}
        self._staged: dict[tuple[str, str], tuple[str, Manifest]] = {}
        self.paused = False
        self.revision = 0  # moves at every apply that changed something

    @property
    def held(self) -> int:
        return len(self._staged)

    def stage(self, kind: str, change: str, key: str, obj: Manifest) -> None:
        self._staged[(kind, key)] = (change, obj)

    def apply(self) -> dict[str, dict[str, Manifest | None]]:
        """Apply the staged changes (unless paused): {kind: {key: obj, or None if deleted}}."""
        if self.paused or not self._staged:
            return {}
        applied: dict[str, dict[str, Manifest | None]] = {}
        staged, self._staged = self._staged, {}
        self.revision += 1
        for (kind, key), (change, obj) in staged.items():
            if change == "DELETED":
                self.objects[kind].pop(key, None)
                applied.setdefault(kind, {})[key] = None
            else:
                self.objects[kind][key] = obj
                applied.setdefault(kind, {})[key] = obj
        return applied
