"""ACTPolicy on tiny configs: shapes, masked loss, KL term, zero latent, determinism, cameras, VAE off."""

from __future__ import annotations

import copy

import pytest
import torch
from edgeact.train.backbone import FrozenBatchNorm2d
from edgeact.train.config import ACTConfig
from edgeact.train.model import ACTPolicy, PolicyFeatureError

K = 6  # chunk size of the tiny configs


def tiny_config(**overrides) -> ACTConfig:
    base = dict(
        chunk_size=K,
        dim_model=32,
        n_heads=4,
        dim_feedforward=48,
        n_encoder_layers=2,
        n_vae_encoder_layers=1,
        latent_dim=8,
        dropout=0.0,
    )
    base.update(overrides)
    return ACTConfig(**base)


def make_features(cameras=("observation.image",), size=(32, 40), state=3, env_state=None, action=2):
    feats: dict = {}
    for cam in cameras:
        feats[cam] = {"dtype": "video", "shape": [*size, 3], "names": ["height", "width", "channel"]}
    if state:
        feats["observation.state"] = {"dtype": "float32", "shape": [state]}
    if env_state:
        feats["observation.environment_state"] = {"dtype": "float32", "shape": [env_state]}
    feats["action"] = {"dtype": "float32", "shape": [action]}
    feats["timestamp"] = {"dtype": "float32", "shape": [1]}  # ignored by the policy
    return feats


def make_stats(features) -> dict:
    gen = torch.Generator().manual_seed(1)
    stats = {}
    for key, f in features.items():
        if key == "timestamp":
            continue
        n = 3 if key.startswith("observation.image") else f["shape"][0]
        mean = torch.rand(n, generator=gen) * (0.5 if n == 3 and "image" in key else 100.0)
        std = 0.1 + torch.rand(n, generator=gen) * (0.3 if "image" in key else 50.0)
        stats[key] = {"mean": mean.tolist(), "std": std.tolist(), "min": [0.0] * n, "max": [1.0] * n}
    return stats


