"""Importing LeRobot ACT checkpoints: a folder written here with LeRobot's names, shapes and file layout, and
(marked `lerobot`) one written by the real `lerobot` package, compared chunk for chunk."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from edgeact.train.config import ACTConfig
from edgeact.train.lerobot_import import LeRobotImportError, import_lerobot_act
from edgeact.train.model import ACTPolicy
from safetensors.torch import save_file

D, FF, K, LAT, S, A = 32, 48, 6, 8, 3, 2  # tiny sizes
H, W = 32, 40
N_ENC, N_DEC, N_VAE = 2, 1, 1


def _resnet18_shapes() -> dict[str, tuple[int, ...]]:
    """torchvision resnet18 names and shapes up to layer4, with frozen batch norm buffers (no fc)."""
    shapes: dict[str, tuple[int, ...]] = {"conv1.weight": (64, 3, 7, 7)}

    def bn(prefix: str, c: int) -> None:
        for stat in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.{stat}"] = (c,)

    bn("bn1", 64)
    cin = 64
    for layer, cout in enumerate((64, 128, 256, 512), start=1):
        for block in range(2):
            p = f"layer{layer}.{block}"
            shapes[f"{p}.conv1.weight"] = (cout, cin if block == 0 else cout, 3, 3)
            bn(f"{p}.bn1", cout)
            shapes[f"{p}.conv2.weight"] = (cout, cout, 3, 3)
            bn(f"{p}.bn2", cout)
            if block == 0 and layer > 1:
                shapes[f"{p}.downsample.0.weight"] = (cout, cin, 1, 1)
                bn(f"{p}.downsample.1", cout)
        cin = cout
    return shapes


def _layer_shapes(prefix: str, decoder: bool) -> dict[str, tuple[int, ...]]:
    shapes = {}
    attns = ("self_attn", "multihead_attn") if decoder else ("self_attn",)
    for attn in attns:
        shapes[f"{prefix}.{attn}.in_proj_weight"] = (3 * D, D)
        shapes[f"{prefix}.{attn}.in_proj_bias"] = (3 * D,)
        shapes[f"{prefix}.{attn}.out_proj.weight"] = (D, D)
        shapes[f"{prefix}.{attn}.out_proj.bias"] = (D,)
    shapes.update({f"{prefix}.linear1.weight": (FF, D), f"{prefix}.linear1.bias": (FF,)})
    shapes.update({f"{prefix}.linear2.weight": (D, FF), f"{prefix}.linear2.bias": (D,)})
    for norm in ("norm1", "norm2", "norm3") if decoder else ("norm1", "norm2"):
        shapes.update({f"{prefix}.{norm}.weight": (D,), f"{prefix}.{norm}.bias": (D,)})
    return shapes


def lerobot_act_shapes() -> dict[str, tuple[int, ...]]:
    """LeRobot ACTPolicy state-dict names and shapes for one camera, state S, action A, VAE on, post-norm."""
    shapes: dict[str, tuple[int, ...]] = {}
    for i in range(N_VAE):
        shapes.update(_layer_shapes(f"model.vae_encoder.layers.{i}", decoder=False))
    shapes["model.vae_encoder_cls_embed.weight"] = (1, D)
    shapes.update({"model.vae_encoder_robot_state_input_proj.weight": (D, S)})
    shapes.update({"model.vae_encoder_robot_state_input_proj.bias": (D,)})
    shapes.update(
        {
            "model.vae_encoder_action_input_proj.weight": (D, A),
            "model.vae_encoder_action_input_proj.bias": (D,),
        }
    )
    shapes.update({"model.vae_encoder_latent_output_proj.weight": (2 * LAT, D)})
    shapes.update({"model.vae_encoder_latent_output_proj.bias": (2 * LAT,)})
    shapes["model.vae_encoder_pos_enc"] = (1, 2 + K, D)
    shapes.update({f"model.backbone.{k}": v for k, v in _resnet18_shapes().items()})
    for i in range(N_ENC):
        shapes.update(_layer_shapes(f"model.encoder.layers.{i}", decoder=False))
    for i in range(N_DEC):
        shapes.update(_layer_shapes(f"model.decoder.layers.{i}", decoder=True))
    shapes.update({"model.decoder.norm.weight": (D,), "model.decoder.norm.bias": (D,)})
    shapes.update({"model.encoder_robot_state_input_proj.weight": (D, S)})
    shapes.update({"model.encoder_robot_state_input_proj.bias": (D,)})
    shapes.update(
        {"model.encoder_latent_input_proj.weight": (D, LAT), "model.encoder_latent_input_proj.bias": (D,)}
    )
    shapes.update({"model.encoder_img_feat_input_proj.weight": (D, 512, 1, 1)})
    shapes.update({"model.encoder_img_feat_input_proj.bias": (D,)})
    shapes["model.encoder_1d_feature_pos_embed.weight"] = (2, D)
    shapes["model.decoder_pos_embed.weight"] = (K, D)
    shapes.update({"model.action_head.weight": (A, D), "model.action_head.bias": (A,)})
    return shapes


def lerobot_config(**overrides) -> dict:
    cfg = {
        "type": "act",
        "n_obs_steps": 1,
        "normalization_mapping": {"VISUAL": "MEAN_STD", "STATE": "MIN_MAX", "ACTION": "MEAN_STD"},
        "input_features": {
            "observation.image": {"type": "VISUAL", "shape": [3, H, W]},
            "observation.state": {"type": "STATE", "shape": [S]},
        },
        "output_features": {"action": {"type": "ACTION", "shape": [A]}},
        "device": "cpu",
        "use_amp": False,
        "chunk_size": K,
        "n_action_steps": K,
        "vision_backbone": "resnet18",
        "pretrained_backbone_weights": "ResNet18_Weights.IMAGENET1K_V1",
        "replace_final_stride_with_dilation": False,
        "pre_norm": False,
        "dim_model": D,
        "n_heads": 4,
        "dim_feedforward": FF,
        "feedforward_activation": "relu",
        "n_encoder_layers": N_ENC,
        "n_decoder_layers": N_DEC,
        "use_vae": True,
        "latent_dim": LAT,
        "n_vae_encoder_layers": N_VAE,
        "temporal_ensemble_coeff": None,
        "dropout": 0.1,
        "kl_weight": 10.0,
        "optimizer_lr": 1e-5,
        "optimizer_weight_decay": 1e-4,
        "optimizer_lr_backbone": 1e-5,
    }
    cfg.update(overrides)
    return cfg


STATS = {
    "observation.image": {"mean": [[[0.4]], [[0.5]], [[0.6]]], "std": [[[0.2]], [[0.25]], [[0.3]]]},
    "observation.state": {
        "mean": [1.0, 2.0, 3.0],
        "std": [1.0, 1.0, 1.0],
        "min": [-5, 0, 10],
        "max": [5, 20, 30],
    },
    "action": {"mean": [100.0, -50.0], "std": [30.0, 20.0], "min": [0, -100], "max": [200, 0]},
}


def lerobot_weights() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    weights = {}
    for name, shape in lerobot_act_shapes().items():
        t = torch.randn(shape, generator=gen) * 0.1
        weights[name] = t.abs() + 0.5 if name.endswith("running_var") else t
    return weights


def write_lerobot_folder(
    folder: Path, weights: dict[str, torch.Tensor], *, old_buffers: bool = False, stats: dict | None = None
) -> None:
    """config.json, train_config.json, model.safetensors and the processor files, as LeRobot lays them out."""
    weights = dict(weights)
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(lerobot_config()))
    train_cfg = {"env": {"type": "pusht", "fps": 10}, "dataset": {"repo_id": "lerobot/pusht"}}
    (folder / "train_config.json").write_text(json.dumps(train_cfg))
    flat = {
        f"{k}.{s}": torch.tensor(v, dtype=torch.float32)
        for k, d in (stats or STATS).items()
        for s, v in d.items()
    }
    if old_buffers:  # LeRobot before the processors kept the statistics in the model's buffers
        for key, value in flat.items():
            feature, stat = key.rsplit(".", 1)
            group = "unnormalize_outputs" if feature == "action" else "normalize_inputs"
            weights[f"{group}.buffer_{feature.replace('.', '_')}.{stat}"] = value
    else:
        post = {k: v for k, v in flat.items() if k.startswith("action")}
        save_file(flat, str(folder / "policy_preprocessor_step_3_normalizer_processor.safetensors"))
        save_file(post, str(folder / "policy_postprocessor_step_0_unnormalizer_processor.safetensors"))
    save_file(weights, str(folder / "model.safetensors"))


@pytest.fixture(scope="module")
def weights() -> dict[str, torch.Tensor]:
    return lerobot_weights()


@pytest.fixture(scope="module")
def lerobot_folder(tmp_path_factory, weights) -> Path:
    folder = tmp_path_factory.mktemp("lerobot") / "pretrained_model"
    write_lerobot_folder(folder, weights)
    return folder


def variant(src: Path, dst: Path, **cfg_overrides) -> Path:
    """A copy of `src` (files linked) with config.json fields overridden."""
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).symlink_to(f)
    (dst / "config.json").unlink()
    (dst / "config.json").write_text(json.dumps(lerobot_config(**cfg_overrides)))
    return dst


def sample_inputs(b: int = 2):
    gen = torch.Generator().manual_seed(3)
    image = torch.randint(0, 256, (b, 3, H, W), dtype=torch.uint8, generator=gen)
    state = torch.randn(b, S, generator=gen) * 4
    return {"observation.image": image}, state


def test_lerobot_state_dict_maps_onto_ours(tmp_path, weights, lerobot_folder):
    checkpoint = pytest.importorskip("edgeact.train.checkpoint")
    step_dir = import_lerobot_act(lerobot_folder, tmp_path / "run")
    policy, doc = checkpoint.load_policy(tmp_path / "run")
    ours = policy.state_dict()
    model_keys = {k for k in ours if k.startswith("model.")}
    assert model_keys == set(weights)  # no missing, no unexpected: the mapping is the identity
    for key, value in weights.items():
        assert torch.equal(ours[key], value), key
    assert doc["policy"]["execution_mode"] == "chunk" and doc["policy"]["pretrained_backbone_weights"] is None
    assert doc["dataset"]["fps"] == 10.0 and doc["dataset"]["id"] == "lerobot/pusht"
    assert step_dir.name == "000000"

    # Identical outputs to a policy assembled in memory from the same weights and stats.
    cfg = ACTConfig.from_dict(doc["policy"])
    direct = ACTPolicy(cfg, doc["dataset"]["features"], doc["dataset"]["stats"]).eval()
    direct.load_state_dict(weights, strict=False)
    images, state = sample_inputs()
    with torch.no_grad():
        assert torch.equal(policy.predict_chunk(images, state), direct.predict_chunk(images, state))

    # LeRobot's normalization formulas, applied by the imported buffers.
    st = STATS["observation.state"]
    lo, hi = torch.tensor(st["min"], dtype=torch.float32), torch.tensor(st["max"], dtype=torch.float32)
    got = policy.normalize.normalize("observation.state", state)
    torch.testing.assert_close(got, 2 * (state - lo) / (hi - lo) - 1)
    img_mean = torch.tensor([0.4, 0.5, 0.6]).view(1, 3, 1, 1)
    img_std = torch.tensor([0.2, 0.25, 0.3]).view(1, 3, 1, 1)
    want = (images["observation.image"].float() / 255 - img_mean) / img_std
    torch.testing.assert_close(policy.normalize.image("observation.image", images["observation.image"]), want)
    act = STATS["action"]
    y = torch.randn(2, K, A)
    want = y * torch.tensor(act["std"]) + torch.tensor(act["mean"])
    torch.testing.assert_close(policy.normalize.unnormalize("action", y), want)


def test_pre_processor_era_buffers_and_ensembling(tmp_path, weights):
    pytest.importorskip("edgeact.train.checkpoint")
    write_lerobot_folder(tmp_path / "old", weights, old_buffers=True)
    folder = variant(tmp_path / "old", tmp_path / "pm", temporal_ensemble_coeff=0.02, n_action_steps=1)
    step_dir = import_lerobot_act(folder, tmp_path / "run", step=1234)
    doc = json.loads((step_dir / "config.json").read_text())
    assert doc["policy"]["execution_mode"] == "ensemble" and doc["policy"]["temporal_ensemble_coeff"] == 0.02
    np.testing.assert_allclose(doc["dataset"]["stats"]["observation.state"]["mean"], [0.0, 10.0, 20.0])
    np.testing.assert_allclose(doc["dataset"]["stats"]["observation.state"]["std"], [5.0, 10.0, 10.0])
    np.testing.assert_allclose(doc["dataset"]["stats"]["action"]["std"], [30.0, 20.0])
    assert step_dir.name == "001234"


def test_import_errors_name_the_problem(tmp_path, weights, lerobot_folder):
    pytest.importorskip("edgeact.train.checkpoint")
    pm = variant(lerobot_folder, tmp_path / "pm")
    (pm / "model.safetensors").unlink()
    save_file(
        {k: v for k, v in weights.items() if k != "model.decoder_pos_embed.weight"},
        str(pm / "model.safetensors"),
    )
    with pytest.raises(LeRobotImportError, match=r"missing \['model\.decoder_pos_embed\.weight'\]"):
        import_lerobot_act(pm, tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoints" / "last").exists()

    wide = variant(lerobot_folder, tmp_path / "wide", dim_feedforward=2 * FF)
    with pytest.raises(LeRobotImportError, match=r"wrong shapes.*linear1\.weight"):
        import_lerobot_act(wide, tmp_path / "run")
    for field, value in (("vision_backbone", "resnet50"), ("type", "diffusion"), ("dim_model", 30)):
        with pytest.raises(LeRobotImportError, match=field if field != "type" else "not 'act'"):
            import_lerobot_act(variant(lerobot_folder, tmp_path / field, **{field: value}), tmp_path / "run")
    mapping = {"VISUAL": "MEAN_STD", "STATE": "QUANTILES", "ACTION": "MEAN_STD"}
    with pytest.raises(LeRobotImportError, match=r"QUANTILES.*observation\.state"):
        import_lerobot_act(
            variant(lerobot_folder, tmp_path / "q", normalization_mapping=mapping), tmp_path / "run"
        )

    no_fps = variant(lerobot_folder, tmp_path / "no_fps")
    (no_fps / "train_config.json").unlink()
    with pytest.raises(LeRobotImportError, match="control rate"):
        import_lerobot_act(no_fps, tmp_path / "run")
    import_lerobot_act(no_fps, tmp_path / "run", fps=30)
    with pytest.raises(LeRobotImportError, match="already holds a checkpoint"):
        import_lerobot_act(no_fps, tmp_path / "run", fps=30)


def _info_json(path: Path) -> Path:
    """A LeRobot v2.1 meta/info.json as datasets write it: camera names in (height, width, channel) order."""
    path.parent.mkdir(parents=True, exist_ok=True)
    features = {
        "observation.image": {"dtype": "video", "shape": [H, W, 3], "names": ["height", "width", "channel"]},
        "observation.state": {"dtype": "float32", "shape": [S], "names": {"motors": ["x", "y", "z"]}},
        "action": {"dtype": "float32", "shape": [A], "names": ["vx", "vy"]},
    }
    path.write_text(json.dumps({"codebase_version": "v2.1", "fps": 10, "features": features}))
    return path


def test_joint_names_from_info_json_or_the_dataset(tmp_path, lerobot_folder, monkeypatch, caplog):
    """Issue 12: `--features info.json` crashed on a real info.json (image names applied to a CHW shape);
    without it, names come from the training dataset's metadata when present, else the warning says how."""
    from edgeact.export.artifact import spec_from_checkpoint_config
    from edgeact.train.lerobot_import import main

    info = _info_json(tmp_path / "ds" / "meta" / "info.json")
    assert main([str(lerobot_folder), str(tmp_path / "a"), "--features", str(info)]) == 0
    doc = json.loads((tmp_path / "a" / "checkpoints" / "last" / "config.json").read_text())
    spec = spec_from_checkpoint_config(doc)
    assert (spec.state_names, spec.action_names) == (("x", "y", "z"), ("vx", "vy"))
    assert [(c.height, c.width, c.channels) for c in spec.cameras] == [(H, W, 3)]

    monkeypatch.setenv("HF_LEROBOT_HOME", str(tmp_path / "home"))
    with caplog.at_level("WARNING"):
        import_lerobot_act(lerobot_folder, tmp_path / "b")
    assert "pass --features <dataset>/meta/info.json" in caplog.text and "lerobot/pusht" in caplog.text
    _info_json(tmp_path / "home" / "lerobot" / "pusht" / "meta" / "info.json")
    step = import_lerobot_act(lerobot_folder, tmp_path / "c")
    spec = spec_from_checkpoint_config(json.loads((step / "config.json").read_text()))
    assert (spec.state_names, spec.action_names) == (("x", "y", "z"), ("vx", "vy"))

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"features": {"action": {"shape": [7], "names": ["a"] * 7}}}))
    with pytest.raises(LeRobotImportError, match=r"--features: features\['action'\]\.names does not hold 2"):
        import_lerobot_act(lerobot_folder, tmp_path / "d", features=json.loads(bad.read_text())["features"])


