"""LeRobot calibration files and units: golden values computed once with LeRobot 0.4.4's formulas (always
run), and equality with LeRobot's own `MotorsBus._normalize/_unnormalize` on random counts (marker `lerobot`:
`PYTHONPATH=/tmp/lrsite pytest -m lerobot ...`, docs/training.md says how that folder is made)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from edgeact.firmware_bridge.calibration import (
    JointMap,
    MotorCalibration,
    NormMode,
    load_calibration,
    normalize,
    unit_limits,
    unnormalize,
)
from edgeact.firmware_bridge.errors import CalibrationError

D, M100, P100 = NormMode.DEGREES, NormMode.RANGE_M100_100, NormMode.RANGE_0_100
# id -> (calibration, mode); ids 3 and 7 have drive_mode 1
CAL = {
    1: (MotorCalibration(1, 0, -1023, 712, 3388), D),
    2: (MotorCalibration(2, 0, 55, 820, 3250), M100),
    3: (MotorCalibration(3, 1, 0, 900, 3100), M100),
    6: (MotorCalibration(6, 0, 1200, 2030, 3470), P100),
    7: (MotorCalibration(7, 1, 0, 2030, 3470), P100),
}
# (id, counts, units, counts back) from LeRobot 0.4.4's FeetechMotorsBus (apply_drive_mode=True)
GOLDEN = [
    (1, 0, -180.21978021978023, 0),
    (1, 2047, -0.26373626373626374, 2047),
    (1, 2050, 0.0, 2050),
    (1, 4095, 179.78021978021977, 4095),
    (2, 0, -100.0, 820),
    (2, 900, -93.4156378600823, 900),
    (2, 2047, 0.9876543209876587, 2047),
    (2, 4095, 100.0, 3250),
    (3, 900, 100.0, 900),
    (3, 2050, -4.545454545454547, 2050),
    (3, 4095, -100.0, 3100),
    (6, 900, 0.0, 2030),
    (6, 3333, 90.48611111111111, 3333),
    (7, 2047, 98.81944444444444, 2047),
    (7, 3333, 9.513888888888886, 3333),
]
# (id, units, counts) from LeRobot's _unnormalize: clamping and truncation toward zero
GOLDEN_BACK = [(1, 12.5, 2192), (1, -200.0, -225), (2, 33.3, 2439), (2, 150.0, 3250), (3, 33.3, 1633),
               (6, 42.0, 2634), (7, 42.0, 2865), (7, -5.0, 3470)]  # fmt: skip


@pytest.mark.parametrize(("motor_id", "counts", "units", "back"), GOLDEN)
def test_golden_values_feetech(motor_id, counts, units, back):
    cal, mode = CAL[motor_id]
    assert normalize(counts, cal, mode, 4096, True) == units
    assert unnormalize(units, cal, mode, 4096, True) == back


@pytest.mark.parametrize(("motor_id", "units", "counts"), GOLDEN_BACK)
def test_golden_unnormalize(motor_id, units, counts):
    cal, mode = CAL[motor_id]
    assert unnormalize(units, cal, mode, 4096, True) == counts


def test_dynamixel_does_not_apply_drive_mode_on_the_host():
    cal, mode = CAL[3]
    assert normalize(900, cal, mode, 4096, False) == -100.0  # the servo's Drive Mode mirrors instead
    assert unit_limits(cal, mode, 4096, False) == (-100.0, 100.0)


def test_joint_map_equals_the_scalar_mapping():
    ids = sorted(CAL)
    jm = JointMap([CAL[i][0] for i in ids], [CAL[i][1] for i in ids], [4096] * len(ids), True)
    rng = np.random.default_rng(0)
    for _ in range(200):
        counts = rng.integers(0, 4096, len(ids))
        units = jm.to_units(counts)
        ref = [normalize(int(c), CAL[i][0], CAL[i][1], 4096, True) for i, c in zip(ids, counts, strict=True)]
        assert units.tolist() == ref
        back = [unnormalize(u, CAL[i][0], CAL[i][1], 4096, True) for i, u in zip(ids, ref, strict=True)]
        assert jm.to_counts(units).tolist() == back
    lo, hi = jm.limits()
    assert lo.tolist()[1:] == [-100.0, -100.0, 0.0, 0.0] and hi.tolist()[1:] == [100.0, 100.0, 100.0, 100.0]


def test_calibration_file_errors_name_file_and_motor(tmp_path):
    good = {"gripper": {"id": 6, "drive_mode": 0, "homing_offset": 1, "range_min": 10, "range_max": 20}}
    path = tmp_path / "arm.json"
    path.write_text(json.dumps(good))
    assert load_calibration(path) == {"gripper": MotorCalibration(6, 0, 1, 10, 20)}
    path.write_text(json.dumps({"gripper": {**good["gripper"], "range_max": 10}}))
    with pytest.raises(CalibrationError, match=r"arm.json: motor 'gripper'.*equal \(10\)"):
        load_calibration(path)
    path.write_text(json.dumps({"gripper": {"id": 6}}))
    with pytest.raises(CalibrationError, match=r"motor 'gripper' lacks \['drive_mode'"):
        load_calibration(path)
    with pytest.raises(CalibrationError, match="does not exist"):
        load_calibration(tmp_path / "missing.json")


@pytest.mark.lerobot
@pytest.mark.parametrize("bus_kind", ["feetech", "dynamixel"])
def test_equal_to_lerobot_motors_bus_on_random_counts(bus_kind):
    from lerobot.motors import Motor
    from lerobot.motors import MotorCalibration as LeCal
    from lerobot.motors import MotorNormMode as LeMode
    from lerobot.motors.motors_bus import SerialMotorsBus

    if bus_kind == "feetech":
        from lerobot.motors.feetech import FeetechMotorsBus as Bus

        model = "sts3215"
    else:
        from lerobot.motors.dynamixel import DynamixelMotorsBus as Bus

        model = "xl330-m288"
    le_mode = {D: LeMode.DEGREES, M100: LeMode.RANGE_M100_100, P100: LeMode.RANGE_0_100}
    rng = np.random.default_rng(15)
    for trial in range(20):  # random calibrations, every mode with both drive modes
        cals, motors, le_cals = {}, {}, {}
        for k, mode in enumerate([D, D, M100, M100, P100, P100]):
            lo = int(rng.integers(0, 3000))
            cal = MotorCalibration(
                k + 1, k % 2, int(rng.integers(-2047, 2048)), lo, lo + int(rng.integers(1, 4096 - lo))
            )
            cals[k + 1] = (cal, mode)
            motors[f"m{k}"] = Motor(k + 1, model, le_mode[mode])
            le_cals[f"m{k}"] = LeCal(cal.id, cal.drive_mode, cal.homing_offset, cal.range_min, cal.range_max)
        bus = Bus.__new__(Bus)
        SerialMotorsBus.__init__(bus, "/dev/null", motors, le_cals)  # no serial port, no SDK port handler
        apply = bool(bus.apply_drive_mode)
        assert apply is (bus_kind == "feetech")
        ids = sorted(cals)
        jm = JointMap([cals[i][0] for i in ids], [cals[i][1] for i in ids], [4096] * 6, apply)
        for counts in rng.integers(-100, 4196, (50, 6)):
            theirs = bus._normalize(dict(zip(ids, counts.tolist(), strict=True)))
            ours = [normalize(int(c), *cals[i], 4096, apply) for i, c in zip(ids, counts, strict=True)]
            assert ours == [theirs[i] for i in ids], (trial, counts)
            assert jm.to_units(counts).tolist() == ours
            back = bus._unnormalize(dict(theirs))
            assert jm.to_counts(np.array(ours)).tolist() == [back[i] for i in ids]
            # raw -> units -> raw: within range the count comes back (truncation may lose one count)
            for i, c in zip(ids, counts.tolist(), strict=True):
                cal = cals[i][0]
                if cal.range_min <= c <= cal.range_max:
                    assert back[i] in (c, c - 1, c + 1), (i, c, back[i])
        units = rng.uniform(-250, 250, (50, 6))
        for row in units:
            theirs = bus._unnormalize(dict(zip(ids, row.tolist(), strict=True)))
            assert jm.to_counts(row).tolist() == [theirs[i] for i in ids]