def make_batch(features, b=2, seed=0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    batch = {}
    for key, f in features.items():
        if key.startswith("observation.image"):
            h, w, _ = f["shape"]
            batch[key] = torch.randint(0, 256, (b, 3, h, w), dtype=torch.uint8, generator=gen)
        elif key == "action":
            batch[key] = torch.randn(b, K, f["shape"][0], generator=gen) * 50 + 20
        elif key.startswith("observation."):
            batch[key] = torch.randn(b, f["shape"][0], generator=gen) * 50 + 20
    batch["action_is_pad"] = torch.zeros(b, K, dtype=torch.bool)
    return batch


def make_policy(config=None, features=None, seed=0) -> ACTPolicy:
    torch.manual_seed(seed)
    features = features or make_features()
    return ACTPolicy(config or tiny_config(), features, make_stats(features))


def inputs(policy: ACTPolicy, batch):
    images = {k: batch[k] for k in policy.image_keys}
    return images, batch.get("observation.state"), batch.get("observation.environment_state")


def test_shapes_and_raw_units():
    feats = make_features()
    policy = make_policy(features=feats)
    batch = make_batch(feats, b=3)
    loss, parts = policy(batch)
    assert loss.shape == () and torch.isfinite(loss)
    assert set(parts) == {"l1", "kld"} and not parts["l1"].requires_grad
    policy.eval()
    with torch.no_grad():
        chunk = policy.predict_chunk(*inputs(policy, batch))
    assert chunk.shape == (3, K, 2) and chunk.dtype == torch.float32
    # With a zero action head the normalized prediction is 0, so the raw-unit output is the action mean.
    with torch.no_grad():
        policy.model.action_head.weight.zero_()
        policy.model.action_head.bias.zero_()
        chunk = policy.predict_chunk(*inputs(policy, batch))
    mean = torch.tensor(make_stats(feats)["action"]["mean"])
    torch.testing.assert_close(chunk, mean.expand(3, K, 2))


def test_padded_steps_do_not_change_the_loss():
    feats = make_features()
    policy = make_policy(features=feats).train()
    batch = make_batch(feats)
    batch["action_is_pad"][:, 4:] = True
    torch.manual_seed(5)
    loss_a, parts_a = policy(batch)
    changed = dict(batch)
    changed["action"] = batch["action"].clone()
    changed["action"][:, 4:] = 1e4  # garbage where the episode has ended
    torch.manual_seed(5)
    loss_b, parts_b = policy(changed)
    torch.testing.assert_close(loss_a, loss_b)
    torch.testing.assert_close(parts_a["kld"], parts_b["kld"])  # the CVAE encoder ignores padded steps too
    # ...whereas the same change on unpadded steps does change it.
    changed["action_is_pad"] = torch.zeros_like(batch["action_is_pad"])
    torch.manual_seed(5)
    loss_c, _ = policy(changed)
    assert not torch.allclose(loss_a, loss_c)


def test_kl_term_matches_closed_form_and_weight():
    feats = make_features()
    policy = make_policy(tiny_config(kl_weight=3.5), feats).train()
    captured = {}
    handle = policy.model.vae_encoder_latent_output_proj.register_forward_hook(
        lambda m, i, out: captured.__setitem__("params", out.detach())
    )
    loss, parts = policy(make_batch(feats))
    handle.remove()
    mu, log_var = captured["params"].chunk(2, dim=-1)
    posterior = torch.distributions.Normal(mu, (0.5 * log_var).exp())
    prior = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    expected = torch.distributions.kl_divergence(posterior, prior).sum(-1).mean()
    torch.testing.assert_close(parts["kld"], expected)
    assert parts["kld"] > 0
    torch.testing.assert_close(loss.detach(), parts["l1"] + 3.5 * parts["kld"])


def test_zero_latent_at_inference_and_eval_determinism():
    feats = make_features()
    policy = make_policy(tiny_config(dropout=0.3), feats)
    seen = []
    policy.model.encoder_latent_input_proj.register_forward_hook(lambda m, i, out: seen.append(i[0].detach()))
    batch = make_batch(feats)
    policy.train()
    policy(batch)
    assert seen[-1].abs().sum() > 0  # training samples the posterior
    policy.eval()
    with torch.no_grad():
        a = policy.predict_chunk(*inputs(policy, batch))
        b = policy.predict_chunk(*inputs(policy, batch))
        _, parts = policy(batch)
    assert torch.equal(seen[-2], torch.zeros_like(seen[-2]))
    assert torch.equal(seen[-1], torch.zeros_like(seen[-1]))  # eval-mode loss uses the prior mean too
    assert parts["kld"] == 0
    assert torch.equal(a, b)
    policy.train()  # dropout 0.3 makes training-mode outputs differ between calls
    with torch.no_grad():
        c, _, _ = policy.model(*policy._normalized_inputs(*inputs(policy, batch)))
        d, _, _ = policy.model(*policy._normalized_inputs(*inputs(policy, batch)))
    assert not torch.equal(c, d)


def test_frozen_batch_norm_stays_frozen_through_training():
    feats = make_features()
    policy = make_policy(features=feats).train()
    bns = [m for m in policy.modules() if isinstance(m, FrozenBatchNorm2d)]
    assert len(bns) == 20  # bn1 + 2 per block x 8 blocks + 3 downsample norms
    param_ids = {id(p) for p in policy.parameters()}
    assert not any(id(t) in param_ids for bn in bns for t in bn.buffers())
    before = copy.deepcopy([dict(bn.state_dict()) for bn in bns])
    conv_before = policy.model.backbone.conv1.weight.detach().clone()
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-2)
    loss, _ = policy(make_batch(feats))
    loss.backward()
    opt.step()
    for bn, old in zip(bns, before, strict=True):
        for name, value in bn.state_dict().items():
            assert torch.equal(value, old[name]), name
    assert not torch.equal(conv_before, policy.model.backbone.conv1.weight)  # the convolutions do train


def test_multiple_cameras_share_one_backbone():
    feats = make_features(cameras=("observation.images.top", "observation.images.wrist"))
    policy = make_policy(features=feats).eval()
    assert policy.image_keys == ["observation.images.top", "observation.images.wrist"]
    batch = make_batch(feats)
    with torch.no_grad():
        base = policy.predict_chunk(*inputs(policy, batch))
        swapped = dict(batch)
        swapped["observation.images.wrist"] = batch["observation.images.top"]
        other = policy.predict_chunk(*inputs(policy, swapped))
        # Batched backbone call == one call per camera.
        imgs, _, _ = policy._normalized_inputs(*inputs(policy, batch))
        tokens, pos = policy.model._image_tokens(imgs)
        single = torch.cat([policy.model._image_tokens([img])[0] for img in imgs], dim=0)
    assert not torch.allclose(base, other)
    torch.testing.assert_close(tokens, single, rtol=1e-5, atol=1e-5)
    assert tokens.shape == (2 * 1 * 2, 2, 32)  # 32x40 -> 1x2 feature map per camera
    assert pos.shape == (4, 1, 32)
    assert sum(1 for k in policy.state_dict() if k.startswith("model.backbone.conv1")) == 1


