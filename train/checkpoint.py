"""Training checkpoints: writing them atomically, reading them for resume, export and evaluation.

Layout (docs/design.md "Checkpoint"), all without pickle:

    OUTPUT/checkpoints/<step:06d>/model.safetensors    weights and normalization buffers
    OUTPUT/checkpoints/<step:06d>/config.json          schema_version, policy, dataset, train, code_version
    .../<step:06d>/training_state/state.safetensors    optimizer moments, RNG states
    .../<step:06d>/training_state/state.json           step, optimizer groups, scheduler, RNG (JSON)
    OUTPUT/checkpoints/last -> <step:06d>              symlink, replaced atomically
    OUTPUT/checkpoints/best -> <step:06d>              the best closed-loop evaluation so far (`eval_every`),
    .../<step:06d>/eval.json                           that evaluation's summary

A step folder is written under a temporary name and renamed into place, so `last` only ever names a complete
one.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from edgeact.runtime.artifact_commit import umask_mode
from edgeact.train.train_config import TrainError, build_dataclass, json_safe
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
STATE_DIR = "training_state"
LAST = "last"
BEST = "best"
EVAL_FILE = "eval.json"


class CheckpointError(TrainError):
    """A checkpoint is missing, incomplete, or from another schema version."""


def code_version() -> str:
    try:
        return metadata.version("edgeact")
    except metadata.PackageNotFoundError:
        return "unknown"


def checkpoints_dir(output: str | Path) -> Path:
    return Path(output) / "checkpoints"


def step_dir_name(step: int) -> str:
    return f"{step:06d}"


def _write_json(path: Path, data: Any) -> None:
    with open(path, "w") as f:
        json.dump(data, f, indent=2, sort_keys=False, allow_nan=False)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())


def _save_tensors(tensors: dict[str, torch.Tensor], path: Path, meta: dict[str, str] | None = None) -> None:
    # safetensors refuses tensors sharing storage; copies make each entry independent and contiguous.
    seen: set[int] = set()
    out = {}
    for name, t in tensors.items():
        t = t.detach().cpu()
        ptr = t.untyped_storage().data_ptr() if t.numel() else -1
        out[name] = t.clone().contiguous() if ptr in seen or not t.is_contiguous() else t
        seen.add(ptr)
    save_file(out, str(path), metadata=meta)
    os.chmod(path, umask_mode())  # safetensors creates 0600: honour the umask, like every other file here
    with open(path, "rb") as f:
        os.fsync(f.fileno())


# ------------------------------------------------------------------------------------------ training state
def optimizer_state_flat(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Optimizer state as safetensors entries `optimizer.<param>.<name>` plus JSON (groups, scalars)."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, state in sd["state"].items():
        for name, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{pid}.{name}"] = value
            else:
                scalars.setdefault(str(pid), {})[name] = value
    return tensors, {"param_groups": json_safe(sd["param_groups"]), "scalars": json_safe(scalars)}


def optimizer_state_unflat(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, pid, name = key.split(".", 2)
            state.setdefault(int(pid), {})[name] = value
    for pid, values in meta.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(values)
    groups = []
    for g in meta["param_groups"]:
        g = dict(g)
        if isinstance(g.get("betas"), list):
            g["betas"] = tuple(g["betas"])
        groups.append(g)
    return {"state": state, "param_groups": groups}


def rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    np_state = np.random.get_state()
    py_state = random.getstate()
    return tensors, {
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        "python": [py_state[0], list(py_state[1]), py_state[2]],
    }


def restore_rng_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("rng.cuda."))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])
    n = meta["numpy"]
    np.random.set_state((n[0], np.asarray(n[1], dtype=np.uint32), *n[2:]))
    p = meta["python"]
    random.setstate((p[0], tuple(p[1]), p[2]))


# ---------------------------------------------------------------------------------------------------- writing
def save_checkpoint(
    output: str | Path,
    step: int,
    *,
    policy: torch.nn.Module,
    config: dict[str, Any],
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    keep: int = 0,
) -> Path:
    """Write `OUTPUT/checkpoints/<step>` atomically and point `last` at it; returns the step folder.

    `config` is the checkpoint's config.json minus `schema_version`/`code_version` (added here):
    `{"policy": ..., "dataset": {...}, "train": {...}}`.
    """
    root = checkpoints_dir(output)
    final = root / step_dir_name(step)
    tmp = root / f".tmp-{step_dir_name(step)}-{os.getpid()}"
    try:
        root.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)
        (tmp / STATE_DIR).mkdir(parents=True)
        _write_step(tmp, step, policy, config, optimizer, scheduler)
        if (final / EVAL_FILE).is_file():  # the same step saved again keeps its evaluation (and `best`)
            shutil.copy2(final / EVAL_FILE, tmp / EVAL_FILE)
        _replace_dir(tmp, final)
        _point_last(root, final.name)
    except (OSError, SafetensorError) as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise CheckpointError(_write_failure(root, final, err)) from err
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if keep > 0:
        _prune(root, keep)
    log.info("saved checkpoint %s", final)
    return final


def _write_step(
    tmp: Path, step: int, policy: torch.nn.Module, config: dict[str, Any], optimizer: Any, scheduler: Any
) -> None:
    _save_tensors(
        policy.state_dict(), tmp / MODEL_FILE, {"format": "pt", "schema_version": str(SCHEMA_VERSION)}
    )
    doc = {"schema_version": SCHEMA_VERSION, **config, "code_version": code_version(), "step": step}
    _write_json(tmp / CONFIG_FILE, json_safe(doc))
    tensors, rng_meta = rng_state()
    state: dict[str, Any] = {"step": step, "rng": rng_meta}
    if optimizer is not None:
        opt_tensors, opt_meta = optimizer_state_flat(optimizer)
        tensors.update(opt_tensors)
        state["optimizer"] = opt_meta
    if scheduler is not None:
        state["scheduler"] = json_safe(scheduler.state_dict())
    _save_tensors(tensors, tmp / STATE_DIR / "state.safetensors")
    _write_json(tmp / STATE_DIR / "state.json", state)


def _write_failure(root: Path, final: Path, err: BaseException) -> str:
    """One line: which folder could not be written, why, and what `last` still names (issue 12)."""
    reason = " ".join(str(err).split()) or type(err).__name__
    last = root / LAST
    kept = f"{last} still names {os.readlink(last)}" if last.is_symlink() else f"there is no {last} yet"
    return (
        f"cannot write checkpoint {final}: {reason}; nothing half-written was left and {kept}; "
        "free space or fix permissions, then continue with --resume"
    )


def ensure_writable(output: str | Path) -> None:
    """Create the run folder and prove a file can be written there, before any work is done."""
    out = Path(output)
    probe = out / f".write-test-{os.getpid()}"
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        reason = err.strerror or str(err)
        raise CheckpointError(
            f"--output {out}: cannot write there ({reason}); choose another --output or fix its permissions"
        ) from err


def _replace_dir(src: Path, dst: Path) -> None:
    if dst.exists():
        # A kill between the two renames leaves `dst` missing and its data in `.old-*`:
        # `recover_checkpoints` (checkpoint_recovery.py) puts it back at the next start.
        old = dst.with_name(f".old-{dst.name}-{os.getpid()}")
        os.rename(dst, old)
        try:
            os.rename(src, dst)
        except OSError:
            os.rename(old, dst)
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(src, dst)
    fd = os.open(dst.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _point_last(root: Path, name: str, link: str = LAST) -> None:
    tmp_link = root / f".{link}-{os.getpid()}"
    if tmp_link.is_symlink() or tmp_link.exists():
        tmp_link.unlink()
    os.symlink(name, tmp_link)  # relative: the run folder can move
    os.replace(tmp_link, root / link)


def _prune(root: Path, keep: int) -> None:
    steps = sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink() and p.name.isdigit())
    kept = {(root / link).resolve() for link in (LAST, BEST) if (root / link).is_symlink()}
    for p in steps[:-keep]:
        if p.resolve() not in kept:
            shutil.rmtree(p, ignore_errors=True)


def mark_best(step_dir: str | Path, summary: dict[str, Any]) -> Path:
    """Write `eval.json` into a complete step folder, then point `checkpoints/best` at it (atomically)."""
    step_dir = Path(step_dir)
    tmp = step_dir / f".{EVAL_FILE}.{os.getpid()}.tmp"
    _write_json(tmp, json_safe(summary))
    os.replace(tmp, step_dir / EVAL_FILE)
    _point_last(step_dir.parent, step_dir.name, BEST)
    log.info("best checkpoint so far: %s (%s)", step_dir, summary)
    return step_dir


def read_best(output: str | Path) -> dict[str, Any] | None:
    """The evaluation summary of `OUTPUT/checkpoints/best`, or None when there is none yet."""
    path = checkpoints_dir(output) / BEST / EVAL_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: unreadable evaluation summary: {err}") from err


# ---------------------------------------------------------------------------------------------------- reading
def resolve_checkpoint(path: str | Path) -> Path:
    """A step folder from a step folder, a `last` link, or a run folder (`RUN/checkpoints/last`)."""
    p = Path(path)
    for cand in (p, p / LAST, p / "checkpoints" / LAST):
        if (cand / CONFIG_FILE).is_file() and (cand / MODEL_FILE).is_file():
            return cand.resolve()
    if not p.exists():
        raise CheckpointError(f"{p}: no such checkpoint")
    raise CheckpointError(
        f"{p}: not a checkpoint (expected {CONFIG_FILE} and {MODEL_FILE} in it, in {p}/{LAST} "
        f"or in {p}/checkpoints/{LAST})"
    )


def read_config(ckpt: str | Path) -> dict[str, Any]:
    """The checkpoint's config.json, checked for the schema version this code reads."""
    path = resolve_checkpoint(ckpt) / CONFIG_FILE
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: unreadable checkpoint config: {err}") from err
    version = doc.get("schema_version") if isinstance(doc, dict) else None
    if version != SCHEMA_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint schema_version {version!r}, but this edgeact ({code_version()}) reads "
            f"schema_version {SCHEMA_VERSION}; re-export it with the edgeact version that wrote it "
            f"(code_version {doc.get('code_version', 'unknown') if isinstance(doc, dict) else 'unknown'})"
        )
    for key in ("policy", "dataset", "train"):
        if key not in doc:
            raise CheckpointError(f"{path}: missing section {key!r}")
    return doc


