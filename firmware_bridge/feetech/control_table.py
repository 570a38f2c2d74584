"""Control table of the Feetech STS3215 (SO-100/SO-101 arms), from Feetech's STS3215 memory table.

Each entry is (address, size, sign bit). Two-byte values are little-endian on the STS (magnetic-encoder)
series (protocol manual 1.0, "Byte Order"). Signed registers use sign-magnitude, not two's complement: the
sign sits in one bit (bit 15 for positions and speeds, bit 11 for Homing Offset, bit 10 for Present Load) and
the other bits hold the magnitude.

Addresses 0..39 are EEPROM (saved over power-off only while Lock (55) is 0), 40 and up are SRAM. The status
bits of Servo Status (65) are the same bits a servo puts in the ERR byte of each response.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple


class Register(NamedTuple):
    address: int
    size: int
    sign_bit: int | None = None  # sign-magnitude sign bit, None = unsigned


# EEPROM area (memory table "EPROM", addresses 0..39)
FIRMWARE_MAJOR = Register(0, 1)
FIRMWARE_MINOR = Register(1, 1)
MODEL_NUMBER = Register(3, 2)  # STS3215: 777
ID = Register(5, 1)
BAUD_RATE = Register(6, 1)  # 0 = 1 Mbit/s
RETURN_DELAY_TIME = Register(7, 1)  # units of 2 us
RESPONSE_STATUS_LEVEL = Register(8, 1)  # 0: respond to read and ping only; 1: to every instruction
MIN_ANGLE_LIMIT = Register(9, 2)  # the goal is held within Min..Max Angle Limit (both 0: multi-turn)
MAX_ANGLE_LIMIT = Register(11, 2)
MAX_TEMPERATURE_LIMIT = Register(13, 1)  # deg C
MAX_INPUT_VOLTAGE = Register(14, 1)  # 0.1 V
MIN_INPUT_VOLTAGE = Register(15, 1)  # 0.1 V
MAX_TORQUE_LIMIT = Register(16, 2)  # 0.1 % of stall torque; copied into Torque Limit (48) at power-on
UNLOADING_CONDITION = Register(19, 1)  # status bits that turn the torque off when they occur
LED_ALARM_CONDITION = Register(20, 1)
P_COEFFICIENT = Register(21, 1)
D_COEFFICIENT = Register(22, 1)
I_COEFFICIENT = Register(23, 1)
PROTECTION_CURRENT = Register(28, 2)  # 6.5 mA units
HOMING_OFFSET = Register(31, 2, sign_bit=11)  # Present Position = actual - Homing Offset
OPERATING_MODE = Register(33, 1)  # 0 position, 1 wheel (speed), 2 PWM, 3 step
PROTECTIVE_TORQUE = Register(34, 1)  # % output after an overload protection
PROTECTION_TIME = Register(35, 1)  # 10 ms units: how long the overload lasts before it trips
OVERLOAD_TORQUE = Register(36, 1)  # % of max torque: the overload threshold
# SRAM area (40 and up)
TORQUE_ENABLE = Register(40, 1)  # 0 off, 1 on (128: take the present position as 2048, not used here)
ACCELERATION = Register(41, 1)  # 100 steps/s^2 units, 0 = the servo's maximum
GOAL_POSITION = Register(42, 2, sign_bit=15)
GOAL_TIME = Register(44, 2)
GOAL_SPEED = Register(46, 2, sign_bit=15)  # steps/s (0.732 rpm units on the STS3215), 0 = maximum
TORQUE_LIMIT = Register(48, 2)  # 0.1 % units, starts as Max Torque Limit at power-on
LOCK = Register(55, 1)  # 0: EEPROM writes are saved; 1: they are not saved over power-off
PRESENT_POSITION = Register(56, 2, sign_bit=15)
PRESENT_SPEED = Register(58, 2, sign_bit=15)
PRESENT_LOAD = Register(60, 2, sign_bit=10)  # 0.1 % of max torque
PRESENT_VOLTAGE = Register(62, 1)  # 0.1 V
PRESENT_TEMPERATURE = Register(63, 1)  # deg C
STATUS = Register(65, 1)  # the status bits below
MOVING = Register(66, 1)
PRESENT_CURRENT = Register(69, 2)  # 6.5 mA units
MAXIMUM_ACCELERATION = Register(85, 1)  # factory area
EEPROM_END = TORQUE_ENABLE.address  # 0..39 are EEPROM
TABLE_SIZE = 128

# Feedback block read each tick in one Sync Read: Present Position .. Status, 56..65 (10 bytes)
FEEDBACK_ADDRESS = PRESENT_POSITION.address
FEEDBACK_SIZE = STATUS.address + 1 - FEEDBACK_ADDRESS

# Status bits (Servo Status (65) and the ERR byte of every response)
ST_VOLTAGE = 0x01
ST_SENSOR = 0x02
ST_OVERHEAT = 0x04
ST_OVERCURRENT = 0x08
ST_OVERLOAD = 0x20
STATUS_NAMES = {
    ST_VOLTAGE: "input voltage",
    ST_SENSOR: "angle sensor",
    ST_OVERHEAT: "overheat",
    ST_OVERCURRENT: "overcurrent",
    ST_OVERLOAD: "overload",
}

MODE_POSITION = 0


@dataclass(frozen=True)
class Model:
    number: int
    name: str
    resolution: int  # position counts per turn (LeRobot's MODEL_RESOLUTION)


MODEL_STS3215 = 777
MODELS = {MODEL_STS3215: Model(MODEL_STS3215, "sts3215", 4096)}
MODEL_BY_NAME = {m.name: m for m in MODELS.values()}


def status_text(bits: int) -> str:
    """'overheat, overload (0x24)': the set status bits by name."""
    names = [name for bit, name in STATUS_NAMES.items() if bits & bit]
    unknown = bits & ~sum(STATUS_NAMES)
    if unknown:
        names.append(f"unknown bits 0x{unknown:02x}")
    return f"{', '.join(names) or 'no bits set'} (0x{bits:02x})"


def encode_sign_magnitude(value: int, sign_bit: int) -> int:
    magnitude = abs(int(value))
    if magnitude >= 1 << sign_bit:
        raise ValueError(f"{value} does not fit sign-magnitude with the sign in bit {sign_bit}")
    return magnitude | ((1 << sign_bit) if value < 0 else 0)


def decode_sign_magnitude(raw: int, sign_bit: int) -> int:
    magnitude = raw & ((1 << sign_bit) - 1)
    return -magnitude if raw >> sign_bit & 1 else magnitude


def encode_value(reg: Register, value: int) -> bytes:
    """Little-endian bytes of `value` (sign-magnitude where the register is signed)."""
    raw = int(value) if reg.sign_bit is None else encode_sign_magnitude(value, reg.sign_bit)
    if not 0 <= raw < 1 << (8 * reg.size):
        raise ValueError(f"{value} does not fit register {reg.address} ({reg.size} bytes)")
    return raw.to_bytes(reg.size, "little")


def decode_value(reg: Register, data: bytes) -> int:
    raw = int.from_bytes(data[: reg.size], "little")
    return raw if reg.sign_bit is None else decode_sign_magnitude(raw, reg.sign_bit)