def test_lerobot_normalization_edge_cases(tmp_path, weights):
    """Issue 12, matching LeRobot's processors: MIN_MAX of a constant dimension maps it to -1 (not 0);
    a feature without statistics is passed through; a negative temporal_ensemble_coeff is kept."""
    pytest.importorskip("edgeact.train.checkpoint")
    from edgeact.train.checkpoint import load_policy

    stats = {k: dict(v) for k, v in STATS.items()}
    stats["observation.state"] = {**stats["observation.state"], "min": [-5, 7, 10], "max": [5, 7, 30]}
    del stats["action"]  # no action statistics at all
    write_lerobot_folder(tmp_path / "lr", weights, stats=stats)
    folder = variant(tmp_path / "lr", tmp_path / "pm", temporal_ensemble_coeff=-0.05)
    import_lerobot_act(folder, tmp_path / "run")
    policy, doc = load_policy(tmp_path / "run")
    assert doc["policy"]["execution_mode"] == "ensemble" and doc["policy"]["temporal_ensemble_coeff"] == -0.05
    state = torch.tensor([[0.0, 7.0, 20.0]])
    got = policy.normalize.normalize("observation.state", state)
    torch.testing.assert_close(got, torch.tensor([[0.0, -1.0, 0.0]]), atol=1e-4, rtol=0)
    y = torch.randn(1, K, A)
    torch.testing.assert_close(policy.normalize.unnormalize("action", y), y)  # passed through
    with pytest.raises(LeRobotImportError, match=r"temporal_ensemble_coeff: -100.*chunk_size 6"):
        import_lerobot_act(
            variant(tmp_path / "lr", tmp_path / "neg", temporal_ensemble_coeff=-100), tmp_path / "x"
        )
    with pytest.raises(LeRobotImportError, match=r"'resnet34' is not implemented here.*resnet18"):
        import_lerobot_act(
            variant(tmp_path / "lr", tmp_path / "r34", vision_backbone="resnet34"), tmp_path / "y"
        )


