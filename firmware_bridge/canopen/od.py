"""The CiA 402 objects the bridge uses, as a `canopen` ObjectDictionary built in code.

Real drives ship an EDS file (pass its path instead); the emulator and tests use `make_cia402_od(node_id)`,
which holds exactly the objects of CiA 301 / CiA 402 that bring-up and cyclic synchronous position mode need.
Indexes and COB-IDs: REFERENCE section 4 (CiA 301 predefined connection set, CiA 402 drive profile).
"""

from __future__ import annotations

import struct
from typing import Any

# CiA 301 communication objects
DEVICE_TYPE = 0x1000
ERROR_REGISTER = 0x1001
COMM_CYCLE_PERIOD = 0x1006  # SYNC period in microseconds
HEARTBEAT_CONSUMER = 0x1016  # ARRAY of UNSIGNED32: node id << 16 | consumer time in ms (CiA 301, 1016h)
HEARTBEAT_PRODUCER = 0x1017  # ms
RPDO1_COMM, RPDO1_MAP = 0x1400, 0x1600
TPDO1_COMM, TPDO1_MAP = 0x1800, 0x1A00
# CiA 402 drive profile objects
ABORT_CONNECTION_OPTION = 0x6007  # INTEGER16: reaction to a heartbeat/guarding loss (CiA 402, 6007h)
ERROR_CODE = 0x603F
CONTROLWORD = 0x6040
STATUSWORD = 0x6041
MODES_OF_OPERATION = 0x6060
MODES_DISPLAY = 0x6061
POSITION_ACTUAL = 0x6064
FOLLOWING_ERROR_WINDOW = 0x6065
TARGET_POSITION = 0x607A
MAX_PROFILE_VELOCITY = 0x607F  # UNSIGNED32, velocity units (CiA 402, 607Fh); CSP targets must respect it
FOLLOWING_ERROR_ACTUAL = 0x60F4
INTERPOLATION_PERIOD = 0x60C2  # sub 1 value, sub 2 exponent (-3 = ms)
MODE_PROFILE_POSITION = 1
MODE_CSP = 8
DEVICE_TYPE_SERVO = 0x00020192  # CiA 402, servo drive

# Abort connection option codes (CiA 402, object 6007h; -32768..-1 manufacturer-specific, 4..32767 reserved)
ABORT_NO_ACTION = 0
ABORT_FAULT_SIGNAL = 1  # the drive goes to Fault (fault reaction per 605Eh)
ABORT_DISABLE_VOLTAGE = 2  # as a controlword "disable voltage": Switch On Disabled (power stage off)
ABORT_QUICK_STOP = 3  # as a controlword "quick stop": Quick Stop Active (ramp per 605Ah)
ABORT_OPTIONS = {
    ABORT_NO_ACTION: "no action",
    ABORT_FAULT_SIGNAL: "fault signal",
    ABORT_DISABLE_VOLTAGE: "disable voltage",
    ABORT_QUICK_STOP: "quick stop",
}

# Emergency error codes (CiA 301 EMCY error code table; CiA 402 drive-specific codes)
EMCY_HEARTBEAT = 0x8130  # life guard error or heartbeat error
EMCY_FOLLOWING_ERROR = 0x8611  # CiA 402: following error
EMCY_OVERCURRENT = 0x2310

# COB-ID bases (CiA 301 predefined connection set)
NMT_ID, SYNC_ID, EMCY_BASE = 0x000, 0x080, 0x080
TPDO1_BASE, RPDO1_BASE = 0x180, 0x200
SDO_RX_BASE, SDO_TX_BASE, HEARTBEAT_BASE = 0x600, 0x580, 0x700

# PDO layouts the bridge maps (little endian, CiA 301 "PDO mapping"):
RPDO1 = struct.Struct("<Hi")  # controlword (0x6040, 16 bit), target position (0x607A, 32 bit)
TPDO1 = struct.Struct("<Hi")  # statusword (0x6041, 16 bit), position actual (0x6064, 32 bit)
RPDO1_MAPPING = ((CONTROLWORD, 0, 16), (TARGET_POSITION, 0, 32))
TPDO1_MAPPING = ((STATUSWORD, 0, 16), (POSITION_ACTUAL, 0, 32))
SYNC_TRANSMISSION = 1  # transmission type: on every SYNC


def mapping_entry(index: int, subindex: int, bits: int) -> int:
    return index << 16 | subindex << 8 | bits


def decode_tpdo1(data: bytes | bytearray) -> tuple[int, int] | None:
    """(statusword, position actual) from a TPDO1 frame, or None when it is shorter than the mapping.

    Decoded by the mapped length (6 bytes): a drive that pads its TPDOs to DLC 8 (common) is accepted and
    the padding ignored (CiA 301: a PDO at least as long as its mapping is processed, extra bytes unused).
    """
    if len(data) < TPDO1.size:
        return None
    return TPDO1.unpack_from(data)


def heartbeat_consumer_entry(node_id: int, time_ms: int) -> int:
    """A 1016h sub-entry (CiA 301): bits 31..24 reserved (0), 23..16 the producer's node id, 15..0 the
    consumer time in ms. Node id 0 or time 0 means the entry is unused."""
    if not 0 <= node_id <= 127 or not 0 <= time_ms <= 0xFFFF:
        raise ValueError(f"1016h entry: node id {node_id} (0..127), time {time_ms} ms (0..65535)")
    return node_id << 16 | time_ms


