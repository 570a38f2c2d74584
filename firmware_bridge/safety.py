"""Safe-stop bookkeeping shared by the robot buses: why a stop happened, whether it was a fault, exit codes.

Signals are handled by `rt-run`: its handler only sets a flag (no I/O inside a signal handler), the loop ends
and the robot's `safe_stop("sigint"|"sigterm")` does the bus work.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

import numpy as np

log = logging.getLogger(__name__)


class StopReason(str, Enum):
    """Why the motors were stopped. `is_fault` says whether the process must exit non-zero."""

    END = "end"  # the run finished (duration, episode end): not a fault
    SIGINT = "sigint"
    SIGTERM = "sigterm"
    COMM_LOSS = "comm_loss"  # timeouts / CRC errors after the bounded retries
    HARDWARE_ALERT = "hardware_alert"  # Dynamixel ERR bit 7 / Hardware Error Status
    BUS_WATCHDOG = "bus_watchdog"  # the servos' bus watchdog expired, or the host stalled longer than it
    HEARTBEAT_LOSS = "heartbeat_loss"  # CANopen heartbeat consumer timeout
    EMCY = "emcy"  # CANopen emergency frame or CiA 402 Fault state
    NAN = "nan"  # a command held NaN or Inf
    CAMERA_STALL = "camera_stall"
    WATCHDOG = "watchdog"  # the runtime loop's own watchdog (consecutive tick overruns, stale observation)
    LIMIT = "limit"  # a command outside a joint limit or the per-tick step limit (docs/firmware_bridge.md)
    ERROR = "error"  # any other error on the command path

    @property
    def is_fault(self) -> bool:
        return self not in (StopReason.END, StopReason.SIGINT, StopReason.SIGTERM)


EXIT_CODES = {StopReason.END: 0, StopReason.SIGINT: 130, StopReason.SIGTERM: 143}
FAULT_EXIT_CODE = 3


@dataclass(frozen=True)
class StopRecord:
    reason: StopReason
    detail: str
    tick: int
    time: float

    @property
    def is_fault(self) -> bool:
        return self.reason.is_fault

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.reason, FAULT_EXIT_CODE)


def split_reason(reason: str | StopReason) -> tuple[StopReason, str]:
    """(kind, detail) of a reason as the runtime passes it ("watchdog: 10 consecutive overruns (limit 10)"):
    the detail is the text after a leading `<kind>:`, else the whole text (empty for a bare kind)."""
    why = parse_reason(reason)
    text = reason.value if isinstance(reason, StopReason) else str(reason).strip()
    head, sep, tail = text.partition(":")
    if sep and head.strip().lower() == why.value:
        return why, tail.strip()
    return why, "" if text.lower() == why.value else text


def parse_reason(reason: str | StopReason) -> StopReason:
    """Map a free-text reason (as the runtime passes to `Robot.safe_stop`) onto a StopReason."""
    if isinstance(reason, StopReason):
        return reason
    text = str(reason).strip().lower()
    for member in StopReason:
        if text == member.value or text.startswith(member.value + ":") or text.startswith(member.value + " "):
            return member
    for key, member in (
        ("interrupt", StopReason.SIGINT),
        ("sigint", StopReason.SIGINT),
        ("sigterm", StopReason.SIGTERM),
        ("nan", StopReason.NAN),
        ("camera", StopReason.CAMERA_STALL),
        ("watchdog", StopReason.WATCHDOG),
        ("overrun", StopReason.WATCHDOG),
        ("stale observation", StopReason.WATCHDOG),
        ("duration", StopReason.END),
        ("done", StopReason.END),
        ("finished", StopReason.END),
    ):
        if key in text:
            return member
    return StopReason.ERROR


# The runtime's post-processor clamps in float32 (PostParams, docs/runtime.md): a command it let through may
# sit one float32 rounding outside a float64 limit. Anything further out is a violation.
LIMIT_TOLERANCE = 1e-5  # relative to max(1, |limit|), in robot units


def limit_violation(
    names: Sequence[str],
    targets: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    last: np.ndarray | None,
    step: np.ndarray,
    ticks: int = 1,
) -> str | None:
    """The first joint whose target lies outside [lower, upper], or further from the last command than `ticks`
    per-tick steps (the loop may skip commands the host did not collect in time), named with its value and
    limit; None when the command is within limits. The bridge checks, the runtime clamps
    (docs/firmware_bridge.md, "One clamp")."""
    ticks = max(1, int(ticks))
    for k, name in enumerate(names):
        v = float(targets[k])
        lo, hi = float(lower[k]), float(upper[k])
        if v < lo - LIMIT_TOLERANCE * max(1.0, abs(lo)):
            return f"joint {name}: target {v:.6g} below its lower limit {lo:.6g}"
        if v > hi + LIMIT_TOLERANCE * max(1.0, abs(hi)):
            return f"joint {name}: target {v:.6g} above its upper limit {hi:.6g}"
        if last is not None and np.isfinite(step[k]):
            delta, allowed = abs(v - float(last[k])), float(step[k]) * ticks
            if delta > allowed + LIMIT_TOLERANCE * max(1.0, abs(v)):
                return (
                    f"joint {name}: target {v:.6g} is {delta:.6g} from the last command "
                    f"{float(last[k]):.6g}, more than max_step {float(step[k]):.6g} x {ticks} tick(s) "
                    f"= {allowed:.6g}"
                )
    return None