# ------------------------------------------------------------------------------------------ the real package
def _import_lerobot_act():
    """LeRobot's ACT needs torchvision's ResNet; REFERENCE section 7 explains the operator schemas."""
    from edgeact.train.lerobot_import import ensure_torchvision_importable

    ensure_torchvision_importable()
    from lerobot.configs.types import FeatureType, NormalizationMode, PolicyFeature
    from lerobot.policies.act.configuration_act import ACTConfig as LeRobotACTConfig
    from lerobot.policies.act.modeling_act import ACTPolicy as LeRobotACTPolicy
    from lerobot.policies.factory import make_pre_post_processors

    return (
        FeatureType,
        NormalizationMode,
        PolicyFeature,
        LeRobotACTConfig,
        LeRobotACTPolicy,
        make_pre_post_processors,
    )


@pytest.mark.lerobot
def test_real_lerobot_act_gives_identical_chunks(tmp_path):
    FeatureType, NormMode, PolicyFeature, LRConfig, LRPolicy, make_processors = _import_lerobot_act()
    checkpoint = pytest.importorskip("edgeact.train.checkpoint")
    cfg = LRConfig(
        input_features={
            "observation.image": PolicyFeature(type=FeatureType.VISUAL, shape=(3, H, W)),
            "observation.state": PolicyFeature(type=FeatureType.STATE, shape=(S,)),
        },
        output_features={"action": PolicyFeature(type=FeatureType.ACTION, shape=(A,))},
        normalization_mapping={
            "VISUAL": NormMode.MEAN_STD,
            "STATE": NormMode.MIN_MAX,
            "ACTION": NormMode.MEAN_STD,
        },
        chunk_size=K,
        n_action_steps=K,
        dim_model=D,
        n_heads=4,
        dim_feedforward=FF,
        n_encoder_layers=N_ENC,
        n_decoder_layers=N_DEC,
        n_vae_encoder_layers=N_VAE,
        latent_dim=LAT,
        pretrained_backbone_weights=None,
        device="cpu",
    )
    torch.manual_seed(0)
    lr_policy = LRPolicy(cfg).eval()
    stats = {k: {s: np.asarray(v, dtype=np.float32) for s, v in d.items()} for k, d in STATS.items()}
    pre, post = make_processors(cfg, dataset_stats=stats)
    folder = tmp_path / "pretrained_model"
    lr_policy.save_pretrained(folder)
    pre.save_pretrained(folder)
    post.save_pretrained(folder)

    import_lerobot_act(folder, tmp_path / "run", fps=10)
    ours, _ = checkpoint.load_policy(tmp_path / "run")
    images, state = sample_inputs()
    with torch.no_grad():
        batch = pre(
            {"observation.image": images["observation.image"].float() / 255, "observation.state": state}
        )
        want = post(lr_policy.predict_action_chunk(batch))
        got = ours.predict_chunk(images, state)
    assert got.shape == want.shape == (2, K, A)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-5)
