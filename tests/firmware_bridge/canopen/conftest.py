"""Fixtures of the CANopen tests: a private network namespace for python-can's `udp_multicast` interface.

Multicast never leaves the namespace (loopback only, with a route for 239.0.0.0/8 on `lo`); tests using it
are skipped when namespaces cannot be created (no root or no iproute2).
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess

import pytest

_ns = itertools.count()


@pytest.fixture
def netns():
    name = f"edgeact-fb-{os.getpid()}-{next(_ns)}"
    if shutil.which("ip") is None:
        pytest.skip("iproute2 (ip) is not installed: cannot create a private network namespace")
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot create a network namespace ({made.stderr.strip()}); needs root")
    try:
        for cmd in (
            ["ip", "link", "set", "lo", "up"],
            ["ip", "link", "set", "lo", "multicast", "on"],
            ["ip", "route", "add", "239.0.0.0/8", "dev", "lo"],
        ):
            subprocess.run(["ip", "netns", "exec", name, *cmd], check=True, capture_output=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
