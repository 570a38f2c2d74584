"""TrainConfig: defaults, YAML < CLI precedence, validation naming field and value, JSON round trip."""

from __future__ import annotations

import pytest
from edgeact.train.config import ACTConfig
from edgeact.train.train_config import (
    ConfigError,
    TrainConfig,
    config_from_dict,
    config_to_dict,
    default_config_file,
    load_train_config,
    overrides_to_dict,
)


def test_defaults_follow_the_act_reference():
    cfg = TrainConfig()
    assert (cfg.lr, cfg.lr_backbone, cfg.weight_decay, cfg.batch_size) == (1e-5, 1e-5, 1e-4, 8)
    assert cfg.policy == ACTConfig()
    assert cfg.policy.n_decoder_layers == 1 and cfg.policy.chunk_size == 100


def test_pusht_yaml_holds_overrides_and_cli_wins():
    path = default_config_file("pusht")
    assert path is not None and path.name == "act_pusht.yaml"
    cfg = load_train_config(dataset="pusht")
    assert (cfg.policy.chunk_size, cfg.policy.n_action_steps, cfg.policy.execution_mode) == (32, 16, "chunk")
    assert (cfg.batch_size, cfg.policy.n_decoder_layers) == (64, 7)
    assert cfg.policy.dim_model == 512  # not overridden: the reference default
    cfg = load_train_config(dataset="pusht", overrides=["policy.chunk_size=50", "lr=3e-5", "eval.episodes=3"])
    assert cfg.policy.chunk_size == 50 and cfg.lr == 3e-5 and cfg.eval.episodes == 3
    assert isinstance(cfg.lr, float)


def test_pusht_keypoints_yaml():
    cfg = load_train_config(dataset="pusht_keypoints")
    assert default_config_file("pusht_keypoints").name == "act_pusht_keypoints.yaml"
    assert cfg.dataset == "pusht_keypoints" and cfg.eval_every > 0 and cfg.scheduler == "cosine"
    assert (cfg.policy.dim_model, cfg.policy.chunk_size, cfg.policy.n_action_steps) == (128, 16, 8)


def test_config_file_then_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("steps: 5\nbatch_size: 2\npolicy:\n  dim_model: 64\n  n_heads: 4\n")
    cfg = load_train_config(config_file=f, overrides={"steps": 7})
    assert (cfg.steps, cfg.batch_size, cfg.policy.dim_model) == (7, 2, 64)


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("steps=0", "steps=0"),
        ("lr=-1", "lr=-1"),
        ("scheduler=linear", "scheduler='linear'"),
        ("device=tpu", "device='tpu'"),
        ("bf16=maybe", "bf16='maybe'"),
        ("eval.mode=async", "eval.mode='async'"),
        ("policy.dim_model=30", "dim_model"),
        ("nonsense=1", "nonsense"),
        ("policy.nonsense=1", "policy.nonsense"),
    ],
)
def test_bad_values_name_the_field(override, needle):
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(").replace(".", r"\.")):
        load_train_config(overrides=[override])


def test_bad_yaml_names_the_file(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("stepz: 5\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*stepz"):
        load_train_config(config_file=f)
    f.write_text("- a list\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml"):
        load_train_config(config_file=f)


def test_round_trip_and_override_parsing():
    cfg = load_train_config(overrides=["cameras=[top, wrist]", "episodes=[0, 2]", "eval.n_action_steps=8"])
    assert cfg.cameras == ["top", "wrist"] and cfg.episodes == [0, 2]
    assert config_from_dict(config_to_dict(cfg)) == cfg
    assert overrides_to_dict(["a.b=1", "a.c=x", "d=true"]) == {"a": {"b": 1, "c": "x"}, "d": True}
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        overrides_to_dict(["policy.chunk_size"])
