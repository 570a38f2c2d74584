"""ACT's parts: config validation, ResNet18 backbone and frozen batch norm, normalizer, position embeddings,
feature parsing errors, and a clean ONNX export of `predict_chunk`."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from edgeact.train.act_layers import Dropout, sine_pos_embed_1d, sine_pos_embed_2d
from edgeact.train.backbone import FrozenBatchNorm2d, ResNet18Backbone, load_resnet18_weights
from edgeact.train.config import ACTConfig
from edgeact.train.model import ACTPolicy, PolicyFeatureError, parse_features
from edgeact.train.normalize import Normalizer
from safetensors.torch import save_file
from test_model import inputs, make_batch, make_features, make_policy, make_stats


def test_config_defaults_follow_the_paper():
    cfg = ACTConfig()
    assert (cfg.chunk_size, cfg.dim_model, cfg.n_heads, cfg.dim_feedforward) == (100, 512, 8, 3200)
    assert (cfg.n_encoder_layers, cfg.n_decoder_layers, cfg.n_vae_encoder_layers, cfg.latent_dim) == (
        4,
        1,
        4,
        32,
    )
    assert (cfg.dropout, cfg.kl_weight, cfg.pre_norm, cfg.feedforward_activation) == (
        0.1,
        10.0,
        False,
        "relu",
    )
    assert (cfg.execution_mode, cfg.temporal_ensemble_coeff, cfg.use_vae) == ("ensemble", 0.01, True)
    assert ACTConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    ("overrides", "field", "value"),
    [
        ({"chunk_size": 0}, "chunk_size", "0"),
        ({"dim_model": 30, "n_heads": 5}, "dim_model", "30"),
        ({"dim_model": 36, "n_heads": 8}, "n_heads", "8"),
        ({"n_action_steps": 101}, "n_action_steps", "101"),
        ({"dropout": 1.0}, "dropout", "1.0"),
        ({"kl_weight": -1.0}, "kl_weight", "-1.0"),
        ({"temporal_ensemble_coeff": float("nan")}, "temporal_ensemble_coeff", "nan"),
        ({"execution_mode": "sometimes"}, "execution_mode", "sometimes"),
        ({"feedforward_activation": "tanh"}, "feedforward_activation", "tanh"),
        ({"vision_backbone": "resnet50"}, "vision_backbone", "resnet50"),
        ({"use_vae": "yes"}, "use_vae", "yes"),
        ({"n_obs_steps": 2}, "n_obs_steps", "2"),
        ({"n_heads": True}, "n_heads", "True"),
    ],
)
def test_config_errors_name_field_and_value(overrides, field, value):
    with pytest.raises(ValueError, match=field) as info:
        ACTConfig(**overrides)
    assert value in str(info.value)


def test_config_from_dict_rejects_unknown_fields():
    with pytest.raises(ValueError, match="dim_modle"):
        ACTConfig.from_dict({"dim_modle": 256})


def test_backbone_feature_sizes_and_dilation():
    torch.manual_seed(0)
    for dilation, expected in ((False, (3, 3)), (True, (6, 6))):
        net = ResNet18Backbone(replace_final_stride_with_dilation=dilation).eval()
        with torch.no_grad():
            out = net(torch.randn(1, 3, 96, 96))
        assert out.shape == (1, 512, *expected)
        assert net.feature_size(96, 96) == expected
    net = ResNet18Backbone()
    for h, w in ((130, 170), (97, 33), (1, 1)):
        with torch.no_grad():
            out = net(torch.randn(1, 3, h, w))
        assert tuple(out.shape[-2:]) == net.feature_size(h, w)
    assert sum(p.numel() for p in net.parameters()) == 11_166_912  # torchvision resnet18 minus BN and fc


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_dropout_keeps_1_minus_p_scales_and_backpropagates_through_the_mask(dtype):
    drop = Dropout(0.25)
    x = torch.full((200, 100), 3.0, dtype=dtype, requires_grad=True)
    torch.manual_seed(3)
    y = drop(x)
    kept = y != 0
    assert y.dtype == dtype and torch.all(y[kept] == 4.0)  # 3 / (1 - 0.25)
    assert abs(kept.float().mean().item() - 0.75) < 0.01  # 20000 draws: 4 sigma is 0.012
    y.sum().backward()
    assert torch.equal(x.grad, kept.to(dtype) * 4.0 / 3.0 * 1.0)  # d(x * keep / 0.75) / dx
    torch.manual_seed(3)
    assert torch.equal(drop(x), y)  # the seeded generator decides the mask
    drop.eval()
    assert drop(x) is x
    assert torch.equal(Dropout(0.0).train()(x), x)


def test_frozen_batch_norm_equals_eval_batch_norm():
    torch.manual_seed(0)
    bn = torch.nn.BatchNorm2d(5).eval()
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2)
        bn.bias.normal_()
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 3)
    frozen = FrozenBatchNorm2d(5)
    frozen.load_state_dict(bn.state_dict())  # the step counter num_batches_tracked is dropped
    x = torch.randn(2, 5, 4, 4)
    torch.testing.assert_close(frozen(x), bn(x))
    assert list(frozen.parameters()) == []
    frozen.train()
    frozen(x * 10)
    torch.testing.assert_close(frozen.running_mean, bn.running_mean)  # statistics never move


def test_load_torchvision_format_weights(tmp_path):
    torch.manual_seed(0)
    src = ResNet18Backbone()
    state = {k: v.clone() for k, v in src.state_dict().items()}
    for k in list(state):
        if k.endswith("running_var"):
            state[k] = torch.rand_like(state[k]) + 0.5
            state[k.replace("running_var", "num_batches_tracked")] = torch.tensor(7)
    state["fc.weight"] = torch.zeros(1000, 512)
    state["fc.bias"] = torch.zeros(1000)
    path = tmp_path / "resnet18.safetensors"
    save_file(state, str(path))
    dst = ResNet18Backbone()
    load_resnet18_weights(dst, path)
    for k, v in dst.state_dict().items():
        assert torch.equal(v, state[k]), k
    del state["layer4.1.conv2.weight"]
    save_file(state, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ValueError, match=r"bad\.safetensors.*layer4\.1\.conv2\.weight"):
        load_resnet18_weights(dst, tmp_path / "bad.safetensors")
    with pytest.raises(ValueError, match="no such file"):
        load_resnet18_weights(dst, tmp_path / "absent.safetensors")
    cfg = ACTConfig(
        chunk_size=4, dim_model=32, n_heads=4, dim_feedforward=32, pretrained_backbone_weights=str(path)
    )
    feats = make_features()
    policy = ACTPolicy(cfg, feats, make_stats(feats))
    assert torch.equal(policy.model.backbone.layer1[0].bn1.running_var, state["layer1.0.bn1.running_var"])
    path.unlink()  # a checkpoint loader restores every weight itself and need not find the file
    restored = ACTPolicy(cfg, feats, None, load_pretrained_backbone=False)
    restored.load_state_dict(policy.state_dict())
    assert torch.equal(restored.model.backbone.conv1.weight, state["conv1.weight"])


def test_normalizer_formulas_and_buffers():
    stats = {
        "observation.image": {"mean": [[[0.1]], [[0.2]], [[0.3]]], "std": [[[0.5]], [[0.25]], [[0.125]]]},
        "action": {"mean": [10.0, -4.0], "std": [2.0, 0.5]},
    }
    norm = Normalizer({"observation.image": 3}, {"action": 2}, stats)
    assert sorted(norm.state_dict()) == [
        "action.mean",
        "action.std",
        "observation_image.mean",
        "observation_image.std",
    ]
    frames = torch.randint(0, 256, (2, 3, 4, 5), dtype=torch.uint8)
    expected = (
        frames.double() / 255 - torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1).double()
    ) / torch.tensor([0.5, 0.25, 0.125]).view(1, 3, 1, 1).double()
    torch.testing.assert_close(
        norm.image("observation.image", frames).double(), expected, rtol=1e-6, atol=1e-6
    )
    x = torch.tensor([[12.0, -3.0]])
    torch.testing.assert_close(norm.normalize("action", x), torch.tensor([[1.0, 2.0]]))
    torch.testing.assert_close(norm.unnormalize("action", norm.normalize("action", x)), x)
    cl = frames.contiguous(memory_format=torch.channels_last)
    assert norm.image("observation.image", cl).is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize(
    ("stats", "pattern"),
    [
        (
            {"action": {"mean": [0.0], "std": [1.0, 1.0]}},
            r"stats\['action'\]\['mean'\]: expected 2 values, got 1",
        ),
        ({"action": {"mean": [0.0, 0.0]}}, r"stats\['action'\]: missing 'std'"),
        ({"action": {"mean": [0.0, float("nan")], "std": [1, 1]}}, r"\['action'\]\['mean'\]: non-finite"),
        ({"action": {"mean": [0.0, 0.0], "std": [1, -1]}}, r"\['action'\]\['std'\]: negative"),
        ({}, r"no entry for feature 'action'"),
    ],
)
def test_normalizer_errors_name_feature_and_field(stats, pattern):
    with pytest.raises(PolicyFeatureError, match=pattern):
        Normalizer({}, {"action": 2}, stats)


@pytest.mark.parametrize(
    ("features", "pattern"),
    [
        ({"observation.state": {"shape": [2]}}, "no 'action' feature"),
        ({"action": {"shape": [2]}}, "no camera"),
        ({"action": {"shape": [2, 3]}, "observation.state": {"shape": [2]}}, r"features\['action'\]\.shape"),
        ({"action": {"shape": [2]}, "observation.image": {"shape": [96, 96, 1]}}, "3 channels, got 1"),
        ({"action": {"shape": [2]}, "observation.images.top": {"shape": [96, 96]}}, r"images\.top.*3 dims"),
    ],
)
def test_feature_errors(features, pattern):
    with pytest.raises(PolicyFeatureError, match=pattern):
        parse_features(features)


def test_feature_layouts():
    io = parse_features(
        {
            "observation.images.a": {"shape": [48, 64, 3], "names": ["height", "width", "channels"]},
            "observation.images.b": {"shape": [3, 48, 64], "names": ["channels", "height", "width"]},
            "observation.images.c": {"shape": [48, 64, 3]},
            "action": {"shape": [7]},
        }
    )
    assert list(io.image_shapes.values()) == [(3, 48, 64)] * 3
    assert (io.state_dim, io.env_state_dim, io.action_dim) == (None, None, 7)


def test_sine_2d_embedding_matches_the_formula():
    h, w, d = 3, 4, 16
    emb = sine_pos_embed_2d(h, w, d)
    assert emb.shape == (h * w, 1, d)
    half = d // 2
    for i in range(h):
        for j in range(w):
            token = emb[i * w + j, 0].double().numpy()
            for axis_pos, n, offset in (((i + 1), h, 0), ((j + 1), w, half)):
                angle_base = axis_pos / (n + 1e-6) * 2 * math.pi
                for c in range(half):
                    angle = angle_base / 10000 ** (2 * (c // 2) / half)
                    want = math.sin(angle) if c % 2 == 0 else math.cos(angle)
                    assert abs(token[offset + c] - want) < 1e-5, (i, j, offset + c)


def test_sine_1d_table():
    table = sine_pos_embed_1d(5, 6).numpy()
    pos, ch = np.meshgrid(np.arange(5), np.arange(6), indexing="ij")
    angle = pos / np.power(10000.0, 2 * (ch // 2) / 6)
    np.testing.assert_allclose(table, np.where(ch % 2 == 0, np.sin(angle), np.cos(angle)), atol=1e-6)


class _ExportWrapper(torch.nn.Module):
    def __init__(self, policy: ACTPolicy) -> None:
        super().__init__()
        self.policy = policy

    def forward(self, image: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        return self.policy.predict_chunk({"observation.image": image}, state)


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_predict_chunk_exports_to_onnx(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    feats = make_features()
    policy = make_policy(features=feats).eval()
    batch = make_batch(feats, b=1)
    image, state = inputs(policy, batch)[0]["observation.image"], batch["observation.state"]
    path = tmp_path / "act.onnx"
    torch.onnx.export(
        _ExportWrapper(policy).eval(), (image, state), str(path), input_names=["image", "state"], dynamo=True
    )
    model = onnx.load(str(path))
    ops = {n.op_type for n in model.graph.node}
    assert not ops & {"If", "Loop", "Scan"}  # no data-dependent control flow
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"image": image.numpy(), "state": state.numpy()})[0]
    with torch.no_grad():
        want = policy.predict_chunk({"observation.image": image}, state).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_dropout_probability_is_p_on_a_16_bit_grid_and_unbiased():
    x = torch.ones(400_000)
    torch.manual_seed(0)
    y = Dropout(0.1).train()(x)
    keep = 58982 / 65536  # round(0.9 * 65536) of the 65536 16-bit values
    assert abs((y == 0).float().mean().item() - 0.1) < 0.002  # 4 sigma
    assert torch.allclose(y[y != 0], torch.tensor(1.0 / keep))  # E[y] = x exactly, not 0.99999 x
    lanes = (y == 0).view(-1, 4).float().mean(0)  # the four 16-bit numbers of one 64-bit draw
    assert torch.all((lanes - 0.1).abs() < 0.004)