def load_weights(policy: torch.nn.Module, ckpt: str | Path) -> None:
    path = resolve_checkpoint(ckpt) / MODEL_FILE
    try:
        state = load_file(str(path))
    except (OSError, SafetensorError) as err:
        raise CheckpointError(f"{path}: cannot read weights: {err}") from err
    missing, unexpected = policy.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: weights do not fit the policy: missing {missing}, unexpected {unexpected}"
        )


def load_policy(path: str | Path, *, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict]:
    """The trained `ACTPolicy` (eval mode) and the checkpoint's config dict, from a step/`last`/run folder."""
    from edgeact.train.config import ACTConfig
    from edgeact.train.model import ACTPolicy

    ckpt = resolve_checkpoint(path)
    doc = read_config(ckpt)
    try:
        cfg = build_dataclass(ACTConfig, doc["policy"], "policy.")
    except ValueError as err:
        raise CheckpointError(f"{ckpt / CONFIG_FILE}: {err}") from err
    # The checkpoint holds every weight: never reread a pretrained-backbone file that may not exist here.
    policy = ACTPolicy(
        cfg, doc["dataset"]["features"], doc["dataset"]["stats"], load_pretrained_backbone=False
    )
    load_weights(policy, ckpt)
    policy.to(device).eval()
    return policy, doc