def parse_heartbeat_consumer_entry(value: int) -> tuple[int, int]:
    """(producer node id, consumer time ms) of a 1016h sub-entry; the reserved byte is ignored."""
    return (value >> 16) & 0xFF, value & 0xFFFF


def _var(od_mod: Any, name: str, index: int, sub: int, dtype: int, access: str, default: int) -> Any:
    var = od_mod.ODVariable(name, index, sub)
    var.data_type, var.access_type, var.default = dtype, access, default
    var.pdo_mappable = index >= 0x6000
    return var


def _pdo_records(od: Any, odm: Any, node_id: int, comm: int, mapping: int, cob: int, kind: str) -> None:
    rec = odm.ODRecord(f"{kind} communication parameter", comm)
    rec.add_member(_var(odm, "Highest sub-index supported", comm, 0, odm.UNSIGNED8, "const", 5))
    rec.add_member(_var(odm, "COB-ID", comm, 1, odm.UNSIGNED32, "rw", cob + node_id))
    rec.add_member(_var(odm, "Transmission type", comm, 2, odm.UNSIGNED8, "rw", 0xFF))
    rec.add_member(_var(odm, "Inhibit time", comm, 3, odm.UNSIGNED16, "rw", 0))
    rec.add_member(_var(odm, "Event timer", comm, 5, odm.UNSIGNED16, "rw", 0))
    od.add_object(rec)
    arr = odm.ODRecord(f"{kind} mapping parameter", mapping)
    arr.add_member(_var(odm, "Number of mapped objects", mapping, 0, odm.UNSIGNED8, "rw", 0))
    for sub in range(1, 9):
        arr.add_member(_var(odm, f"Mapped object {sub}", mapping, sub, odm.UNSIGNED32, "rw", 0))
    od.add_object(arr)


def make_cia402_od(node_id: int) -> Any:
    """A canopen ObjectDictionary with the CiA 301/402 objects used by the bridge."""
    from edgeact.firmware_bridge.canopen.cia402 import import_canopen

    canopen = import_canopen()
    odm = canopen.objectdictionary
    od = odm.ObjectDictionary()
    od.node_id = node_id
    for name, index, dtype, access, default in (
        ("Device type", DEVICE_TYPE, odm.UNSIGNED32, "ro", DEVICE_TYPE_SERVO),
        ("Error register", ERROR_REGISTER, odm.UNSIGNED8, "ro", 0),
        ("Communication cycle period", COMM_CYCLE_PERIOD, odm.UNSIGNED32, "rw", 0),
        ("Producer heartbeat time", HEARTBEAT_PRODUCER, odm.UNSIGNED16, "rw", 0),
        ("Abort connection option code", ABORT_CONNECTION_OPTION, odm.INTEGER16, "rw", ABORT_FAULT_SIGNAL),
        ("Error code", ERROR_CODE, odm.UNSIGNED16, "ro", 0),
        ("Controlword", CONTROLWORD, odm.UNSIGNED16, "rw", 0),
        ("Statusword", STATUSWORD, odm.UNSIGNED16, "ro", 0),
        ("Modes of operation", MODES_OF_OPERATION, odm.INTEGER8, "rw", 0),
        ("Modes of operation display", MODES_DISPLAY, odm.INTEGER8, "ro", 0),
        ("Position actual value", POSITION_ACTUAL, odm.INTEGER32, "ro", 0),
        ("Following error window", FOLLOWING_ERROR_WINDOW, odm.UNSIGNED32, "rw", 0),
        ("Target position", TARGET_POSITION, odm.INTEGER32, "rw", 0),
        ("Max profile velocity", MAX_PROFILE_VELOCITY, odm.UNSIGNED32, "rw", 0xFFFFFFFF),
        ("Following error actual value", FOLLOWING_ERROR_ACTUAL, odm.INTEGER32, "ro", 0),
    ):
        od.add_object(_var(odm, name, index, 0, dtype, access, default))
    interp = odm.ODRecord("Interpolation time period", INTERPOLATION_PERIOD)
    interp.add_member(
        _var(odm, "Highest sub-index supported", INTERPOLATION_PERIOD, 0, odm.UNSIGNED8, "const", 2)
    )
    interp.add_member(
        _var(odm, "Interpolation time period value", INTERPOLATION_PERIOD, 1, odm.UNSIGNED8, "rw", 1)
    )
    interp.add_member(_var(odm, "Interpolation time index", INTERPOLATION_PERIOD, 2, odm.INTEGER8, "rw", -3))
    od.add_object(interp)
    consumer = odm.ODArray("Consumer heartbeat time", HEARTBEAT_CONSUMER)
    consumer.add_member(
        _var(odm, "Highest sub-index supported", HEARTBEAT_CONSUMER, 0, odm.UNSIGNED8, "const", 1)
    )
    consumer.add_member(_var(odm, "Consumer heartbeat time", HEARTBEAT_CONSUMER, 1, odm.UNSIGNED32, "rw", 0))
    od.add_object(consumer)
    _pdo_records(od, odm, node_id, RPDO1_COMM, RPDO1_MAP, RPDO1_BASE, "RPDO1")
    _pdo_records(od, odm, node_id, TPDO1_COMM, TPDO1_MAP, TPDO1_BASE, "TPDO1")
    return od
