"""LeRobot calibration files and LeRobot's joint units, for the SO-100/SO-101 (Feetech) and Koch (Dynamixel).

`lerobot-calibrate` writes one JSON file per arm (by default under
`~/.cache/huggingface/lerobot/calibration/robots/<robot type>/<robot id>.json`):

    {"shoulder_pan": {"id": 1, "drive_mode": 0, "homing_offset": -1023, "range_min": 712, "range_max": 3388},
     ...}

`homing_offset`, `range_min` and `range_max` are written into the servos (Homing Offset, Min/Max Position
Limit), so the counts the servos report are already homed; the host maps those counts to the units LeRobot
records (`<motor>.pos` in datasets and policies) by each motor's normalization mode:

- DEGREES: (counts - mid) * 360 / (resolution - 1), mid = (range_min + range_max) / 2, not clamped;
- RANGE_M100_100: counts clamped to range_min..range_max, mapped onto -100..100;
- RANGE_0_100 (grippers): the same onto 0..100.

`drive_mode` 1 mirrors the range modes, but only where LeRobot applies it on the host (its Feetech bus; its
Dynamixel bus leaves drive mode to the servo, `apply_drive_mode=False`). The way back truncates toward zero
(Python `int()`), as LeRobot's `_unnormalize` does. These formulas are LeRobot's `MotorsBus._normalize` /
`_unnormalize` (lerobot 0.4.4, motors/motors_bus.py), re-derived here and held equal to them by
tests/firmware_bridge/feetech/test_calibration.py (marker `lerobot`), and to golden values without lerobot.
`JointMap` is the vectorized form the arms use each tick: the same float64 operations in the same order,
so it gives the same numbers as the scalar functions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
from edgeact.firmware_bridge.errors import CalibrationError

FIELDS = ("id", "drive_mode", "homing_offset", "range_min", "range_max")


class NormMode(str, Enum):
    """LeRobot's MotorNormMode values."""

    DEGREES = "degrees"
    RANGE_M100_100 = "range_m100_100"
    RANGE_0_100 = "range_0_100"


@dataclass(frozen=True)
class MotorCalibration:
    """One motor's entry of a LeRobot calibration file."""

    id: int
    drive_mode: int
    homing_offset: int
    range_min: int
    range_max: int

    def __post_init__(self) -> None:
        if self.range_min == self.range_max:
            raise CalibrationError(
                f"MotorCalibration(id {self.id}).range_min/range_max are equal ({self.range_min}): "
                "LeRobot refuses such a motor too; recalibrate it"
            )
        if self.drive_mode not in (0, 1):
            raise CalibrationError(
                f"MotorCalibration(id {self.id}).drive_mode must be 0 or 1, got {self.drive_mode}"
            )


def parse_calibration(data: Any, where: str) -> dict[str, MotorCalibration]:
    """A calibration mapping (motor name -> the five fields) as LeRobot writes it; errors name the motor."""
    if not isinstance(data, dict) or not data:
        raise CalibrationError(
            f"{where}: expected a mapping of motor names to calibrations, got {type(data).__name__}"
        )
    out = {}
    for name, entry in data.items():
        if not isinstance(entry, dict):
            raise CalibrationError(f"{where}: motor {name!r} is {type(entry).__name__}, not a mapping")
        missing = [f for f in FIELDS if f not in entry]
        if missing:
            raise CalibrationError(f"{where}: motor {name!r} lacks {missing}")
        bad = [f for f in FIELDS if not isinstance(entry[f], int) or isinstance(entry[f], bool)]
        if bad:
            raise CalibrationError(f"{where}: motor {name!r} fields {bad} must be integers, got {entry}")
        try:
            out[str(name)] = MotorCalibration(**{f: entry[f] for f in FIELDS})
        except CalibrationError as err:
            raise CalibrationError(f"{where}: motor {name!r}: {err}") from err
    return out


def load_calibration(path: str | Path) -> dict[str, MotorCalibration]:
    """Read a `lerobot-calibrate` JSON file."""
    path = Path(path).expanduser()
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as err:
        raise CalibrationError(f"calibration file {path} does not exist") from err
    except (OSError, ValueError) as err:
        raise CalibrationError(f"cannot read calibration file {path}: {err}") from err
    return parse_calibration(data, str(path))


def default_calibration_path(robot_type: str, robot_id: str) -> Path:
    """Where `lerobot-calibrate --robot.type=T --robot.id=I` writes: $HF_LEROBOT_CALIBRATION (default
    $HF_LEROBOT_HOME/calibration, $HF_LEROBOT_HOME default ~/.cache/huggingface/lerobot)/robots/T/I.json."""
    import os

    home = Path(os.environ.get("HF_LEROBOT_HOME", "~/.cache/huggingface/lerobot")).expanduser()
    root = Path(os.environ.get("HF_LEROBOT_CALIBRATION", home / "calibration")).expanduser()
    return root / "robots" / robot_type / f"{robot_id}.json"


