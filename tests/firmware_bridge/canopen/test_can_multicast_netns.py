"""The CAN arm and the drive emulator in two processes over python-can's `udp_multicast` interface.

Multicast never leaves a private network namespace that this test creates (loopback only, with a route for
239.0.0.0/8 on `lo`); the test is skipped when namespaces cannot be created (no root or no iproute2).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.netns
pytest.importorskip("msgpack", reason="python-can's udp_multicast interface needs msgpack")
GROUP = "239.74.163.2"
PORT = 43121  # not python-can's default (43113): both sides must get it from their options to talk

HOST = textwrap.dedent(
    f"""
    import json, time, numpy as np
    from dataclasses import replace
    from edgeact.firmware_bridge.canopen.arm import CanArm
    from edgeact.firmware_bridge.errors import BridgeError
    from edgeact.firmware_bridge.sim.scenarios import can_test_config
    cfg = replace(can_test_config("{GROUP}"), interface="udp_multicast", fps=100.0, feedback_timeout_s=0.05,
                  max_missed_feedback=5, heartbeat_timeout_s=0.5,  # two processes on a busy machine
                  can_options={{"port": {PORT}}})
    arm = CanArm(cfg)
    t0 = time.monotonic()
    arm.connect()
    connect_s = time.monotonic() - t0
    ticks, err = 0, None
    t_end = time.monotonic() + 12.0
    while time.monotonic() < t_end:
        try:
            state = arm.step(np.minimum(arm.last_command + arm.step_limits, 0.1))  # within max_step
            ticks += 1
        except BridgeError as exc:
            err = f"{{type(exc).__name__}}: {{exc}}"
            break
        time.sleep(0.01)
    reason = arm.stop_record and arm.stop_record.reason.value
    print(json.dumps({{"ticks": ticks, "error": err, "reason": reason, "position": float(state.positions[0]),
                      "connect_s": connect_s}}))
    arm.disconnect()
    """
)


def test_drive_in_another_process_over_udp_multicast(netns):
    in_ns = ["ip", "netns", "exec", netns, sys.executable]
    drives = subprocess.Popen(
        [*in_ns, "-m", "edgeact.firmware_bridge.sim.cia402_drive", "--interface", "udp_multicast",
         "--channel", GROUP, "--nodes", "1-6", "--duration", "20", "--fault-after", "8",
         "--bus-option", f"port={PORT}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert drives.stdout.readline().startswith("drives [1, 2, 3, 4, 5, 6]")
        host = subprocess.run([*in_ns, "-c", HOST], capture_output=True, text=True, timeout=60)
    finally:
        drives.kill()
        drives.communicate()
    assert host.returncode == 0, host.stderr
    result = json.loads(host.stdout.strip().splitlines()[-1])
    assert result["ticks"] > 20, result  # CSP streaming worked across processes
    assert result["position"] == pytest.approx(0.1, abs=1e-3)
    assert result["reason"] == "emcy", result  # the emulator's injected fault reached the host as an EMCY
