"""Control table of the X-series servos on the WidowX 250 (XM430-W350, XL430-W250), from the ROBOTIS
e-manual.

Both models share these addresses. Each entry is (address, size in bytes). EEPROM entries (below 64) can
only be written with torque off; Indirect Address entries are also locked while torque is on."""

from __future__ import annotations

import math
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
PRESENT_CURRENT = Register(126, 2, signed=True)
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

# Hardware Error Status bits (address 70)
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

# Position units: 4096 counts per turn, 2048 is the centre (e-manual "Goal Position").
COUNTS_PER_TURN = 4096
CENTER_COUNT = 2048
COUNTS_PER_RAD = COUNTS_PER_TURN / (2.0 * math.pi)
BUS_WATCHDOG_UNIT_S = 0.020


def hardware_error_text(bits: int) -> str:
    names = [name for bit, name in HW_ERROR_NAMES.items() if bits & bit]
    return ", ".join(names) if names else f"0x{bits:02x}"


def encode_value(reg: Register, value: int) -> bytes:
    return int(value).to_bytes(reg.size, "little", signed=reg.signed)


def decode_value(reg: Register, data: bytes) -> int:
    return int.from_bytes(data[: reg.size], "little", signed=reg.signed)
