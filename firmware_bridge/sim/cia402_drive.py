"""CiA 402 servo drives emulated on a CAN bus (simulation only), built on `canopen`'s LocalNode.

LocalNode supplies the SDO server, NMT slave, heartbeat producer (0x1017) and EMCY producer; this module adds
what it lacks, from the specifications:

- the CiA 402 state machine on the controlword;
- cyclic synchronous position (CiA 402 CSP): the target of the RPDO received before a SYNC is taken at that
  SYNC and the actual position follows it by at most min(max profile velocity 0x607F, the motor's
  `max_speed`) x the interpolation period (0x60C2) per SYNC; when the target runs away faster than that, the
  following error (0x60F4) grows and beyond the following error window (0x6065; 0xFFFFFFFF = off) the drive
  goes to Fault with EMCY 0x8611 (CiA 402 following error), as a real drive does;
- the statusword/position TPDO on every SYNC, optionally padded to 8 bytes (`pad_tpdo`, as many drives do)
  and optionally late: `tpdo_stall=(n, s)` holds the TPDOs of every n-th SYNC and the ones after it for s
  seconds, the latency bursts a loaded host sees (issue 11);
- the heartbeat consumer (CiA 301, object 1016h: sub-entry = producer node id << 16 | time in ms; monitoring
  starts with the first heartbeat received and stops after a loss until the next one) and the reaction to a
  loss (CiA 402, object 6007h abort connection option code: 0 none, 1 fault signal, 2 disable voltage,
  3 quick stop), with EMCY 0x8130 (CiA 301: life guard or heartbeat error);
- fault injection: `inject_fault(code)` (Fault + EMCY, e.g. 0x2310 overcurrent) and `lose_heartbeat()` (the
  drive falls silent: no heartbeat, no TPDO, no SDO, like a cut cable).

Run standalone (another process, e.g. over `udp_multicast`; `--report-states` prints one JSON line per state
change with the CLOCK_MONOTONIC time, which other processes on the machine share):
python -m edgeact.firmware_bridge.sim.cia402_drive --interface udp_multicast --channel 239.0.0.7 --nodes 1-6
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import struct
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import yaml
from edgeact.firmware_bridge.canopen import od as cod
from edgeact.firmware_bridge.canopen.cia402 import (
    CW_DISABLE_VOLTAGE,
    CW_QUICK_STOP,
    State,
    decode_statusword,
    drive_transition,
    encode_statusword,
    import_canopen,
)

log = logging.getLogger(__name__)

EMCY_FOLLOWING_ERROR = cod.EMCY_FOLLOWING_ERROR
EMCY_OVERCURRENT = cod.EMCY_OVERCURRENT
EMCY_HEARTBEAT = cod.EMCY_HEARTBEAT
U8, U16, U32, I8, I32 = (struct.Struct(f) for f in ("<B", "<H", "<I", "<b", "<i"))
FOLLOWING_ERROR_OFF = 0xFFFFFFFF  # CiA 402, 6065h: this value switches following control off
ERR_GENERIC, ERR_COMMUNICATION = 0x01, 0x10  # error register (CiA 301, 1001h) bits 0 and 4
StateListener = Callable[[int, State, float], None]  # (node id, new state, time.monotonic())


class Cia402DriveEmulator:
    """One emulated drive on `network` (a connected canopen.Network).

    `max_profile_velocity` (0x607F) and `following_error_window` (0x6065) are in counts/s and counts (the
    emulator's velocity unit is one count per second); the host can change both over SDO.
    """

    def __init__(
        self,
        node_id: int,
        network: Any,
        *,
        max_speed: float = 2e6,
        position: int = 0,
        max_profile_velocity: int = 65536,  # half a turn of a 17-bit encoder per second
        following_error_window: int = 4096,
        pad_tpdo: bool = False,
        tpdo_stall: tuple[int, float] | None = None,
    ) -> None:
        canopen = import_canopen()
        self.node_id = node_id
        self.network = network
        self.node = canopen.LocalNode(node_id, cod.make_cia402_od(node_id))
        network.add_node(self.node)
        self.node.add_write_callback(self._on_write)
        network.subscribe(cod.SYNC_ID, self._on_sync)
        network.subscribe(cod.RPDO1_BASE + node_id, self._on_rpdo)
        self.max_speed = max_speed  # counts per second: the motor's own limit
        self.pad_tpdo = pad_tpdo
        self.tpdo_stall = tpdo_stall
        self._stall_until = 0.0
        self.position = float(position)
        self.target = position
        self.state = State.SWITCH_ON_DISABLED
        self.state_listeners: list[StateListener] = []
        self.alive = True
        self.syncs = 0
        self.rpdos = 0
        self.comm_losses = 0  # heartbeat consumer timeouts
        self._cw = 0
        self._lock = threading.RLock()
        self._pdo_ok: bool | None = None
        self._hb_producer: int | None = None  # node id consumed through 1016h sub 1, None = unused
        self._hb_time_s = 0.0
        self._hb_last: float | None = None  # None: not monitoring (before the first heartbeat, after a loss)
        self._store(cod.MAX_PROFILE_VELOCITY, max_profile_velocity, U32)
        self._store(cod.FOLLOWING_ERROR_WINDOW, following_error_window, U32)
        self._publish()

    # --- object dictionary helpers ---------------------------------------------------------------------
    def _store(self, index: int, value: int, fmt: struct.Struct = U16, sub: int = 0) -> None:
        self.node.data_store.setdefault(index, {})[sub] = fmt.pack(value)

    def _get(self, index: int, sub: int = 0) -> int:
        var = self.node.object_dictionary[index]
        var = var[sub] if not hasattr(var, "data_type") else var
        return var.decode_raw(self.node.get_data(index, sub))

    def _publish(self) -> None:
        extra = 0x1000 if self.state is State.OPERATION_ENABLED else 0
        self._store(cod.STATUSWORD, encode_statusword(self.state, extra))
        self._store(cod.POSITION_ACTUAL, round(self.position), I32)

    def _set_state(self, new: State) -> None:
        if new is self.state:
            return
        if new is State.OPERATION_ENABLED:
            self.target = round(self.position)  # no jump on enable
        self.state = new
        self._publish()
        now = time.monotonic()
        for listener in self.state_listeners:
            listener(self.node_id, new, now)

    @property
    def statusword(self) -> int:
        return self._get(cod.STATUSWORD)

    def interpolation_period_s(self) -> float:
        """0x60C2: sub 1 value x 10^(sub 2) seconds (CiA 402 interpolation time period)."""
        return self._get(cod.INTERPOLATION_PERIOD, 1) * 10.0 ** self._get(cod.INTERPOLATION_PERIOD, 2)

    def boot(self) -> None:
        """Power on: boot-up message, then pre-operational (heartbeat starts if 0x1017 is set)."""
        self.node.nmt.send_command(0x81)
        self.node.nmt.send_command(0x80)

    # --- callbacks (the network's notifier thread) ------------------------------------------------------
    def _on_write(self, index: int, subindex: int, od: Any, data: bytes) -> None:
        with self._lock:
            if index == cod.CONTROLWORD:
                self._controlword(U16.unpack(data)[0])
            elif index == cod.MODES_OF_OPERATION:
                self._store(cod.MODES_DISPLAY, I8.unpack(data)[0], I8)
            elif index in (cod.RPDO1_COMM, cod.RPDO1_MAP, cod.TPDO1_COMM, cod.TPDO1_MAP):
                self._pdo_ok = None
            elif index == cod.TARGET_POSITION:
                self.target = I32.unpack(data)[0]
            elif index == cod.HEARTBEAT_CONSUMER and subindex == 1:
                self._set_consumer(U32.unpack(data)[0])

    def _controlword(self, cw: int) -> None:
        new = drive_transition(self.state, cw, self._cw)
        if new is State.SWITCH_ON_DISABLED and self.state is State.FAULT:
            self._store(cod.ERROR_CODE, 0)
            self._store(cod.ERROR_REGISTER, 0, U8)
        self._cw = cw
        self._store(cod.CONTROLWORD, cw)
        self._set_state(new)
        self._publish()

    def _pdo_mapping_ok(self) -> bool:
        """The host must have mapped RPDO1/TPDO1 as the bridge expects (CiA 301 mapping entries)."""
        if self._pdo_ok is None:
            ok = True
            for comm, mapping, expected in (
                (cod.RPDO1_COMM, cod.RPDO1_MAP, cod.RPDO1_MAPPING),
                (cod.TPDO1_COMM, cod.TPDO1_MAP, cod.TPDO1_MAPPING),
            ):
                entries = [self._get(mapping, sub) for sub in range(1, self._get(mapping, 0) + 1)]
                ok &= entries == [cod.mapping_entry(*e) for e in expected]
                ok &= not self._get(comm, 1) & 0x80000000 and self._get(comm, 2) == cod.SYNC_TRANSMISSION
            self._pdo_ok = ok
            if not ok:
                log.warning("drive %d: PDO mapping is not the CSP layout; PDOs ignored", self.node_id)
        return self._pdo_ok

    def _on_rpdo(self, can_id: int, data: bytes, timestamp: float) -> None:
        with self._lock:
            if not self.alive or self.node.nmt.state != "OPERATIONAL" or not self._pdo_mapping_ok():
                return
            if len(data) < cod.RPDO1.size:  # shorter than the mapping: not processed (CiA 301)
                return
            self.rpdos += 1
            cw, target = cod.RPDO1.unpack_from(data)
            if self.state is State.OPERATION_ENABLED:
                self.target = target
                self._store(cod.TARGET_POSITION, target, I32)
            if cw != self._cw:
                self._controlword(cw)

    def _on_sync(self, can_id: int, data: bytes, timestamp: float) -> None:
        with self._lock:
            if not self.alive or self.node.nmt.state != "OPERATIONAL":
                return
            self.syncs += 1
            if self.state is State.OPERATION_ENABLED and self._get(cod.MODES_DISPLAY) == cod.MODE_CSP:
                self._follow()
            self._publish()
            if self._pdo_mapping_ok():
                frame = cod.TPDO1.pack(self._get(cod.STATUSWORD), round(self.position))
                if self.pad_tpdo:
                    frame += bytes(8 - len(frame))
                self._send_tpdo(frame)

    def _send_tpdo(self, frame: bytes) -> None:
        cob_id, now = cod.TPDO1_BASE + self.node_id, time.monotonic()
        if self.tpdo_stall is not None:
            every, stall_s = self.tpdo_stall
            if self.syncs % every == 0:
                self._stall_until = now + stall_s
            if now < self._stall_until:
                timer = threading.Timer(self._stall_until - now, self._late_send, (cob_id, frame))
                timer.daemon = True
                timer.start()
                return
        self.network.send_message(cob_id, frame)

    def _late_send(self, cob_id: int, frame: bytes) -> None:
        with contextlib.suppress(RuntimeError):  # the rack closed the bus meanwhile
            self.network.send_message(cob_id, frame)

    def _follow(self) -> None:
        """One interpolation period of CSP: move toward the target at most at the velocity limit."""
        speed = min(self.max_speed, self._get(cod.MAX_PROFILE_VELOCITY))
        limit = speed * self.interpolation_period_s()
        self.position += max(-limit, min(limit, self.target - self.position))
        error = self.target - self.position
        self._store(cod.FOLLOWING_ERROR_ACTUAL, round(error), I32)
        window = self._get(cod.FOLLOWING_ERROR_WINDOW)
        if window != FOLLOWING_ERROR_OFF and abs(error) > window:
            log.warning(
                "drive %d: following error %d counts > window %d (max profile velocity 0x607F = %d)",
                self.node_id,
                round(error),
                window,
                self._get(cod.MAX_PROFILE_VELOCITY),
            )
            self._fault(EMCY_FOLLOWING_ERROR)

    # --- heartbeat consumer (CiA 301, 1016h) and the loss reaction (CiA 402, 6007h) ---------------------
    def _set_consumer(self, value: int) -> None:
        node_id, time_ms = cod.parse_heartbeat_consumer_entry(value)
        if self._hb_producer is not None:
            self.network.unsubscribe(cod.HEARTBEAT_BASE + self._hb_producer, self._on_heartbeat)
        used = 0 < node_id <= 127 and time_ms > 0  # node id 0 or time 0: entry not used
        self._hb_producer = node_id if used else None
        self._hb_time_s = time_ms / 1000
        self._hb_last = None  # monitoring starts with the next heartbeat received
        if self._hb_producer is not None:
            self.network.subscribe(cod.HEARTBEAT_BASE + node_id, self._on_heartbeat)

    def _on_heartbeat(self, can_id: int, data: bytes, timestamp: float) -> None:
        with self._lock:
            if self.alive:
                self._hb_last = time.monotonic()

    def poll(self, now: float | None = None) -> None:
        """Check the heartbeat consumer (DriveRack calls this every few ms from its own thread)."""
        with self._lock:
            if not self.alive or self._hb_last is None:
                return
            now = time.monotonic() if now is None else now
            if now - self._hb_last > self._hb_time_s:
                self._hb_last = None  # a loss is reported once; monitoring resumes with the next heartbeat
                self._comm_loss(now)

    def _comm_loss(self, now: float) -> None:
        self.comm_losses += 1
        option = self._get(cod.ABORT_CONNECTION_OPTION)
        log.warning(
            "drive %d: no heartbeat from node %s for %.3f s (0x1016 consumer time): 0x6007 = %d (%s)",
            self.node_id,
            self._hb_producer,
            self._hb_time_s,
            option,
            cod.ABORT_OPTIONS.get(option, "manufacturer-specific: fault"),
        )
        if option == cod.ABORT_NO_ACTION:
            return
        if option in (cod.ABORT_DISABLE_VOLTAGE, cod.ABORT_QUICK_STOP):
            self.node.emcy.send(EMCY_HEARTBEAT, ERR_COMMUNICATION)
            cw = CW_DISABLE_VOLTAGE if option == cod.ABORT_DISABLE_VOLTAGE else CW_QUICK_STOP
            self.target = round(self.position)  # no ramp here: the motion stops where it is
            # a drive-internal command: 0x6040 keeps the host's last controlword, so repeating it re-enables
            # nothing; the host has to walk the state machine again
            self._set_state(drive_transition(self.state, cw, self._cw))
            return
        self._fault(EMCY_HEARTBEAT, ERR_GENERIC | ERR_COMMUNICATION)  # 1 and manufacturer-specific codes

    # --- faults ----------------------------------------------------------------------------------------
    def _fault(self, code: int, register: int = ERR_GENERIC) -> None:
        self._store(cod.ERROR_CODE, code)
        self._store(cod.ERROR_REGISTER, register, U8)
        self._set_state(State.FAULT)
        self._publish()
        self.node.emcy.send(code, register)

    def inject_fault(self, code: int = EMCY_OVERCURRENT) -> None:
        with self._lock:
            self._fault(code)

    def lose_heartbeat(self) -> None:
        with self._lock:
            self.alive = False
            self.node.nmt.stop_heartbeat()
            self.network.unsubscribe(self.node.sdo.rx_cobid)

    @property
    def cia402_state(self) -> State:
        return decode_statusword(self.statusword)


class DriveRack:
    """Several emulated drives sharing one python-can bus (their own canopen.Network).

    `drive_options` go to every `Cia402DriveEmulator` (e.g. `pad_tpdo=True`, `max_profile_velocity=...`);
    `bus_options` to python-can. A thread polls the drives' heartbeat consumers every `POLL_S`.
    """

    POLL_S = 0.005

    def __init__(
        self,
        interface: str,
        channel: str,
        node_ids: list[int] | tuple[int, ...],
        *,
        drive_options: dict[str, Any] | None = None,
        **bus_options: Any,
    ) -> None:
        canopen = import_canopen()
        self.network = canopen.Network()
        self.network.NOTIFIER_CYCLE = 0.05
        self.network.connect(interface=interface, channel=channel, **bus_options)
        opts = drive_options or {}
        self.drives = {i: Cia402DriveEmulator(i, self.network, **opts) for i in node_ids}
        for drive in self.drives.values():
            drive.boot()
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="drive-rack-poll", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while not self._stop.wait(self.POLL_S):
            for drive in self.drives.values():
                drive.poll()

    def close(self) -> None:
        self._stop.set()
        self._poller.join(timeout=1.0)
        for drive in self.drives.values():
            drive.node.nmt.stop_heartbeat()
        self.network.disconnect()

    def __enter__(self) -> DriveRack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _parse_nodes(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi or lo) + 1))
    return out


def _parse_bus_option(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, yaml.safe_load(value)  # typed as in YAML: port=43114 is an int, fd=true a bool


def _report_state(node_id: int, state: State, t: float) -> None:
    print(json.dumps({"node": node_id, "state": state.value, "t": t}), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Emulated CiA 402 drives on a CAN bus (simulation only).")
    parser.add_argument("--interface", default="virtual")
    parser.add_argument("--channel", default="edgeact")
    parser.add_argument("--nodes", default="1-6", help="node ids, e.g. 1-6 or 1,3,5")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds to run")
    parser.add_argument(
        "--fault-after", type=float, default=None, help="inject an EMCY fault on the first node"
    )
    parser.add_argument("--pad-tpdo", action="store_true", help="send TPDOs padded to 8 bytes")
    parser.add_argument("--max-profile-velocity", type=int, default=65536, help="0x607F, counts/s")
    parser.add_argument(
        "--report-states", action="store_true", help="print a JSON line on stdout per CiA 402 state change"
    )
    parser.add_argument(
        "--bus-option",
        action="append",
        type=_parse_bus_option,
        default=[],
        metavar="KEY=VALUE",
        help="python-can bus argument, repeatable (e.g. port=43114 for udp_multicast)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    options = {"pad_tpdo": args.pad_tpdo, "max_profile_velocity": args.max_profile_velocity}
    nodes, bus = _parse_nodes(args.nodes), dict(args.bus_option)
    with DriveRack(args.interface, args.channel, nodes, drive_options=options, **bus) as rack:
        if args.report_states:
            for drive in rack.drives.values():
                drive.state_listeners.append(_report_state)
        print(f"drives {sorted(rack.drives)} on {args.interface}:{args.channel}", flush=True)
        start = time.monotonic()
        faulted = False
        while time.monotonic() - start < args.duration:
            if args.fault_after is not None and not faulted and time.monotonic() - start > args.fault_after:
                next(iter(rack.drives.values())).inject_fault()
                faulted = True
            time.sleep(0.01)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
