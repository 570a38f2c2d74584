"""RuntimeConfig: defaults, shipped YAML, overrides, and errors that name the field and file."""

from __future__ import annotations

from pathlib import Path

import pytest
from edgeact.runtime.config import RuntimeConfig, RuntimeConfigError, load_runtime_config


def test_shipped_pusht_config_and_overrides() -> None:
    cfg = load_runtime_config("pusht-sim", episodes=3, seed=None)
    assert cfg.robot == "pusht-sim" and cfg.episodes == 3 and cfg.seed == 0
    assert cfg.max_episode_steps == 300
    assert cfg.spin_us == 200.0 and load_runtime_config(None, spin_us=0).spin_us == 0
    assert cfg.execution_overrides() == {}
    assert load_runtime_config(None, mode="chunk", n_action_steps=8).execution_overrides() == {
        "mode": "chunk",
        "n_action_steps": 8,
    }


def test_unknown_field_and_bad_values_are_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("robot: pusht-sim\nepisodez: 3\n")
    with pytest.raises(RuntimeConfigError, match=r"bad\.yaml: unknown field\(s\) \['episodez'\]"):
        load_runtime_config(bad)
    neg = tmp_path / "neg.yaml"
    neg.write_text("episodes: 0\n")
    with pytest.raises(RuntimeConfigError, match=r"RuntimeConfig\.episodes .* got 0 \(from .*neg\.yaml\)"):
        load_runtime_config(neg)
    with pytest.raises(RuntimeConfigError, match="mode"):
        RuntimeConfig(mode="fast")
    with pytest.raises(RuntimeConfigError, match=r"RuntimeConfig\.spin_us"):
        RuntimeConfig(spin_us=-5)
    with pytest.raises(RuntimeConfigError, match="no runtime config named 'nope'"):
        load_runtime_config("nope")
    with pytest.raises(RuntimeConfigError, match="does not exist"):
        load_runtime_config(tmp_path / "missing.yaml")


def test_yaml_is_loaded_safely(tmp_path: Path) -> None:
    evil = tmp_path / "evil.yaml"
    evil.write_text("robot: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(RuntimeConfigError, match="cannot read runtime config"):
        load_runtime_config(evil)
