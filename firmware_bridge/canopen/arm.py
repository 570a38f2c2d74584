"""An arm of CiA 402 drives in cyclic synchronous position mode (CSP) on one CAN bus.

Bring-up (`connect`): the host starts its own heartbeat (CiA 301 producer, COB-ID 0x700 + host_node_id,
every `host_heartbeat_ms`, from python-can's periodic sender, so it stops when the process dies); then per
drive with the `canopen` library: NMT pre-operational; SDO configuration (heartbeat producer 0x1017, heartbeat
consumer 0x1016 sub 1 = host node id and `host_heartbeat_timeout_ms`, abort connection option 0x6007,
communication cycle 0x1006, interpolation period 0x60C2, mode 8 = CSP in 0x6060, checked in 0x6061); max
profile velocity 0x607F read and checked against `max_step`; PDO mapping (RPDO1 = controlword + target
position, TPDO1 = statusword + position actual, both on every SYNC); heartbeat consumer and EMCY handlers; NMT
start; target := actual; then the 402 state machine (fault reset if needed) to Operation Enabled through SDO
writes of the controlword. A killed host stops heartbeating: each drive then applies its 0x6007 reaction
within the consumer time (issue 11).

Each tick (`step`): one RPDO per drive with the target, one SYNC, then wait (bounded) for every drive's TPDO.
A heartbeat older than the consumer time, an EMCY, a Fault statusword, a drive leaving Operation Enabled,
or missing feedback for `max_missed_feedback` ticks triggers `safe_stop`: RPDO hold at the last actual
position, wait `hold_s`, then disable voltage (controlword 0x00) if configured; nothing is sent after that.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from edgeact.firmware_bridge.canopen import cia402
from edgeact.firmware_bridge.canopen import od as cod
from edgeact.firmware_bridge.config import CanArmConfig
from edgeact.firmware_bridge.dynamixel.arm import ArmState
from edgeact.firmware_bridge.errors import (
    BridgeConfigError,
    BridgeError,
    BusStoppedError,
    CommTimeoutError,
    DriveFaultError,
    EmergencyError,
    HeartbeatLostError,
    InvalidCommandError,
    SdoConfigError,
    TransportError,
)
from edgeact.firmware_bridge.safety import StopReason, StopRecord, limit_violation, split_reason
from edgeact.firmware_bridge.transport import open_can_bus

log = logging.getLogger(__name__)

__all__ = ["ArmState", "CanArm"]


LATENCY_RING = 4096  # ticks of TPDO latency kept for `feedback_latency_stats`


@dataclass
class _Feedback:
    statusword: int = 0
    position: int = 0
    seq: int = -1
    heartbeat: float = 0.0
    nmt_state: int = -1
    emcy: EmergencyError | None = None
    missed: int = 0
    short_frames: int = 0  # TPDOs shorter than the mapping (never decoded)
    short_len: int = 0


class CanArm:
    """CiA 402 drives streamed in CSP. Call `connect`, then `step(targets)` once per tick (control thread)."""

    def __init__(self, config: CanArmConfig) -> None:
        self.config = config
        self.network: Any = None
        self.nodes: dict[int, Any] = {}
        j = config.joints
        self._ids = config.node_ids
        self._cpr = np.array([x.counts_per_rad for x in j])
        self._zero = np.array([x.zero_counts for x in j], dtype=np.float64)
        self._lower = np.array([x.lower for x in j])
        self._upper = np.array([x.upper for x in j])
        self._fb = {i: _Feedback() for i in self._ids}
        self._cond = threading.Condition()
        self._seq = 0
        self._arrived = 0
        self._step = np.full(len(j), np.inf if config.max_step is None else config.max_step)  # rad per tick
        self.max_profile_velocity: dict[int, int] = {}  # 0x607F read at bring-up, drive velocity units
        self._heartbeat_task: Any = None
        self._t_sync = 0.0
        self._t_all = 0.0
        self._latency = np.full(LATENCY_RING, np.nan)  # seconds from SYNC to the last TPDO, per tick
        self.state: ArmState | None = None
        self.last_command: np.ndarray | None = None
        self.stop_record: StopRecord | None = None
        self.tick = 0
        self._connected = False

    @property
    def device(self) -> str:
        return f"{self.config.interface}:{self.config.channel}"

    def to_counts(self, radians: np.ndarray) -> np.ndarray:
        return np.rint(self._zero + self._cpr * radians).astype(np.int64)

    def from_counts(self, counts: np.ndarray) -> np.ndarray:
        return (np.asarray(counts, dtype=np.float64) - self._zero) / self._cpr

    @property
    def is_connected(self) -> bool:
        return self._connected

    # --- listeners (the network's notifier thread) ------------------------------------------------------
    def _on_heartbeat(self, can_id: int, data: bytes, _ts: float) -> None:
        fb = self._fb[can_id - cod.HEARTBEAT_BASE]
        fb.heartbeat = time.monotonic()
        fb.nmt_state = data[0] & 0x7F if data else -1

    def _on_emcy(self, can_id: int, data: bytes, _ts: float) -> None:
        node_id = can_id - cod.EMCY_BASE
        code, register = int.from_bytes(data[0:2], "little"), data[2] if len(data) > 2 else 0
        if code:  # code 0 = error reset / no error
            self._fb[node_id].emcy = EmergencyError(
                f"drive {node_id} on {self.device} sent EMCY 0x{code:04X} (error register 0x{register:02X})",
                node_id=node_id,
                code=code,
                register=register,
            )

    def _on_tpdo(self, can_id: int, data: bytes, _ts: float) -> None:
        # Never raise here: an exception in a listener ends python-can's notifier thread, and with it all
        # reception. Padded frames (DLC 8) decode by the mapped length; short ones are counted for `_collect`.
        node_id = can_id - cod.TPDO1_BASE
        decoded = cod.decode_tpdo1(data)
        with self._cond:
            fb = self._fb[node_id]
            if decoded is None:
                fb.short_frames += 1
                fb.short_len = len(data)
                return
            if fb.seq != self._seq:
                self._arrived += 1
            fb.statusword, fb.position = decoded
            fb.seq = self._seq
            if self._arrived >= len(self._ids):
                self._t_all = time.perf_counter()
                self._cond.notify()

    # --- bring-up ---------------------------------------------------------------------------------------
    def connect(self) -> ArmState:
        canopen = cia402.import_canopen()
        cfg = self.config
        bus = open_can_bus(cfg.interface, cfg.channel, cfg.bitrate, **cfg.can_options)
        self.network = canopen.Network(bus)
        self.network.NOTIFIER_CYCLE = 0.05  # the notifier's recv timeout bounds how long disconnect() takes
        self.network.connect()
        try:
            self._start_heartbeat()
            for node_id in self._ids:
                node = canopen.RemoteNode(node_id, cod.make_cia402_od(node_id))
                node.sdo.RESPONSE_TIMEOUT = cfg.sdo_timeout_s
                self.network.add_node(node)
                self.nodes[node_id] = node
                self.network.subscribe(cod.HEARTBEAT_BASE + node_id, self._on_heartbeat)
                self.network.subscribe(cod.EMCY_BASE + node_id, self._on_emcy)
                self.network.subscribe(cod.TPDO1_BASE + node_id, self._on_tpdo)
            for node_id in self._ids:
                self._configure(node_id)
                self._check_velocity(node_id)
            for node_id in self._ids:
                self.nodes[node_id].nmt.send_command(0x01)  # NMT start: operational
            self._wait_heartbeats()
            for node_id in self._ids:
                self._enable(node_id)
        except (BridgeError, canopen.SdoCommunicationError, canopen.SdoAbortedError) as err:
            self._shutdown_network()
            if isinstance(err, BridgeError):
                raise
            raise SdoConfigError(f"bring-up of the drives on {self.device} failed: {err}") from err
        counts = np.array([self._fb[i].position for i in self._ids])
        self.state = ArmState(self.from_counts(counts), np.zeros(len(self._ids)), time.monotonic(), 0)
        self.last_command = self.state.positions.copy()
        self._connected = True
        log.info("%s: %d drives in CSP, Operation Enabled on %s", cfg.name, len(self._ids), self.device)
        return self.state

    def _start_heartbeat(self) -> None:
        """The host's heartbeat (CiA 301 heartbeat protocol: one byte, the NMT state, 0x05 = operational).

        python-can's periodic sender (a thread, or the kernel's broadcast manager on socketcan) ends with the
        process, which is what the drives' consumers detect."""
        cfg = self.config
        self._heartbeat_task = self.network.send_periodic(
            cod.HEARTBEAT_BASE + cfg.host_node_id, bytes([0x05]), cfg.host_heartbeat_ms / 1000
        )

    def _write(self, node_id: int, index: int, sub: int | None, value: int) -> None:
        """One SDO download; a refusal names the drive, the object and the value."""
        canopen = cia402.import_canopen()
        entry = self.nodes[node_id].sdo[index]
        try:
            (entry if sub is None else entry[sub]).raw = value
        except (canopen.SdoCommunicationError, canopen.SdoAbortedError) as err:
            where = f"0x{index:04X}" + ("" if sub is None else f" sub {sub}")
            raise SdoConfigError(
                f"drive {node_id} on {self.device}: writing {value} to {where} failed: {err}", node_id=node_id
            ) from err

    def _configure(self, node_id: int) -> None:
        cfg, node = self.config, self.nodes[node_id]
        node.nmt.send_command(0x80)  # NMT pre-operational: SDO and configuration only
        sdo = node.sdo
        self._write(node_id, cod.HEARTBEAT_PRODUCER, None, cfg.heartbeat_producer_ms)
        entry = cod.heartbeat_consumer_entry(cfg.host_node_id, cfg.host_heartbeat_timeout_ms)
        self._write(node_id, cod.HEARTBEAT_CONSUMER, 1, entry)
        self._write(node_id, cod.ABORT_CONNECTION_OPTION, None, cfg.abort_connection_option)
        if cfg.abort_connection_option == cod.ABORT_NO_ACTION:
            log.warning("drive %d: 0x6007 = 0, it stays enabled if the host dies", node_id)
        period_us = round(1e6 / cfg.fps)
        self._write(node_id, cod.COMM_CYCLE_PERIOD, None, period_us)
        interp = cia402.interpolation_period(period_us)
        if interp is None:
            log.warning("drive %d: a %d us period does not fit 0x60C2 (value x 10^exp s)", node_id, period_us)
        else:
            self._write(node_id, cod.INTERPOLATION_PERIOD, 1, interp[0])
            self._write(node_id, cod.INTERPOLATION_PERIOD, 2, interp[1])
        self._write(node_id, cod.MODES_OF_OPERATION, None, cod.MODE_CSP)
        mode = sdo[cod.MODES_DISPLAY].raw
        if mode != cod.MODE_CSP:
            raise SdoConfigError(
                f"drive {node_id} on {self.device} reports mode {mode}, not CSP (8)", node_id=node_id
            )
        for pdo, base, layout in (
            (node.rpdo[1], cod.RPDO1_BASE, cod.RPDO1_MAPPING),
            (node.tpdo[1], cod.TPDO1_BASE, cod.TPDO1_MAPPING),
        ):
            pdo.clear()
            for index, sub, _bits in layout:
                pdo.add_variable(index, sub)
            pdo.cob_id = base + node_id
            pdo.trans_type = cod.SYNC_TRANSMISSION
            pdo.enabled = True
            pdo.save()

    def _check_velocity(self, node_id: int) -> None:
        """Read 0x607F and refuse a `max_step` that implies a faster motion than the drive allows (it would
        trip the drive's following error, EMCY 0x8611); with `max_step` null the drive's limit is the step."""
        canopen = cia402.import_canopen()
        k = self._ids.index(node_id)
        joint = self.config.joints[k]
        try:
            vmax = int(self.nodes[node_id].sdo[cod.MAX_PROFILE_VELOCITY].raw)
        except (canopen.SdoCommunicationError, canopen.SdoAbortedError) as err:
            raise SdoConfigError(
                f"drive {node_id} on {self.device}: reading max profile velocity 0x607F failed: {err}",
                node_id=node_id,
            ) from err
        self.max_profile_velocity[node_id] = vmax
        counts_s = vmax * joint.counts_per_s_per_velocity_unit
        allowed = counts_s / abs(joint.counts_per_rad) / self.config.fps  # rad per tick
        step = self.config.max_step
        if step is None:
            self._step[k] = allowed
            log.info("%s: drive %d steps at most %.5f rad per tick (0x607F)", joint.name, node_id, allowed)
        elif step > allowed:
            need = step * self.config.fps * abs(joint.counts_per_rad) / joint.counts_per_s_per_velocity_unit
            raise BridgeConfigError(
                f"drive {node_id} ({joint.name}) on {self.device}: max_step {step} rad per tick at "
                f"{self.config.fps:g} Hz needs 0x607F >= {need:.0f}, the drive's max profile velocity 0x607F "
                f"is {vmax} ({counts_s:.0f} counts/s = {allowed:.5f} rad per tick); lower max_step to "
                f"{allowed:.5f} or raise 0x607F in the drive's commissioning"
            )

    def _wait_heartbeats(self) -> None:
        deadline = time.monotonic() + max(1.0, 5 * self.config.heartbeat_producer_ms / 1000)
        while time.monotonic() < deadline:
            if all(fb.nmt_state == 5 for fb in self._fb.values()):  # 5 = operational
                return
            time.sleep(0.005)
        silent = [i for i, fb in self._fb.items() if fb.nmt_state != 5]
        raise HeartbeatLostError(
            f"drive(s) {silent} on {self.device} sent no operational heartbeat", node_id=silent[0]
        )

    def _enable(self, node_id: int) -> None:
        """Target := actual, then walk the 402 state machine to Operation Enabled (fault reset if needed)."""
        sdo = self.nodes[node_id].sdo
        actual = sdo[cod.POSITION_ACTUAL].raw
        sdo[cod.TARGET_POSITION].raw = actual
        self._fb[node_id].position = actual
        self._fb[node_id].emcy = None  # an EMCY from before the reset is history
        deadline = time.monotonic() + self.config.enable_timeout_s
        cw = 0
        while True:
            state = cia402.decode_statusword(sdo[cod.STATUSWORD].raw)
            if state is cia402.State.OPERATION_ENABLED:
                return
            if time.monotonic() > deadline:
                raise DriveFaultError(
                    f"drive {node_id} on {self.device} stuck in {state.value} (want Operation Enabled)",
                    node_id=node_id,
                )
            cw = cia402.controlword_toward_enabled(state, cw)
            sdo[cod.CONTROLWORD].raw = cw

    # --- the tick ---------------------------------------------------------------------------------------
    @property
    def limits(self) -> tuple[np.ndarray, np.ndarray]:
        """(lower, upper) float64 (J,), radians."""
        return self._lower.copy(), self._upper.copy()

    @property
    def step_limits(self) -> np.ndarray:
        """float64 (J,) rad per tick: `max_step`, or (after bring-up, `max_step` null) the drive's 0x607F."""
        return self._step.copy()

    def check_command(self, targets: np.ndarray, ticks: int = 1) -> str | None:
        """What is wrong with `targets` (joint, value, limit), or None. Not clamped: the runtime's
        post-processor is the one clamp (docs/firmware_bridge.md, "One clamp")."""
        names = [j.name for j in self.config.joints]
        return limit_violation(names, targets, self._lower, self._upper, self.last_command, self._step, ticks)

    def _send_cyclic(self, controlword: int, counts: np.ndarray) -> None:
        send = self.network.send_message
        for node_id, target in zip(self._ids, counts.tolist(), strict=True):
            send(cod.RPDO1_BASE + node_id, cod.RPDO1.pack(controlword, target))
        self._t_sync = time.perf_counter()
        send(cod.SYNC_ID, b"")

    def feedback_latency_stats(self) -> dict[str, float]:
        """TPDO latency (SYNC sent -> last TPDO received) over the last ticks, in ms: p50, p99, max, the
        share of ticks past `feedback_timeout_s` (missing feedback counts as late) and the tick count."""
        lat = self._latency[: min(self.tick, LATENCY_RING)]
        if lat.size == 0:
            return {}
        ok = lat[np.isfinite(lat)] * 1e3
        late = float(np.mean(~(lat <= self.config.feedback_timeout_s)))
        p50, p99, top = np.percentile(ok, [50, 99, 100]) if ok.size else (np.nan,) * 3
        return {"p50_ms": p50, "p99_ms": p99, "max_ms": top, "late": late, "ticks": float(lat.size)}

    def _health(self, now: float) -> None:
        """Raise for an EMCY or a heartbeat older than the consumer time."""
        for node_id, fb in self._fb.items():
            if fb.emcy is not None:
                raise fb.emcy
            if now - fb.heartbeat > self.config.heartbeat_timeout_s:
                raise HeartbeatLostError(
                    f"no heartbeat from drive {node_id} on {self.device} for {now - fb.heartbeat:.3f} s",
                    node_id=node_id,
                )

    def _collect(self) -> np.ndarray:
        """Feedback of this tick's SYNC; raises on faults, on a dead drive, or on too many missed TPDOs.

        A TPDO later than `feedback_timeout_s` is not a fault: the tick goes on with the last position.
        A drive counts as dead after 2 missed TPDOs with a heartbeat older than 1.5 producer periods while
        other drives' TPDOs of this SYNC did arrive (so the host's own receive path was not what stalled);
        any drive is a comm loss after `max_missed_feedback` consecutive missed TPDOs.
        """
        now = time.monotonic()
        receiving = any(fb.seq == self._seq for fb in self._fb.values())
        for node_id, fb in self._fb.items():
            if fb.seq != self._seq:
                fb.missed += 1
                msg = f"drive {node_id} on {self.device} sent no TPDO for {fb.missed} SYNCs"
                if fb.short_frames:
                    raise CommTimeoutError(
                        f"{msg}: its TPDO1 (0x{cod.TPDO1_BASE + node_id:03X}) came with {fb.short_len} "
                        f"bytes, fewer than the {cod.TPDO1.size} mapped"
                    )
                silent = now - fb.heartbeat > 1.5 * self.config.heartbeat_producer_ms / 1000
                if silent and fb.missed >= min(2, self.config.max_missed_feedback) and receiving:
                    raise HeartbeatLostError(msg + " and its heartbeat stopped", node_id=node_id)
                if fb.missed >= self.config.max_missed_feedback:
                    if silent:
                        raise HeartbeatLostError(msg + " and its heartbeat stopped", node_id=node_id)
                    raise CommTimeoutError(
                        f"{msg} (max_missed_feedback {self.config.max_missed_feedback} at "
                        f"{self.config.fps:g} Hz, feedback_timeout_s {self.config.feedback_timeout_s} s)"
                    )
                continue
            fb.missed = 0
            state = cia402.decode_statusword(fb.statusword)
            if state is not cia402.State.OPERATION_ENABLED:
                if fb.emcy is not None:
                    raise fb.emcy
                raise DriveFaultError(
                    f"drive {node_id} on {self.device} is in {state.value}", node_id=node_id
                )
        return np.array([self._fb[i].position for i in self._ids])

    def step(self, targets: np.ndarray, ticks: int = 1) -> ArmState:
        """One tick: RPDO targets, SYNC, TPDO feedback. Raises after a safe stop on any fault, a command
        outside the limits included; `ticks`: control ticks since the last command."""
        if self.stop_record is not None:
            raise BusStoppedError(
                f"{self.config.name} on {self.device} is stopped ({self.stop_record.reason.value})"
            )
        if not self._connected:
            raise TransportError(f"{self.config.name} on {self.device} is not connected")
        self.tick += 1
        targets = np.asarray(targets, dtype=np.float64).reshape(-1)
        if targets.shape != self._cpr.shape or not np.all(np.isfinite(targets)):
            err = InvalidCommandError(f"{self.config.name}: bad command {targets.tolist()}")
            self.safe_stop(StopReason.NAN, str(err))
            raise err
        problem = self.check_command(targets, ticks)
        if problem is not None:
            err = InvalidCommandError(f"{self.config.name} on {self.device}: {problem}")
            self.safe_stop(StopReason.LIMIT, str(err))
            raise err
        try:
            self._health(time.monotonic())
            command = targets
            with self._cond:
                self._seq += 1
                self._arrived = 0
            self._send_cyclic(cia402.CW_ENABLE_OPERATION, self.to_counts(command))
            with self._cond:
                done = self._cond.wait_for(
                    lambda: self._arrived >= len(self._ids), self.config.feedback_timeout_s
                )
                self._latency[self.tick % LATENCY_RING] = self._t_all - self._t_sync if done else np.nan
            counts = self._collect()
        except BridgeError as err:
            self.safe_stop(_reason_for(err), str(err))
            raise
        except Exception as err:  # python-can send errors
            self.safe_stop(StopReason.COMM_LOSS, str(err))
            raise TransportError(f"CAN bus {self.device}: {err}") from err
        self.last_command = command
        self.state = ArmState(self.from_counts(counts), np.zeros(len(self._ids)), time.monotonic(), self.tick)
        return self.state

    # --- stopping ---------------------------------------------------------------------------------------
    def safe_stop(self, reason: StopReason | str, detail: str = "") -> StopRecord:
        """Hold at the last actual position, wait `hold_s`, disable voltage if configured. Idempotent."""
        if self.stop_record is not None:
            return self.stop_record
        why, text = split_reason(reason)
        detail = detail or text  # the log line and the record always carry what happened
        self.stop_record = StopRecord(why, detail or str(reason), self.tick, time.monotonic())
        (log.error if why.is_fault else log.info)(
            "%s: safe stop (%s) %s", self.config.name, why.value, detail
        )
        if not self._connected:
            return self.stop_record
        hold = np.array([self._fb[i].position for i in self._ids])
        try:
            self._send_cyclic(cia402.CW_ENABLE_OPERATION, hold)
            if self.config.hold_s:
                time.sleep(self.config.hold_s)
            if self.config.torque_off_on_stop:
                self._send_cyclic(cia402.CW_DISABLE_VOLTAGE, hold)
        except Exception as err:
            log.error("%s: safe stop could not reach %s: %s", self.config.name, self.device, err)
        return self.stop_record

    def _shutdown_network(self) -> None:
        if self._heartbeat_task is not None:  # the drives' consumers now time out: their 0x6007 reaction
            try:
                self._heartbeat_task.stop()
            except Exception as err:
                log.warning("stopping the host heartbeat on %s: %s", self.device, err)
            self._heartbeat_task = None
        if self.network is not None:
            try:
                self.network.disconnect()
            except Exception as err:  # a bus that already failed
                log.warning("closing %s: %s", self.device, err)
            self.network = None

    def disconnect(self) -> None:
        if self._connected and self.stop_record is None:
            self.safe_stop(StopReason.END, "disconnect")
        if self._connected and self.tick:
            st = self.feedback_latency_stats()
            log.info(
                "%s: TPDO latency over %d ticks: p50 %.2f ms, p99 %.2f ms, max %.2f ms; %.1f %% of ticks "
                "past feedback_timeout_s = %g s",
                self.config.name,
                st["ticks"],
                st["p50_ms"],
                st["p99_ms"],
                st["max_ms"],
                100 * st["late"],
                self.config.feedback_timeout_s,
            )
        self._connected = False
        self._shutdown_network()


def _reason_for(err: BridgeError) -> StopReason:
    if isinstance(err, HeartbeatLostError):
        return StopReason.HEARTBEAT_LOSS
    if isinstance(err, (EmergencyError, DriveFaultError)):
        return StopReason.EMCY
    if isinstance(err, (CommTimeoutError, TransportError)):
        return StopReason.COMM_LOSS
    return StopReason.ERROR
