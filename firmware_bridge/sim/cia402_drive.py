"""CiA 402 servo drives emulated on a CAN bus (simulation only), built on `canopen`'s LocalNode.

LocalNode supplies the SDO server, NMT slave, heartbeat producer (0x1017) and EMCY producer; this module adds
what it lacks: the CiA 402 state machine on the controlword, cyclic synchronous position (the target of the
RPDO received before a SYNC is taken at that SYNC, the actual position follows it at a bounded speed), the
statusword/position TPDO on every SYNC, the following-error fault, and fault injection:

- `inject_fault(code)`: go to Fault and send an EMCY frame (e.g. 0x8611 following error, 0x2310 overcurrent);
- `lose_heartbeat()`: the drive falls silent (no heartbeat, no TPDO, no SDO), like a cut cable.

Run standalone (another process, e.g. over `udp_multicast`):
python -m edgeact.firmware_bridge.sim.cia402_drive --interface udp_multicast --channel 239.0.0.7 --nodes 1-6
"""

from __future__ import annotations

import argparse
import logging
import struct
import threading
import time
from typing import Any

from edgeact.firmware_bridge.canopen import od as cod
from edgeact.firmware_bridge.canopen.cia402 import (
    State,
    decode_statusword,
    drive_transition,
    encode_statusword,
    import_canopen,
)

log = logging.getLogger(__name__)

EMCY_FOLLOWING_ERROR = 0x8611
EMCY_OVERCURRENT = 0x2310
U16, I32, I8 = struct.Struct("<H"), struct.Struct("<i"), struct.Struct("<b")


class Cia402DriveEmulator:
    """One emulated drive on `network` (a connected canopen.Network)."""

    def __init__(self, node_id: int, network: Any, *, max_speed: float = 2e6, position: int = 0) -> None:
        canopen = import_canopen()
        self.node_id = node_id
        self.network = network
        self.node = canopen.LocalNode(node_id, cod.make_cia402_od(node_id))
        network.add_node(self.node)
        self.node.add_write_callback(self._on_write)
        network.subscribe(cod.SYNC_ID, self._on_sync)
        network.subscribe(cod.RPDO1_BASE + node_id, self._on_rpdo)
        self.max_speed = max_speed  # counts per second
        self.position = float(position)
        self.target = position
        self.state = State.SWITCH_ON_DISABLED
        self.alive = True
        self.syncs = 0
        self.rpdos = 0
        self._cw = 0
        self._last_sync: float | None = None
        self._lock = threading.RLock()
        self._pdo_ok: bool | None = None
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

    @property
    def statusword(self) -> int:
        return self._get(cod.STATUSWORD)

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

    def _controlword(self, cw: int) -> None:
        new = drive_transition(self.state, cw, self._cw)
        if new is State.OPERATION_ENABLED and self.state is not State.OPERATION_ENABLED:
            self.target = round(self.position)  # no jump on enable
        if new is State.SWITCH_ON_DISABLED and self.state is State.FAULT:
            self._store(cod.ERROR_CODE, 0)
            self._store(cod.ERROR_REGISTER, 0, struct.Struct("<B"))
        self.state, self._cw = new, cw
        self._store(cod.CONTROLWORD, cw)
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
            self.rpdos += 1
            cw, target = cod.RPDO1.unpack(bytes(data))
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
            now = time.monotonic()
            dt = 0.0 if self._last_sync is None else min(now - self._last_sync, 0.1)
            self._last_sync = now
            if self.state is State.OPERATION_ENABLED and self._get(cod.MODES_DISPLAY) == cod.MODE_CSP:
                limit = self.max_speed * max(dt, 1e-3)
                self.position += max(-limit, min(limit, self.target - self.position))
                error = self.target - self.position
                self._store(cod.FOLLOWING_ERROR_ACTUAL, round(error), I32)
                window = self._get(cod.FOLLOWING_ERROR_WINDOW)
                if window and abs(error) > window:
                    self._fault(EMCY_FOLLOWING_ERROR)
            self._publish()
            if self._pdo_mapping_ok():
                frame = cod.TPDO1.pack(self._get(cod.STATUSWORD), round(self.position))
                self.network.send_message(cod.TPDO1_BASE + self.node_id, frame)

    # --- faults ----------------------------------------------------------------------------------------
    def _fault(self, code: int) -> None:
        self.state = State.FAULT
        self._store(cod.ERROR_CODE, code)
        self._store(cod.ERROR_REGISTER, 0x01, struct.Struct("<B"))
        self._publish()
        self.node.emcy.send(code, 0x01)

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
    """Several emulated drives sharing one python-can bus (their own canopen.Network)."""

    def __init__(
        self, interface: str, channel: str, node_ids: list[int] | tuple[int, ...], **kwargs: Any
    ) -> None:
        canopen = import_canopen()
        self.network = canopen.Network()
        self.network.NOTIFIER_CYCLE = 0.05
        self.network.connect(interface=interface, channel=channel, **kwargs)
        self.drives = {i: Cia402DriveEmulator(i, self.network) for i in node_ids}
        for drive in self.drives.values():
            drive.boot()

    def close(self) -> None:
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Emulated CiA 402 drives on a CAN bus (simulation only).")
    parser.add_argument("--interface", default="virtual")
    parser.add_argument("--channel", default="edgeact")
    parser.add_argument("--nodes", default="1-6", help="node ids, e.g. 1-6 or 1,3,5")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds to run")
    parser.add_argument(
        "--fault-after", type=float, default=None, help="inject an EMCY fault on the first node"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    with DriveRack(args.interface, args.channel, _parse_nodes(args.nodes)) as rack:
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