def _match_param_layout(optimizer: torch.optim.Optimizer) -> None:
    """Give each moment tensor its parameter's memory layout (channels-last conv weights): the fused and
    foreach AdamW kernels walk parameter and moments as the same flat buffer."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            state = optimizer.state.get(p, {})
            for name, value in state.items():
                if (
                    isinstance(value, torch.Tensor)
                    and value.shape == p.shape
                    and value.stride() != p.stride()
                ):
                    state[name] = torch.empty_like(p, dtype=value.dtype).copy_(value)


def load_training_state(
    ckpt: str | Path, optimizer: torch.optim.Optimizer | None = None, scheduler: Any = None
) -> int:
    """Restore optimizer, scheduler and RNG state in place; returns the step the checkpoint was taken at."""
    folder = resolve_checkpoint(ckpt) / STATE_DIR
    path = folder / "state.json"
    try:
        meta = json.loads(path.read_text())
        tensors = load_file(str(folder / "state.safetensors"))
    except (OSError, json.JSONDecodeError, SafetensorError) as err:
        raise CheckpointError(f"{folder}: cannot read the training state: {err}") from err
    step = _check_state(meta, path)
    try:
        if optimizer is not None:
            if "optimizer" not in meta:
                raise CheckpointError(f"{path}: no optimizer state saved")
            optimizer.load_state_dict(optimizer_state_unflat(tensors, meta["optimizer"]))
            _match_param_layout(optimizer)
        if scheduler is not None and "scheduler" in meta:
            scheduler.load_state_dict(meta["scheduler"])
        restore_rng_state(tensors, meta["rng"])
    except (ValueError, KeyError, TypeError, IndexError, AttributeError, RuntimeError) as err:
        what = " ".join(str(err).split()) or type(err).__name__
        raise CheckpointError(
            f"{path}: the training state does not fit ({type(err).__name__}: {what}); "
            "restore this file or resume from another step folder"
        ) from err
    return step


def _check_state(meta: Any, path: Path) -> int:
    """The field types a hand-edited state.json can break, named before anything is restored."""
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got {type(meta).__name__}")
    expected = {"step": int, "rng": dict, "optimizer": dict, "scheduler": dict}
    for name, kind in expected.items():
        value = meta.get(name)
        if name in ("step", "rng") and name not in meta:
            raise CheckpointError(f"{path}: field {name!r} is missing; restore this file")
        if name in meta and (not isinstance(value, kind) or isinstance(value, bool)):
            raise CheckpointError(
                f"{path}: field {name!r} must be {'an integer' if kind is int else 'an object'}, "
                f"got {value!r:.60}; restore this file"
            )
    if meta["step"] < 0:
        raise CheckpointError(f"{path}: field 'step' must be >= 0, got {meta['step']}")
    for name in ("numpy", "python"):
        if not isinstance(meta["rng"].get(name), list):
            raise CheckpointError(f"{path}: field 'rng.{name}' must be a list; restore this file")
    return meta["step"]
