"""The CiA 402 drive state machine (CiA 402-2 / IEC 61800-7-201, "device control"): statusword decoding,
controlword commands, the host's path to Operation Enabled and the drive's transition function.

Pure functions on integers; the host (`arm.py`) and the emulator (`sim/cia402_drive.py`) share them, and a
property test drives the host path through the drive function from every state.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from edgeact.firmware_bridge.errors import MissingDependencyError


def import_canopen() -> Any:
    try:
        import canopen
    except ImportError as err:
        raise MissingDependencyError(
            "CANopen drives need the canopen and python-can packages; install them with: "
            "pip install 'edgeact[runtime]'"
        ) from err
    return canopen


class State(str, Enum):
    NOT_READY_TO_SWITCH_ON = "NOT READY TO SWITCH ON"
    SWITCH_ON_DISABLED = "SWITCH ON DISABLED"
    READY_TO_SWITCH_ON = "READY TO SWITCH ON"
    SWITCHED_ON = "SWITCHED ON"
    OPERATION_ENABLED = "OPERATION ENABLED"
    QUICK_STOP_ACTIVE = "QUICK STOP ACTIVE"
    FAULT_REACTION_ACTIVE = "FAULT REACTION ACTIVE"
    FAULT = "FAULT"


# Statusword (0x6041) (mask, value) per state; REFERENCE section 4.
STATUSWORD_STATES = (
    (0x4F, 0x00, State.NOT_READY_TO_SWITCH_ON),
    (0x4F, 0x40, State.SWITCH_ON_DISABLED),
    (0x6F, 0x21, State.READY_TO_SWITCH_ON),
    (0x6F, 0x23, State.SWITCHED_ON),
    (0x6F, 0x27, State.OPERATION_ENABLED),
    (0x6F, 0x07, State.QUICK_STOP_ACTIVE),
    (0x4F, 0x0F, State.FAULT_REACTION_ACTIVE),
    (0x4F, 0x08, State.FAULT),
)
STATE_BITS = {state: value for _mask, value, state in STATUSWORD_STATES}
SW_VOLTAGE_ENABLED = 0x0010
SW_QUICK_STOP = 0x0020  # 1 = quick stop NOT active (except in states where it is fixed by the table)
SW_WARNING = 0x0080
SW_REMOTE = 0x0200
SW_TARGET_REACHED = 0x0400
SW_CSP_FOLLOWING = 0x1000  # CSP: drive follows the target value
SW_FOLLOWING_ERROR = 0x2000

# Controlword (0x6040) commands
CW_DISABLE_VOLTAGE = 0x00
CW_QUICK_STOP = 0x02
CW_SHUTDOWN = 0x06
CW_SWITCH_ON = 0x07
CW_ENABLE_OPERATION = 0x0F
CW_FAULT_RESET = 0x80  # acts on the rising edge of bit 7


def decode_statusword(statusword: int) -> State:
    for mask, value, state in STATUSWORD_STATES:
        if statusword & mask == value:
            return state
    return State.NOT_READY_TO_SWITCH_ON


def encode_statusword(state: State, extra: int = 0) -> int:
    word = STATE_BITS[state] | SW_REMOTE | extra
    if state in (State.READY_TO_SWITCH_ON, State.SWITCHED_ON, State.OPERATION_ENABLED):
        word |= SW_VOLTAGE_ENABLED
    return word


def controlword_toward_enabled(state: State, previous_cw: int = 0) -> int:
    """The host's next controlword on the way to Operation Enabled (fault reset needs a rising edge)."""
    if state in (State.FAULT, State.FAULT_REACTION_ACTIVE):
        return CW_DISABLE_VOLTAGE if previous_cw & CW_FAULT_RESET else CW_FAULT_RESET
    return {
        State.NOT_READY_TO_SWITCH_ON: CW_DISABLE_VOLTAGE,
        State.SWITCH_ON_DISABLED: CW_SHUTDOWN,
        State.READY_TO_SWITCH_ON: CW_SWITCH_ON,
        State.SWITCHED_ON: CW_ENABLE_OPERATION,
        State.OPERATION_ENABLED: CW_ENABLE_OPERATION,
        State.QUICK_STOP_ACTIVE: CW_DISABLE_VOLTAGE,
    }[state]


def drive_transition(state: State, cw: int, previous_cw: int) -> State:
    """What a drive does with a controlword (CiA 402 transitions 2-12, 15; 16 is not supported)."""
    if state in (State.FAULT, State.FAULT_REACTION_ACTIVE):
        rising = cw & CW_FAULT_RESET and not previous_cw & CW_FAULT_RESET
        return State.SWITCH_ON_DISABLED if rising and state is State.FAULT else state
    if state is State.NOT_READY_TO_SWITCH_ON:
        return State.SWITCH_ON_DISABLED  # transition 1 happens on its own after self-test
    disable_voltage = not cw & 0x02
    quick_stop = cw & 0x06 == 0x02
    shutdown = cw & 0x87 == 0x06
    switch_on = cw & 0x8F == 0x07
    enable = cw & 0x8F == 0x0F
    if state is State.QUICK_STOP_ACTIVE:
        return State.SWITCH_ON_DISABLED if disable_voltage else state
    if disable_voltage:
        return State.SWITCH_ON_DISABLED
    if quick_stop:
        return State.QUICK_STOP_ACTIVE if state is State.OPERATION_ENABLED else State.SWITCH_ON_DISABLED
    if state is State.SWITCH_ON_DISABLED:
        return State.READY_TO_SWITCH_ON if shutdown else state
    if state is State.READY_TO_SWITCH_ON:
        if switch_on:
            return State.SWITCHED_ON
        return State.OPERATION_ENABLED if enable else state  # transitions 3 + 4 in one step
    if state is State.SWITCHED_ON:
        if shutdown:
            return State.READY_TO_SWITCH_ON
        return State.OPERATION_ENABLED if enable else state
    # OPERATION_ENABLED
    if shutdown:
        return State.READY_TO_SWITCH_ON
    return State.SWITCHED_ON if switch_on else state


def interpolation_period(period_us: int) -> tuple[int, int] | None:
    """0x60C2 (CiA 402 interpolation time period) for a cycle of `period_us`: (value, exponent) with
    period = value x 10^exponent s, value in 0..255 (UNSIGNED8), exponent in -6..-3; None if none is exact."""
    for exponent in (-3, -4, -5, -6):
        unit_us = 10 ** (exponent + 6)
        if period_us % unit_us == 0 and period_us // unit_us <= 255:
            return period_us // unit_us, exponent
    return None
