"""The one exception tree of `edgeact.firmware_bridge`.

Every error a motor bus can raise derives from `BridgeError`; timeouts also derive from `TimeoutError` and
configuration errors from `ValueError`, so callers can catch either the bridge tree or the builtin family.
Messages name the device (port or CAN channel) and the motor/node id involved.
"""

from __future__ import annotations


class BridgeError(Exception):
    """Base of every error raised by the firmware bridge."""


class BridgeConfigError(BridgeError, ValueError):
    """A robot or bus configuration is invalid (names the file/field and the value)."""


class MissingDependencyError(BridgeError, ImportError):
    """An optional backend (pyserial, python-can, canopen) is missing; the message says how to install it."""


class TransportError(BridgeError):
    """The transport (serial port, CAN bus) failed to open, read or write."""


class CommTimeoutError(TransportError, TimeoutError):
    """A device did not answer in time (after the bounded retries)."""


class PacketError(BridgeError):
    """A received frame is malformed: bad header, length or instruction."""


class CRCMismatchError(PacketError):
    """The CRC-16 of a received Dynamixel packet does not match its bytes."""


class InvalidCommandError(BridgeError, ValueError):
    """A joint command holds NaN/Inf or has the wrong length; nothing was sent."""


class BusStoppedError(BridgeError):
    """A command was issued after a safe stop; nothing was sent."""


# --- Dynamixel status packet errors (Protocol 2.0 ERR byte, e-manual "Status Packet") -----------------------


class DynamixelStatusError(BridgeError):
    """A servo answered with a non-zero error field; `motor_id` and `code` say which and what."""

    code: int = 0

    def __init__(self, message: str, *, motor_id: int | None = None) -> None:
        super().__init__(message)
        self.motor_id = motor_id


class ResultFailError(DynamixelStatusError):
    code = 0x01


class InstructionError(DynamixelStatusError):
    code = 0x02


class DeviceCRCError(DynamixelStatusError):
    """The servo reports that the instruction packet it received had a bad CRC."""

    code = 0x03


class DataRangeError(DynamixelStatusError):
    code = 0x04


class DataLengthError(DynamixelStatusError):
    code = 0x05


class DataLimitError(DynamixelStatusError):
    code = 0x06


class AccessError(DynamixelStatusError):
    code = 0x07


class HardwareAlertError(DynamixelStatusError):
    """Bit 7 of the ERR byte: the servo latched a hardware error (see Hardware Error Status, address 70)."""

    code = 0x80


class HardwareErrorStatusError(HardwareAlertError):
    """A hardware alert with the servos' Hardware Error Status (address 70) read: `status` maps each alerting
    servo id to its bits; the message names them (input voltage, overheating, motor encoder, ...)."""

    def __init__(self, message: str, *, motor_id: int | None = None, status: dict[int, int] | None = None):
        super().__init__(message, motor_id=motor_id)
        self.status = dict(status or {})


class BusWatchdogExpiredError(DynamixelStatusError):
    """The servo's Bus Watchdog (address 98) expired: it stopped and reads back -1 (0xFF)."""


# --- CANopen / CiA 402 --------------------------------------------------------------------------------------


class CanOpenError(BridgeError):
    """Base of the CANopen drive errors."""

    def __init__(self, message: str, *, node_id: int | None = None) -> None:
        super().__init__(message)
        self.node_id = node_id


class HeartbeatLostError(CanOpenError):
    """No heartbeat from a drive within the consumer time."""


class EmergencyError(CanOpenError):
    """A drive sent an EMCY frame with a non-zero error code."""

    def __init__(self, message: str, *, node_id: int | None = None, code: int = 0, register: int = 0) -> None:
        super().__init__(message, node_id=node_id)
        self.code = code
        self.register = register


class DriveFaultError(CanOpenError):
    """The CiA 402 statusword reports Fault, or a state transition did not complete."""


class SdoConfigError(CanOpenError):
    """An SDO write during bring-up was aborted or timed out."""


STATUS_ERRORS: dict[int, type[DynamixelStatusError]] = {
    cls.code: cls
    for cls in (
        ResultFailError,
        InstructionError,
        DeviceCRCError,
        DataRangeError,
        DataLengthError,
        DataLimitError,
        AccessError,
    )
}


# --- Feetech SCS/STS ("Communication Protocol User Manual" 1.2, STS3215 memory table) -----------------


class ChecksumMismatchError(PacketError):
    """The one-byte checksum ~(ID + LEN + ERR/INST + params) of a received Feetech packet does not match."""


class FeetechStatusError(BridgeError):
    """A Feetech servo reports a fault in the ERR byte of its response (the same bits as Servo Status, 65):
    `motor_id`, `bits` (all set bits) and `joint` say which servo, what and where."""

    bit: int = 0

    def __init__(
        self, message: str, *, motor_id: int | None = None, bits: int = 0, joint: str | None = None
    ) -> None:
        super().__init__(message)
        self.motor_id = motor_id
        self.bits = bits
        self.joint = joint


class FeetechVoltageError(FeetechStatusError):
    """Bit 0: input voltage outside Min/Max Input Voltage (14, 15)."""

    bit = 0x01


class FeetechSensorError(FeetechStatusError):
    """Bit 1: the magnetic encoder (angle sensor) failed."""

    bit = 0x02


class FeetechOverheatError(FeetechStatusError):
    """Bit 2: Present Temperature (63) above Max Temperature Limit (13)."""

    bit = 0x04


class FeetechOvercurrentError(FeetechStatusError):
    """Bit 3: current above Protection Current (28) for Over Current Protection Time (38)."""

    bit = 0x08


class FeetechOverloadError(FeetechStatusError):
    """Bit 5: load above Overload Torque (36) for Protection Time (35)."""

    bit = 0x20


FEETECH_STATUS_ERRORS: dict[int, type[FeetechStatusError]] = {
    cls.bit: cls
    for cls in (
        FeetechVoltageError,
        FeetechSensorError,
        FeetechOverheatError,
        FeetechOvercurrentError,
        FeetechOverloadError,
    )
}


class CalibrationError(BridgeConfigError):
    """A LeRobot calibration file is missing, unreadable or does not fit the robot (names file, motor,
    field)."""
