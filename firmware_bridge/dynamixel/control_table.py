"""Control table of the X-series servos on the WidowX 250 (XM430-W350, XL430-W250), from the ROBOTIS
e-manual ("Control Table of EEPROM Area", "Control Table of RAM Area" of each model).

Both models share these addresses. Each entry is (address, size in bytes). EEPROM entries (below 64) can
only be written with torque off; Indirect Address entries are also locked while torque is on. Where the
models differ in meaning (address 126), `MODELS` says what the address holds and in which unit."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple


class Register(NamedTuple):
    address: int
    size: int
    signed: bool = False


# EEPROM area
MODEL_NUMBER = Register(0, 2)
ID = Register(7, 1)
BAUD_RATE = Register(8, 1)
RETURN_DELAY_TIME = Register(9, 1)
DRIVE_MODE = Register(10, 1)
OPERATING_MODE = Register(11, 1)
SECONDARY_ID = Register(12, 1)  # shadow servos follow their primary through this (e-manual "Secondary ID")
# e-manual "Min/Max Position Limit(48, 52)": the Goal Position window of Position Control Mode, 0..4095
MAX_POSITION_LIMIT = Register(48, 4)
MIN_POSITION_LIMIT = Register(52, 4)
SHUTDOWN = Register(63, 1)
# RAM area
TORQUE_ENABLE = Register(64, 1)
LED = Register(65, 1)
STATUS_RETURN_LEVEL = Register(68, 1)
HARDWARE_ERROR_STATUS = Register(70, 1)
BUS_WATCHDOG = Register(98, 1, signed=True)  # units of 20 ms; -1 after expiry (e-manual "Bus Watchdog")
GOAL_CURRENT = Register(102, 2, signed=True)
PROFILE_ACCELERATION = Register(108, 4)
PROFILE_VELOCITY = Register(112, 4)
GOAL_POSITION = Register(116, 4, signed=True)
MOVING = Register(122, 1)
PRESENT_CURRENT = Register(126, 2, signed=True)  # XM430-W350; Present Load on the XL430-W250 (MODELS)
PRESENT_LOAD = PRESENT_CURRENT
PRESENT_VELOCITY = Register(128, 4, signed=True)
PRESENT_POSITION = Register(132, 4, signed=True)
PRESENT_TEMPERATURE = Register(146, 1)
INDIRECT_ADDRESS_1 = Register(168, 2)  # Indirect Address 1..28 at 168..222 (2 bytes each)
INDIRECT_DATA_1 = Register(224, 1)  # Indirect Data 1..28 at 224..251
INDIRECT_SLOTS = 28
TABLE_SIZE = 256

# Operating Mode values (address 11)
MODE_CURRENT = 0
MODE_VELOCITY = 1
MODE_POSITION = 3
MODE_EXTENDED_POSITION = 4
MODE_CURRENT_BASED_POSITION = 5

# Hardware Error Status bits (address 70; e-manual "Shutdown(63)" lists them: bit 0 input voltage, bit 2
# overheating, bit 3 motor encoder, bit 4 electrical shock, bit 5 overload; bits 1, 6, 7 unused)
HW_INPUT_VOLTAGE = 0x01
HW_OVERHEATING = 0x04
HW_ENCODER = 0x08
HW_ELECTRICAL_SHOCK = 0x10
HW_OVERLOAD = 0x20
HW_ERROR_NAMES = {
    HW_INPUT_VOLTAGE: "input voltage",
    HW_OVERHEATING: "overheating",
    HW_ENCODER: "motor encoder",
    HW_ELECTRICAL_SHOCK: "electrical shock",
    HW_OVERLOAD: "overload",
}

MODEL_XM430_W350 = 1020
MODEL_XL430_W250 = 1060


@dataclass(frozen=True)
class Model:
    """What differs between the models: address 126 is Present Current (XM430-W350, 2.69 mA units) or
    Present Load (XL430-W250, 0.1 % of the maximum output; e-manual "Present Load(126)")."""

    number: int
    name: str
    effort: str  # "current" or "load": what address 126 holds
    effort_unit: str  # "mA" or "%"
    effort_scale: float  # physical unit per count of address 126


MODELS = {
    MODEL_XM430_W350: Model(MODEL_XM430_W350, "XM430-W350", "current", "mA", 2.69),
    MODEL_XL430_W250: Model(MODEL_XL430_W250, "XL430-W250", "load", "%", 0.1),
}

# Position units: 4096 counts per turn, 2048 is the centre (e-manual "Goal Position").
COUNTS_PER_TURN = 4096
CENTER_COUNT = 2048
COUNTS_PER_RAD = COUNTS_PER_TURN / (2.0 * math.pi)
BUS_WATCHDOG_UNIT_S = 0.020
# Goal Position windows (e-manual "Goal Position(116)"): Position Control Mode takes Min..Max Position Limit,
# themselves within one turn; Extended (and Current-based) Position Control Mode take -256..256 turns and
# ignore the limits.
POSITION_LIMIT_RANGE = (0, COUNTS_PER_TURN - 1)
EXTENDED_POSITION_RANGE = (-1_048_575, 1_048_575)
LIMIT_SLACK_COUNTS = 1  # a joint limit at most one count (0.088 deg) past the window is taken as its end


POSITION_MODES = (MODE_POSITION, MODE_EXTENDED_POSITION, MODE_CURRENT_BASED_POSITION)


def goal_range(mode: int) -> tuple[int, int]:
    """The counts Goal Position accepts in `mode` at the widest (Position Control Mode: 0..4095)."""
    multi_turn = mode in (MODE_EXTENDED_POSITION, MODE_CURRENT_BASED_POSITION)
    return EXTENDED_POSITION_RANGE if multi_turn else POSITION_LIMIT_RANGE


def goal_window(lo: float, hi: float, mode: int) -> tuple[int, int] | None:
    """The integer Goal Position window for a joint whose limits are `lo`..`hi` counts (exact, lo < hi),
    or None when the limits cannot be represented in `mode`.

    The window is rounded inwards (ceil/floor) so that no count in it lies outside the joint's limits; a
    limit within `LIMIT_SLACK_COUNTS` past the servo's range maps onto the range's end (a +pi limit is
    count 4096, the same place as count 0, which Position Control Mode cannot reach from the other side).
    """
    first, last = goal_range(mode)
    a, b = math.ceil(lo - 1e-6), math.floor(hi + 1e-6)
    if a < first - LIMIT_SLACK_COUNTS or b > last + LIMIT_SLACK_COUNTS:
        return None
    a, b = max(a, first), min(b, last)
    return (a, b) if a < b else None


def hardware_error_text(bits: int) -> str:
    """'overheating, overload (0x24)': the set bits of Hardware Error Status (address 70) by name."""
    names = [name for bit, name in HW_ERROR_NAMES.items() if bits & bit]
    unknown = bits & ~sum(HW_ERROR_NAMES)
    if unknown:
        names.append(f"unknown bits 0x{unknown:02x}")
    return f"{', '.join(names) or 'no bits set'} (0x{bits:02x})"


def encode_value(reg: Register, value: int) -> bytes:
    return int(value).to_bytes(reg.size, "little", signed=reg.signed)


def decode_value(reg: Register, data: bytes) -> int:
    return int.from_bytes(data[: reg.size], "little", signed=reg.signed)