# --- LeRobot's mapping, one value at a time (the reference) ----------------------------------------------


def normalize(
    raw: int, cal: MotorCalibration, mode: NormMode, resolution: int, apply_drive_mode: bool
) -> float:
    """Servo counts -> LeRobot units (LeRobot `_normalize`)."""
    lo, hi = cal.range_min, cal.range_max
    flip = apply_drive_mode and cal.drive_mode
    bounded = min(hi, max(lo, raw))
    if mode is NormMode.RANGE_M100_100:
        norm = (((bounded - lo) / (hi - lo)) * 200) - 100
        return -norm if flip else norm
    if mode is NormMode.RANGE_0_100:
        norm = ((bounded - lo) / (hi - lo)) * 100
        return 100 - norm if flip else norm
    mid = (lo + hi) / 2
    return (raw - mid) * 360 / (resolution - 1)


def unnormalize(
    value: float, cal: MotorCalibration, mode: NormMode, resolution: int, apply_drive_mode: bool
) -> int:
    """LeRobot units -> servo counts (LeRobot `_unnormalize`: clamped in the range modes, truncated)."""
    lo, hi = cal.range_min, cal.range_max
    flip = apply_drive_mode and cal.drive_mode
    if mode is NormMode.RANGE_M100_100:
        value = -value if flip else value
        bounded = min(100.0, max(-100.0, value))
        return int(((bounded + 100) / 200) * (hi - lo) + lo)
    if mode is NormMode.RANGE_0_100:
        value = 100 - value if flip else value
        bounded = min(100.0, max(0.0, value))
        return int((bounded / 100) * (hi - lo) + lo)
    mid = (lo + hi) / 2
    return int((value * (resolution - 1) / 360) + mid)


def unit_limits(
    cal: MotorCalibration, mode: NormMode, resolution: int, apply_drive_mode: bool
) -> tuple[float, float]:
    """(lower, upper) in LeRobot units: where range_min and range_max land (sorted)."""
    ends = sorted(
        normalize(c, cal, mode, resolution, apply_drive_mode) for c in (cal.range_min, cal.range_max)
    )
    return ends[0], ends[1]


# --- the same mapping over all joints at once (the arms' hot path) ---------------------------------------


class JointMap:
    """LeRobot's mapping for an ordered list of joints, on float64 arrays (J,)."""

    def __init__(
        self,
        calibrations: list[MotorCalibration],
        modes: list[NormMode],
        resolutions: list[int],
        apply_drive_mode: bool,
    ) -> None:
        self.lo = np.array([c.range_min for c in calibrations], dtype=np.float64)
        self.hi = np.array([c.range_max for c in calibrations], dtype=np.float64)
        self.flip = np.array([apply_drive_mode and bool(c.drive_mode) for c in calibrations])
        self.deg = np.array([m is NormMode.DEGREES for m in modes])
        self.m100 = np.array([m is NormMode.RANGE_M100_100 for m in modes])
        self.mid = (self.lo + self.hi) / 2
        self.res = np.array(resolutions, dtype=np.float64) - 1
        self._cal = list(calibrations)
        self._modes = list(modes)
        self._resolutions = list(resolutions)
        self._apply = apply_drive_mode

    def to_units(self, counts: np.ndarray) -> np.ndarray:
        raw = np.asarray(counts, dtype=np.float64)
        span = self.hi - self.lo
        frac = (np.minimum(self.hi, np.maximum(self.lo, raw)) - self.lo) / span
        m100 = frac * 200 - 100
        m100 = np.where(self.flip, -m100, m100)
        p100 = frac * 100
        p100 = np.where(self.flip, 100 - p100, p100)
        deg = (raw - self.mid) * 360 / self.res
        return np.where(self.deg, deg, np.where(self.m100, m100, p100))

    def to_counts(self, units: np.ndarray) -> np.ndarray:
        val = np.asarray(units, dtype=np.float64)
        span = self.hi - self.lo
        v100 = np.where(self.flip, -val, val)
        m100 = ((np.minimum(100.0, np.maximum(-100.0, v100)) + 100) / 200) * span + self.lo
        v0 = np.where(self.flip, 100 - val, val)
        p100 = (np.minimum(100.0, np.maximum(0.0, v0)) / 100) * span + self.lo
        deg = (val * self.res / 360) + self.mid
        return np.trunc(np.where(self.deg, deg, np.where(self.m100, m100, p100))).astype(np.int64)

    def limits(self) -> tuple[np.ndarray, np.ndarray]:
        ends = [
            unit_limits(c, m, r, self._apply)
            for c, m, r in zip(self._cal, self._modes, self._resolutions, strict=True)
        ]
        return np.array([e[0] for e in ends]), np.array([e[1] for e in ends])
