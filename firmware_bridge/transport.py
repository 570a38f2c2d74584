"""Byte and frame transports under the motor buses: a serial port (pyserial) and a CAN bus (python-can).

Each has a virtual twin for tests and `--dry-run`:
- serial: a real pseudo-terminal pair (`open_pty_pair`); the device emulator owns the master side and the bus
  opens the slave path through pyserial exactly as it would open `/dev/ttyUSB0`;
- CAN: python-can's `virtual` interface (every bus on the same channel in one process sees every frame), or
  `udp_multicast` for a drive emulator in another process.

pyserial and python-can are optional dependencies (`pip install edgeact[runtime]`) loaded on first use.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import tty
from typing import Any

from edgeact.firmware_bridge.errors import BridgeConfigError, MissingDependencyError, TransportError

log = logging.getLogger(__name__)

INSTALL_HINT = "install it with: pip install 'edgeact[runtime]'"


def _import_serial() -> Any:
    try:
        import serial
    except ImportError as err:
        raise MissingDependencyError(f"the serial transport needs pyserial; {INSTALL_HINT}") from err
    return serial


def _import_can() -> Any:
    try:
        import can
    except ImportError as err:
        raise MissingDependencyError(f"the CAN transport needs python-can; {INSTALL_HINT}") from err
    return can


class SerialTransport:
    """A half-duplex serial line (U2D2 / RS-485) through pyserial.

    `read_exact` waits at most until the given deadline; `tx_bytes`/`rx_bytes` count what crossed the port.
    """

    def __init__(self, port: str, baudrate: int = 1_000_000, poll_timeout_s: float = 0.002) -> None:
        if baudrate <= 0:
            raise BridgeConfigError(f"serial baudrate must be positive, got {baudrate} (port {port})")
        self.port = port
        self.baudrate = baudrate
        self.poll_timeout_s = poll_timeout_s
        self._ser: Any = None
        self.tx_bytes = 0
        self.rx_bytes = 0
        self.last_write = 0.0  # time.monotonic() of the last write (the servos' bus watchdog restarts then)

    @property
    def is_open(self) -> bool:
        return self._ser is not None

    def open(self) -> None:
        serial = _import_serial()
        try:
            # The read timeout is fixed once: changing it later reconfigures the port (a tcsetattr per call).
            self._ser = serial.Serial(
                self.port, self.baudrate, timeout=self.poll_timeout_s, write_timeout=0.5, exclusive=True
            )
        except (serial.SerialException, OSError, ValueError) as err:
            raise TransportError(
                f"cannot open serial port {self.port} at {self.baudrate} baud: {err}"
            ) from err
        log.info("opened serial port %s at %d baud", self.port, self.baudrate)

    def close(self) -> None:
        if self._ser is not None:
            try:
                self._ser.close()
            finally:
                self._ser = None

    def _require(self) -> Any:
        if self._ser is None:
            raise TransportError(f"serial port {self.port} is not open")
        return self._ser

    def write(self, data: bytes) -> None:
        ser = self._require()
        try:
            ser.write(data)
        except Exception as err:  # pyserial raises SerialException/SerialTimeoutException/OSError
            raise TransportError(f"write of {len(data)} bytes to {self.port} failed: {err}") from err
        self.tx_bytes += len(data)
        self.last_write = time.monotonic()

    def read_exact(self, n: int, deadline: float) -> bytes:
        """Up to `n` bytes, returning early (short) only when `deadline` (time.monotonic) passes."""
        ser = self._require()
        got = b""
        try:
            while True:
                got += ser.read(n - len(got))
                if len(got) >= n or time.monotonic() >= deadline:
                    break
        except Exception as err:
            raise TransportError(f"read from {self.port} failed: {err}") from err
        self.rx_bytes += len(got)
        return got

    def reset_input(self) -> None:
        """Drop stale bytes (a late reply from a previous transaction)."""
        ser = self._require()
        if ser.in_waiting:
            ser.reset_input_buffer()


class PtyPair:
    """A raw pseudo-terminal: the emulator reads/writes `master`; pyserial opens `path` (the slave side)."""

    def __init__(self) -> None:
        self.master, self._slave = os.openpty()
        tty.setraw(self.master)
        tty.setraw(self._slave)
        self.path = os.ttyname(self._slave)

    def close(self) -> None:
        for fd in (self.master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)


def open_can_bus(interface: str, channel: str | int, bitrate: int | None = None, **kwargs: Any) -> Any:
    """A python-can bus: any interface python-can knows (socketcan, slcan, pcan, virtual, udp_multicast).

    `kwargs` go to `can.Bus` as they are (the robot YAML's `can_options`, `rt-run --can-option`): `fd`,
    `data_bitrate`, `port` of udp_multicast, ...; they take precedence over python-can's environment variables
    and config files. `bitrate` is not passed to virtual and udp_multicast, which have none."""
    can = _import_can()
    if not interface:
        raise BridgeConfigError("CAN interface must be named (e.g. socketcan, pcan, virtual, udp_multicast)")
    options = dict(kwargs)
    if bitrate is not None and interface not in ("virtual", "udp_multicast"):
        options["bitrate"] = bitrate
    try:
        bus = can.Bus(interface=interface, channel=channel, **options)
    except (can.CanError, OSError, ValueError, ImportError) as err:
        raise TransportError(f"cannot open CAN bus {interface}:{channel}: {err}") from err
    log.info("opened CAN bus %s:%s", interface, channel)
    return bus


class FrameCounter:
    """Counts CAN frames seen on a channel (a passive listener: proves nothing is sent after a stop)."""

    def __init__(self, interface: str, channel: str | int, **kwargs: Any) -> None:
        can = _import_can()
        self._bus = open_can_bus(interface, channel, **kwargs)
        self.frames: list[Any] = []
        self._notifier = can.Notifier(self._bus, [self.frames.append], timeout=0.05)

    def count(self, predicate: Any = None) -> int:
        return sum(1 for m in list(self.frames) if predicate is None or predicate(m))

    def close(self) -> None:
        self._notifier.stop()
        self._bus.shutdown()
