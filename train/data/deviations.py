"""Counting the ways a real dataset departs from the LeRobot spec, and reporting each kind once.

Readers call `note()` for every accepted deviation (float64 columns, a missing `index`, channel-first shapes,
timestamps that drift from frame_index / fps, ...) and `report()` once at the end: one warning per kind with
the
number of occurrences and one example, instead of a warning per row.
"""

from __future__ import annotations

import logging
from collections import Counter

log = logging.getLogger("edgeact.train.data")


class Deviations:
    def __init__(self, source: str) -> None:
        self.source = source
        self.counts: Counter[str] = Counter()
        self.examples: dict[str, str] = {}

    def note(self, kind: str, count: int = 1, example: str = "") -> None:
        if count <= 0:
            return
        self.counts[kind] += count
        self.examples.setdefault(kind, example)

    def report(self) -> None:
        for kind, count in sorted(self.counts.items()):
            example = self.examples[kind]
            log.warning(
                "%s: accepted deviation from the LeRobot format: %s (%d occurrence%s%s)",
                self.source,
                kind,
                count,
                "" if count == 1 else "s",
                f"; e.g. {example}" if example else "",
            )

    def __bool__(self) -> bool:
        return bool(self.counts)
