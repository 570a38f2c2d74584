"""CiA 402 state machine: statusword table, and the host controlword path through the drive transitions."""

from __future__ import annotations

import pytest
from edgeact.firmware_bridge.canopen import cia402 as c
from edgeact.firmware_bridge.canopen import od as cod
from hypothesis import given, settings
from hypothesis import strategies as st

S = c.State


@pytest.mark.parametrize(
    ("word", "state"),
    [
        (0x0250, S.SWITCH_ON_DISABLED),
        (0x0231, S.READY_TO_SWITCH_ON),
        (0x0233, S.SWITCHED_ON),
        (0x1637, S.OPERATION_ENABLED),
        (0x0217, S.QUICK_STOP_ACTIVE),
        (0x0218, S.FAULT),
        (0x021F, S.FAULT_REACTION_ACTIVE),
        (0x0000, S.NOT_READY_TO_SWITCH_ON),
    ],
)
def test_statusword_decoding(word, state):
    assert c.decode_statusword(word) is state


@pytest.mark.parametrize("state", list(S))
def test_encode_decode_round_trip(state):
    assert c.decode_statusword(c.encode_statusword(state)) is state


def test_reference_bring_up_sequence():
    # Shutdown 0x06 -> Switch On 0x07 -> Enable Operation 0x0F (REFERENCE section 4)
    state, cw, seen = S.SWITCH_ON_DISABLED, 0, []
    while state is not S.OPERATION_ENABLED:
        new_cw = c.controlword_toward_enabled(state, cw)
        seen.append(new_cw)
        state, cw = c.drive_transition(state, new_cw, cw), new_cw
    assert seen == [0x06, 0x07, 0x0F]


def test_fault_reset_needs_a_rising_edge():
    assert c.drive_transition(S.FAULT, 0x80, 0x80) is S.FAULT
    assert c.drive_transition(S.FAULT, 0x80, 0x00) is S.SWITCH_ON_DISABLED


@settings(max_examples=80, deadline=None)
@given(st.sampled_from(list(S)), st.integers(0, 0xFFFF))
def test_host_reaches_operation_enabled_from_any_state(state, previous_cw):
    cw = previous_cw
    for _ in range(8):
        if state is S.OPERATION_ENABLED:
            break
        new_cw = c.controlword_toward_enabled(state, cw)
        state, cw = c.drive_transition(state, new_cw, cw), new_cw
    if state is S.FAULT_REACTION_ACTIVE:
        return  # the drive leaves it on its own; the host waits
    assert state is S.OPERATION_ENABLED


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 0xFFFF), st.integers(-(2**31), 2**31 - 1))
def test_pdo_layouts_round_trip(word, position):
    for layout in (cod.RPDO1, cod.TPDO1):
        assert layout.unpack(layout.pack(word, position)) == (word, position)
        assert layout.size == 6
    assert cod.mapping_entry(0x607A, 0, 32) == 0x607A0020