def test_cameras_of_different_sizes():
    feats = make_features(cameras=("observation.images.a",), size=(64, 64))
    feats["observation.images.b"] = {"dtype": "image", "shape": [3, 32, 48]}  # channel-first declaration
    policy = make_policy(features=feats).eval()
    batch = make_batch(make_features(cameras=("observation.images.a",), size=(64, 64)))
    batch["observation.images.b"] = torch.randint(0, 256, (2, 3, 32, 48), dtype=torch.uint8)
    with torch.no_grad():
        out = policy.predict_chunk(*inputs(policy, batch))
    assert out.shape == (2, K, 2) and torch.isfinite(out).all()


@pytest.mark.parametrize("with_env", [False, True])
def test_state_only_policy(with_env):
    feats = make_features(cameras=(), state=4, env_state=5 if with_env else None)
    policy = make_policy(features=feats)
    assert not hasattr(policy.model, "backbone")
    batch = make_batch(feats)
    loss, _ = policy(batch)
    loss.backward()
    policy.eval()
    with torch.no_grad():
        out = policy.predict_chunk({}, batch["observation.state"], batch.get("observation.environment_state"))
    assert out.shape == (2, K, 2)
    assert policy.model.encoder_1d_feature_pos_embed.weight.shape[0] == (3 if with_env else 2)


def test_env_state_only_and_missing_input_errors():
    feats = make_features(cameras=(), state=None, env_state=5)
    policy = make_policy(features=feats).eval()
    batch = make_batch(feats)
    with torch.no_grad():
        out = policy.predict_chunk({}, env_state=batch["observation.environment_state"])
    assert out.shape == (2, K, 2)
    assert policy.model.vae_encoder_pos_enc.shape == (1, 1 + K, 32)  # [CLS, actions]: no state token
    with pytest.raises(PolicyFeatureError, match=r"observation\.environment_state"):
        policy.predict_chunk({})
    cam_policy = make_policy(features=make_features())
    with pytest.raises(PolicyFeatureError, match=r"observation\.image"):
        cam_policy.predict_chunk({}, torch.zeros(1, 3))


def test_use_vae_false():
    feats = make_features()
    policy = make_policy(tiny_config(use_vae=False), feats).train()
    assert not any(k.startswith("model.vae_encoder") for k in policy.state_dict())
    loss, parts = policy(make_batch(feats))
    assert parts["kld"] == 0
    torch.testing.assert_close(loss.detach(), parts["l1"])


def test_state_dict_round_trip_without_stats():
    feats = make_features()
    policy = make_policy(features=feats).eval()
    fresh = ACTPolicy(policy.config, feats, stats=None).eval()  # what a checkpoint loader builds
    missing, unexpected = fresh.load_state_dict(policy.state_dict(), strict=True)
    assert not missing and not unexpected
    batch = make_batch(feats)
    with torch.no_grad():
        torch.testing.assert_close(
            fresh.predict_chunk(*inputs(fresh, batch)), policy.predict_chunk(*inputs(policy, batch))
        )
    cfg_dict = policy.config.to_dict()
    assert ACTPolicy.from_stats(cfg_dict, feats, make_stats(feats)).config == policy.config


def test_channels_last_and_bf16_autocast():
    feats = make_features()
    policy = make_policy(features=feats).train()
    batch = make_batch(feats)
    torch.manual_seed(3)
    ref_loss, _ = policy(batch)
    policy.to(memory_format=torch.channels_last)
    cl_batch = dict(batch)
    cl_batch["observation.image"] = batch["observation.image"].contiguous(memory_format=torch.channels_last)
    torch.manual_seed(3)
    cl_loss, _ = policy(cl_batch)
    torch.testing.assert_close(cl_loss, ref_loss, rtol=1e-4, atol=1e-4)
    torch.manual_seed(3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf_loss, _ = policy(cl_batch)
    assert bf_loss.dtype == torch.float32
    assert abs(bf_loss.item() - ref_loss.item()) < 0.05 * ref_loss.item()
    bf_loss.backward()
    assert policy.model.action_head.weight.grad is not None


def test_wrong_chunk_length_and_missing_action():
    feats = make_features()
    policy = make_policy(features=feats)
    batch = make_batch(feats)
    batch["action"] = batch["action"][:, :3]
    with pytest.raises(PolicyFeatureError, match="chunk_size"):
        policy(batch)
    del batch["action"]
    with pytest.raises(PolicyFeatureError, match="action"):
        policy(batch)
