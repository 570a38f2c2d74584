"""ACT (Action Chunking with Transformers, Zhao et al. RSS 2023, arXiv 2304.13705) as an `nn.Module`.

    policy = ACTPolicy(ACTConfig(), features, stats)  # info.json-style features, stats.json-style stats
    loss, parts = policy(batch)  # training batch: uint8 images, raw-unit state and actions
    chunk = policy.predict_chunk({"observation.image": frames_u8}, state)  # (B, chunk_size, A), raw units

Structure (names as in LeRobot's ACT so that its state dict maps onto `model.*` unchanged, docs/model.md):
- `model.backbone`: one ResNet18 shared by all cameras -> `model.encoder_img_feat_input_proj` (1x1 conv to
  dim_model); image tokens get the fixed 2-D sine position embedding.
- 1-D tokens [latent, state, env-state] from `model.encoder_latent_input_proj`, `..._robot_state_input_proj`,
  `..._env_state_input_proj`, with learned position embeddings `model.encoder_1d_feature_pos_embed`.
- `model.encoder` over [1-D tokens, image tokens]; `model.decoder` with `chunk_size` learned queries
  (`model.decoder_pos_embed`, decoder input zeros) -> `model.action_head`.
- CVAE: `model.vae_encoder` over [CLS, state, actions] -> mu and log-variance of the latent (training only);
  the latent is zero (the prior mean) at inference and in eval mode.
Normalization (`normalize.*` buffers) happens inside: images uint8 -> /255 -> per-channel mean/std; state and
action mean/std. The loss is computed on normalized actions.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import chain
from typing import Any

import torch
import torch.nn.functional as F
from edgeact.train.act_layers import ACTDecoder, ACTEncoder, sine_pos_embed_1d, sine_pos_embed_2d
from edgeact.train.backbone import ResNet18Backbone, load_resnet18_weights
from edgeact.train.config import ACTConfig
from edgeact.train.normalize import Normalizer, PolicyFeatureError
from torch import Tensor, nn

log = logging.getLogger(__name__)

STATE = "observation.state"
ENV_STATE = "observation.environment_state"
ACTION = "action"

__all__ = ["ACT", "ACTPolicy", "PolicyFeatureError", "PolicyIO", "parse_features"]


def is_camera_key(key: str) -> bool:
    return key == "observation.image" or key.startswith("observation.images.")


@dataclass(frozen=True)
class PolicyIO:
    """What the policy consumes and produces, read from the dataset features."""

    image_shapes: dict[str, tuple[int, int, int]]  # camera feature -> (C, H, W), in feature order
    state_dim: int | None
    env_state_dim: int | None
    action_dim: int

    @property
    def image_keys(self) -> list[str]:
        return list(self.image_shapes)


def _image_chw(key: str, feature: Mapping[str, Any]) -> tuple[int, int, int]:
    shape = [int(d) for d in feature.get("shape", [])]
    if len(shape) != 3:
        raise PolicyFeatureError(f"features[{key!r}].shape: expected 3 dims, got {shape}")
    names = feature.get("names")
    if isinstance(names, list) and len(names) == 3 and all(isinstance(n, str) for n in names):
        lower = [n.lower() for n in names]
        if {"height", "width"} <= set(lower):
            c_axis = next(i for i, n in enumerate(lower) if n not in ("height", "width"))
            return shape[c_axis], shape[lower.index("height")], shape[lower.index("width")]
    if shape[-1] in (1, 3, 4) and shape[0] not in (1, 3, 4):
        return shape[2], shape[0], shape[1]  # (H, W, C) as LeRobot's info.json writes it
    if shape[0] in (1, 3, 4):
        return shape[0], shape[1], shape[2]
    raise PolicyFeatureError(f"features[{key!r}].shape: cannot tell the channel axis of {shape}")


def _vector_dim(key: str, feature: Mapping[str, Any]) -> int:
    shape = [int(d) for d in feature.get("shape", [])]
    if len(shape) != 1 or shape[0] < 1:
        raise PolicyFeatureError(f"features[{key!r}].shape: expected a vector (D,), got {shape}")
    return shape[0]


def parse_features(features: Mapping[str, Mapping[str, Any]]) -> PolicyIO:
    """Cameras (`observation.image`, `observation.images.<cam>`), state, env-state and action sizes."""
    if ACTION not in features:
        raise PolicyFeatureError(f"features: no 'action' feature (have {sorted(features)})")
    images = {k: _image_chw(k, f) for k, f in features.items() if is_camera_key(k)}
    for key, (c, h, w) in images.items():
        if c != 3:
            raise PolicyFeatureError(f"features[{key!r}]: the ResNet18 backbone needs 3 channels, got {c}")
        if h < 1 or w < 1:
            raise PolicyFeatureError(f"features[{key!r}]: bad image size {h}x{w}")
    state = _vector_dim(STATE, features[STATE]) if STATE in features else None
    env = _vector_dim(ENV_STATE, features[ENV_STATE]) if ENV_STATE in features else None
    if not images and state is None and env is None:
        raise PolicyFeatureError(
            "features: no camera, 'observation.state' or 'observation.environment_state'"
        )
    return PolicyIO(images, state, env, _vector_dim(ACTION, features[ACTION]))


class ACT(nn.Module):
    """The network on normalized inputs: images (B, 3, H, W) float per camera, state (B, S) -> (B, k, A)."""

    def __init__(self, config: ACTConfig, io: PolicyIO, load_pretrained_backbone: bool = True) -> None:
        super().__init__()
        self.config = config
        d = config.dim_model
        if config.use_vae:
            self.vae_encoder = ACTEncoder(config, config.n_vae_encoder_layers)
            self.vae_encoder_cls_embed = nn.Embedding(1, d)
            if io.state_dim is not None:
                self.vae_encoder_robot_state_input_proj = nn.Linear(io.state_dim, d)
            self.vae_encoder_action_input_proj = nn.Linear(io.action_dim, d)
            self.vae_encoder_latent_output_proj = nn.Linear(d, 2 * config.latent_dim)
            n_vae_tokens = 1 + (io.state_dim is not None) + config.chunk_size
            self.register_buffer("vae_encoder_pos_enc", sine_pos_embed_1d(n_vae_tokens, d).unsqueeze(0))
        if io.image_shapes:
            self.backbone = ResNet18Backbone(config.replace_final_stride_with_dilation)
            if config.pretrained_backbone_weights and load_pretrained_backbone:
                load_resnet18_weights(self.backbone, config.pretrained_backbone_weights)
            self.encoder_img_feat_input_proj = nn.Conv2d(self.backbone.out_channels, d, kernel_size=1)
        self.encoder = ACTEncoder(config, config.n_encoder_layers)
        self.decoder = ACTDecoder(config)
        if io.state_dim is not None:
            self.encoder_robot_state_input_proj = nn.Linear(io.state_dim, d)
        if io.env_state_dim is not None:
            self.encoder_env_state_input_proj = nn.Linear(io.env_state_dim, d)
        self.encoder_latent_input_proj = nn.Linear(config.latent_dim, d)
        n_1d = 1 + (io.state_dim is not None) + (io.env_state_dim is not None)
        self.encoder_1d_feature_pos_embed = nn.Embedding(n_1d, d)
        self.decoder_pos_embed = nn.Embedding(config.chunk_size, d)
        self.action_head = nn.Linear(d, io.action_dim)
        # Image-token position embeddings depend only on the feature-map size: fixed per camera, not saved
        # (recomputed from the features), and a constant in an exported graph.
        for i, (_, h, w) in enumerate(io.image_shapes.values()):
            fh, fw = self.backbone.feature_size(h, w)
            self.register_buffer(f"_cam_pos_embed_{i}", sine_pos_embed_2d(fh, fw, d), persistent=False)
        self.has_state = io.state_dim is not None
        self.has_env_state = io.env_state_dim is not None
        # Xavier-uniform init of the transformer weight matrices, as in the original code.
        for p in chain(self.encoder.parameters(), self.decoder.parameters()):
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def _image_tokens(self, images: list[Tensor]) -> tuple[Tensor, Tensor]:
        """Per camera: backbone -> 1x1 projection -> tokens (h*w, B, D) and position embedding (h*w, 1, D)."""
        tokens, pos = [], []
        same_size = len({tuple(img.shape[-2:]) for img in images}) == 1
        if same_size and len(images) > 1:
            # One backbone call for all cameras (shared weights), then split back per camera.
            feats = self.backbone(torch.cat(images, dim=0)).chunk(len(images), dim=0)  # n x (B, 512, h, w)
        else:
            feats = [self.backbone(img) for img in images]
        for i, feat in enumerate(feats):
            proj = self.encoder_img_feat_input_proj(feat)  # (B, D, h, w)
            cam_pos = getattr(self, f"_cam_pos_embed_{i}")
            if cam_pos.shape[0] != proj.shape[-2] * proj.shape[-1]:  # an input size other than the features'
                cam_pos = sine_pos_embed_2d(proj.shape[-2], proj.shape[-1], proj.shape[1]).to(proj.device)
            tokens.append(proj.flatten(2).permute(2, 0, 1))  # (h*w, B, D)
            pos.append(cam_pos)
        return torch.cat(tokens, dim=0), torch.cat(pos, dim=0)

    def _vae_latent(self, state: Tensor | None, actions: Tensor, action_is_pad: Tensor) -> tuple[Tensor, ...]:
        """Posterior q(z | state, actions): returns (z sample, mu, log-variance), each (B, latent_dim)."""
        b = actions.shape[0]
        parts = [self.vae_encoder_cls_embed.weight.unsqueeze(0).expand(b, 1, -1)]  # (B, 1, D)
        if state is not None:
            parts.append(self.vae_encoder_robot_state_input_proj(state).unsqueeze(1))  # (B, 1, D)
        parts.append(self.vae_encoder_action_input_proj(actions))  # (B, k, D)
        x = torch.cat(parts, dim=1).transpose(0, 1)  # (1+[1]+k, B, D)
        lead = torch.zeros(b, len(parts) - 1, dtype=torch.bool, device=actions.device)
        pad_mask = torch.cat([lead, action_is_pad], dim=1)  # (B, 1+[1]+k): padded actions are ignored
        pos = self.vae_encoder_pos_enc.transpose(0, 1)  # (1+[1]+k, 1, D)
        cls_out = self.vae_encoder(x, pos_embed=pos, key_padding_mask=pad_mask)[0]  # (B, D)
        params = self.vae_encoder_latent_output_proj(cls_out).float()  # (B, 2L)
        mu, log_var = params[:, : self.config.latent_dim], params[:, self.config.latent_dim :]
        z = mu + (0.5 * log_var).exp() * torch.randn_like(mu)  # reparameterization trick
        return z, mu, log_var

    def forward(
        self,
        images: list[Tensor],
        state: Tensor | None,
        env_state: Tensor | None = None,
        actions: Tensor | None = None,
        action_is_pad: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """Normalized inputs -> (normalized actions (B, k, A), mu, log_var); zero latent without actions."""
        ref = images[0] if images else (state if state is not None else env_state)
        assert ref is not None  # guaranteed by parse_features
        b = ref.shape[0]
        mu = log_var = None
        if self.config.use_vae and actions is not None:
            if action_is_pad is None:
                action_is_pad = torch.zeros(actions.shape[:2], dtype=torch.bool, device=actions.device)
            latent, mu, log_var = self._vae_latent(state, actions, action_is_pad)
        else:
            latent = torch.zeros(b, self.config.latent_dim, dtype=torch.float32, device=ref.device)
        tokens = [self.encoder_latent_input_proj(latent).unsqueeze(0)]  # (1, B, D)
        if self.has_state:
            tokens.append(self.encoder_robot_state_input_proj(state).unsqueeze(0))
        if self.has_env_state:
            tokens.append(self.encoder_env_state_input_proj(env_state).unsqueeze(0))
        pos = [self.encoder_1d_feature_pos_embed.weight.unsqueeze(1)]  # (n_1d, 1, D)
        if images:
            img_tokens, img_pos = self._image_tokens(images)
            tokens.append(img_tokens.to(tokens[0].dtype))
            pos.append(img_pos)
        x = torch.cat(tokens, dim=0)  # (S, B, D)
        memory_pos = torch.cat(pos, dim=0)  # (S, 1, D)
        memory = self.encoder(x, pos_embed=memory_pos)  # (S, B, D)
        query_pos = self.decoder_pos_embed.weight.unsqueeze(1)  # (k, 1, D)
        queries = torch.zeros(
            self.config.chunk_size, b, self.config.dim_model, dtype=memory.dtype, device=ref.device
        )
        out = self.decoder(queries, memory, query_pos, memory_pos)  # (k, B, D)
        return self.action_head(out.transpose(0, 1)), mu, log_var  # (B, k, A)


class ACTPolicy(nn.Module):
    """ACT with its normalization: raw sensor units in, raw-unit action chunks out (docs/design.md "Model").

    `features`: info.json-style dict (`dtype`, `shape`, `names`) holding the cameras, `observation.state`,
    optionally `observation.environment_state`, and `action`; other features are ignored. `stats`: feature ->
    {"mean", "std", ...} lists (images per channel, in 0..1 units); `None` leaves placeholder buffers for a
    state dict to fill (checkpoint and LeRobot loaders). `load_pretrained_backbone=False` skips reading
    `config.pretrained_backbone_weights` (a loader that restores every weight from a checkpoint passes it,
    so the file need not exist where the checkpoint is used).
    """

    def __init__(
        self,
        config: ACTConfig,
        features: Mapping[str, Mapping[str, Any]],
        stats: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        load_pretrained_backbone: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(config, ACTConfig):
            raise TypeError(f"ACTPolicy: config must be an ACTConfig, got {type(config).__name__}")
        self.config = config
        self.io = parse_features(features)
        self.features = {k: dict(features[k]) for k in features if self._uses(k)}
        vectors = {STATE: self.io.state_dim, ENV_STATE: self.io.env_state_dim, ACTION: self.io.action_dim}
        self.normalize = Normalizer(
            {k: s[0] for k, s in self.io.image_shapes.items()},
            {k: v for k, v in vectors.items() if v is not None},
            stats,
        )
        self.model = ACT(config, self.io, load_pretrained_backbone)

    @classmethod
    def from_stats(
        cls,
        config: ACTConfig | Mapping[str, Any],
        features: Mapping[str, Mapping[str, Any]],
        stats: Mapping[str, Mapping[str, Any]] | None,
    ) -> ACTPolicy:
        """The constructor, also accepting the config as a dict (a checkpoint's `config.json["policy"]`)."""
        if not isinstance(config, ACTConfig):
            config = ACTConfig.from_dict(dict(config))
        return cls(config, features, stats)

    def _uses(self, key: str) -> bool:
        return is_camera_key(key) or key in (STATE, ENV_STATE, ACTION)

    @property
    def image_keys(self) -> list[str]:
        """Camera features in the order the model tokenizes them."""
        return self.io.image_keys

    def _normalized_inputs(
        self, images: Mapping[str, Tensor], state: Tensor | None, env_state: Tensor | None
    ) -> tuple[list[Tensor], Tensor | None, Tensor | None]:
        missing = [k for k in self.io.image_keys if k not in images]
        if missing:
            raise PolicyFeatureError(f"ACTPolicy: missing camera input(s) {missing}")
        if self.io.state_dim is not None and state is None:
            raise PolicyFeatureError(f"ACTPolicy: missing {STATE!r} input")
        if self.io.env_state_dim is not None and env_state is None:
            raise PolicyFeatureError(f"ACTPolicy: missing {ENV_STATE!r} input")
        imgs = [self.normalize.image(k, images[k]) for k in self.io.image_keys]
        s = self.normalize.normalize(STATE, state.float()) if self.io.state_dim is not None else None
        e = (
            self.normalize.normalize(ENV_STATE, env_state.float())
            if self.io.env_state_dim is not None
            else None
        )
        return imgs, s, e

    def forward(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """Training loss on a batch: (loss, {"l1", "kld"} detached).

        L1 between predicted and target normalized actions, padded steps (`action_is_pad`) multiplied by zero
        and the mean taken over all B*k*A entries (as the original code and LeRobot), plus `kl_weight` * KL of
        the posterior to N(0, I). The CVAE posterior is used in training mode only; in eval mode the latent is
        zero and `kld` is 0.
        """
        if ACTION not in batch:
            raise PolicyFeatureError("ACTPolicy.forward: the batch has no 'action'")
        images = {k: batch[k] for k in self.io.image_keys if k in batch}
        imgs, state, env = self._normalized_inputs(images, batch.get(STATE), batch.get(ENV_STATE))
        target = self.normalize.normalize(ACTION, batch[ACTION].float())  # (B, k, A)
        is_pad = batch.get("action_is_pad")
        if is_pad is None:
            is_pad = torch.zeros(target.shape[:2], dtype=torch.bool, device=target.device)
        if target.shape[1] != self.config.chunk_size:
            raise PolicyFeatureError(
                f"ACTPolicy.forward: 'action' has {target.shape[1]} steps but chunk_size is "
                f"{self.config.chunk_size}"
            )
        use_posterior = self.training and self.config.use_vae
        pred, mu, log_var = self.model(
            imgs, state, env, actions=target if use_posterior else None, action_is_pad=is_pad
        )
        err = F.l1_loss(pred.float(), target, reduction="none") * (~is_pad).unsqueeze(-1)  # (B, k, A)
        l1 = err.mean()
        if mu is not None and log_var is not None:
            # KL(N(mu, sigma^2) || N(0, I)) summed over latent dims, averaged over the batch.
            kld = (-0.5 * (1 + log_var - mu.pow(2) - log_var.exp())).sum(-1).mean()
        else:
            kld = torch.zeros((), device=l1.device)
        loss = l1 + self.config.kl_weight * kld
        return loss, {"l1": l1.detach(), "kld": kld.detach()}

    def predict_chunk(
        self, images: Mapping[str, Tensor], state: Tensor | None = None, env_state: Tensor | None = None
    ) -> Tensor:
        """Raw-unit action chunk (B, chunk_size, A) float32 from uint8 images (B, 3, H, W) by feature and raw
        state (B, S); zero latent. Export traces exactly this path (no data-dependent control flow)."""
        imgs, s, e = self._normalized_inputs(images, state, env_state)
        pred, _, _ = self.model(imgs, s, e)  # (B, k, A) normalized
        return self.normalize.unnormalize(ACTION, pred.float())
