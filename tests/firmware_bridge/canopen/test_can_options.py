"""Every python-can bus argument from the robot YAML (`can_options`) and `rt-run --can-option` (issue 11).

The udp_multicast `port` across two processes is in test_can_multicast_netns.py."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest
from edgeact.firmware_bridge.config import CONFIG_DIR, load_robot_config
from edgeact.firmware_bridge.errors import BridgeConfigError
from edgeact.firmware_bridge.transport import open_can_bus
from edgeact.runtime.cli import build_parser
from edgeact.runtime.robots.can_arm import make_can_arm

_n = itertools.count()


def _yaml(tmp_path, extra: str) -> str:
    text = (CONFIG_DIR / "can_arm.yaml").read_text()
    path = tmp_path / "arm.yaml"
    path.write_text(text.replace("can_options: {}", extra))
    return str(path)


def test_yaml_can_options_reach_python_can(tmp_path):
    cfg = load_robot_config(_yaml(tmp_path, "can_options: {receive_own_messages: true}"))
    assert cfg.can_options == {"receive_own_messages": True}
    import can

    bus = open_can_bus("virtual", f"test-can-options-{next(_n)}", cfg.bitrate, **cfg.can_options)
    try:  # receive_own_messages (a python-can argument) took effect: the bus hears itself
        bus.send(can.Message(arbitration_id=0x123, data=b"\x01", is_extended_id=False))
        got = bus.recv(1.0)
        assert got is not None and got.arbitration_id == 0x123
    finally:
        bus.shutdown()


@pytest.mark.parametrize("key", ["interface", "channel", "bitrate"])
def test_can_options_refuse_the_fields_they_would_shadow(tmp_path, key):
    with pytest.raises(BridgeConfigError, match=f"can_options .*'{key}'"):
        load_robot_config(_yaml(tmp_path, f"can_options: {{{key}: 1}}"))


def test_flag_options_add_to_and_override_the_yaml(tmp_path):
    path = _yaml(tmp_path, "can_options: {fd: true, port: 43113}")
    robot = make_can_arm(path, camera="synthetic", can_options={"port": 43114, "data_bitrate": 2000000})
    assert robot.config.can_options == {"fd": True, "port": 43114, "data_bitrate": 2000000}


def test_rt_run_parses_can_options():
    args = build_parser().parse_args(
        ["--model", "p.onnx", "--can-option", "port=43114", "--can-option", "fd=true", "--can-option", "x=a"]
    )
    assert dict(args.can_option) == {"port": 43114, "fd": True, "x": "a"}


def test_bitrate_and_options_are_overridable_like_any_field():
    cfg = load_robot_config("can_arm", bitrate=500_000, can_options={"fd": True})
    assert cfg.bitrate == 500_000 and cfg.can_options == {"fd": True}
    assert replace(cfg, can_options={}).can_options == {}
