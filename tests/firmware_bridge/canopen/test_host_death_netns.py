"""Host death (issue 11): SIGKILL the process that streams to the drives; every drive must leave Operation
Enabled within its heartbeat consumer time (0x1016) plus a little, through its 0x6007 reaction.

The host and the emulated drives are two processes on python-can's `udp_multicast` interface inside a private
network namespace (fixture `netns` in conftest.py). The drive process prints one JSON line per CiA 402 state
change with its CLOCK_MONOTONIC time, which this process shares.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

pytestmark = pytest.mark.netns
pytest.importorskip("msgpack", reason="python-can's udp_multicast interface needs msgpack")
GROUP = "239.74.163.3"
HB_MS, HB_TIMEOUT_MS = 20, 100  # the shipped defaults (configs/robots/can_arm.yaml)
SLACK_S = 0.3  # two Python processes on a busy 2-core machine: scheduling, multicast loopback, 5 ms polling

HOST = textwrap.dedent(
    f"""
    import json, os, time, numpy as np
    from dataclasses import replace
    from edgeact.firmware_bridge.canopen.arm import CanArm
    from edgeact.firmware_bridge.sim.scenarios import can_test_config
    cfg = replace(can_test_config("{GROUP}"), interface="udp_multicast", fps=100.0, feedback_timeout_s=0.05,
                  max_missed_feedback=5, heartbeat_timeout_s=0.5, host_heartbeat_ms={HB_MS},
                  host_heartbeat_timeout_ms={HB_TIMEOUT_MS}, abort_connection_option=3)
    arm = CanArm(cfg)
    arm.connect()
    ticks = 0
    while True:  # until SIGKILL: no safe stop, no disconnect, nothing more on the bus
        arm.step(np.minimum(arm.last_command + arm.step_limits, 0.1))  # within max_step
        ticks += 1
        if ticks == 50:
            print(json.dumps({{"pid": os.getpid(), "ticks": ticks}}), flush=True)
        time.sleep(0.01)
    """
)


def _lines(stream, out: queue.Queue) -> None:
    for line in stream:
        out.put(line)


def test_sigkill_of_the_host_stops_every_drive(netns):
    in_ns = ["ip", "netns", "exec", netns, sys.executable]
    drives = subprocess.Popen(
        [*in_ns, "-m", "edgeact.firmware_bridge.sim.cia402_drive", "--interface", "udp_multicast",
         "--channel", GROUP, "--nodes", "1-6", "--duration", "60", "--report-states"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    host = None
    try:
        assert drives.stdout.readline().startswith("drives [1, 2, 3, 4, 5, 6]")
        states: queue.Queue = queue.Queue()
        threading.Thread(target=_lines, args=(drives.stdout, states), daemon=True).start()
        host = subprocess.Popen(
            [*in_ns, "-c", HOST], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        line = host.stdout.readline()
        assert line, host.communicate(timeout=10)[1]
        pid = json.loads(line)["pid"]
        t_kill = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        left: dict[int, float] = {}  # node -> when it left Operation Enabled
        enabled_at: dict[int, float] = {}
        deadline = time.monotonic() + HB_TIMEOUT_MS / 1000 + 5.0
        while len(left) < 6 and time.monotonic() < deadline:
            try:
                event = json.loads(states.get(timeout=0.1))
            except queue.Empty:
                continue
            if event["state"] == "OPERATION ENABLED":
                enabled_at[event["node"]] = event["t"]
            elif event["node"] in enabled_at and event["t"] > t_kill:
                left.setdefault(event["node"], event["t"] - t_kill)
    finally:
        if host is not None:
            host.kill()
            host.communicate()
        drives.kill()
        drives.communicate()
    assert sorted(enabled_at) == [1, 2, 3, 4, 5, 6], enabled_at  # all were streaming before the kill
    assert sorted(left) == [1, 2, 3, 4, 5, 6], f"still enabled after the kill: {set(range(1, 7)) - set(left)}"
    stop_s = max(left.values())
    print(f"drives left Operation Enabled {min(left.values()):.3f}..{stop_s:.3f} s after SIGKILL")
    # not before the consumer time (minus the period since the last heartbeat): it was the consumer that acted
    assert min(left.values()) >= (HB_TIMEOUT_MS - HB_MS) / 1000 - 0.005, left
    assert stop_s <= HB_TIMEOUT_MS / 1000 + SLACK_S, left
