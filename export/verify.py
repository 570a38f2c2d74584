"""Parity: the exported graph must compute what PyTorch computes, on real frames and on random inputs.

Errors are reported in raw units (max abs, max relative) and on normalized actions, `(a - mean) / std` with
the action stats the graph unnormalizes with; the tolerance applies to the normalized error, so it means the
same for a gripper in metres and a PushT target in pixels.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from edgeact.export.artifact import PolicySpec

log = logging.getLogger(__name__)

# ONNX Runtime is compared with a float64 PyTorch reference. Both float32 implementations round differently,
# so the bound follows the model: ONNX Runtime may be PARITY_FACTOR times as far from float64 as PyTorch
# float32 is (measured ratios 0.9 to 3.0, docs/export.md "Parity"), and is never held below
# ONNX_PARITY_TOLERANCE (max abs error on normalized actions).
ONNX_PARITY_TOLERANCE = 1e-5
PARITY_FACTOR = 4.0
# Relative errors divide by max(|reference|, this) so that actions at exactly 0 do not blow up the ratio.
REL_FLOOR = 1e-6


@dataclass(frozen=True)
class CaseError:
    """Error of one input set: `source` says where the inputs came from (`dataset frame 12`, `random 3`)."""

    source: str
    max_abs: float
    max_rel: float
    max_abs_normalized: float


@dataclass
class ParityReport:
    """All cases of one comparison, against `tolerance` on normalized actions."""

    reference: str
    candidate: str
    tolerance: float
    cases: list[CaseError] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    baseline: list[CaseError] = field(default_factory=list)  # PyTorch float32 vs the same reference

    @property
    def baseline_max_abs_normalized(self) -> float | None:
        return max((c.max_abs_normalized for c in self.baseline), default=None)

    @property
    def max_abs(self) -> float:
        return max((c.max_abs for c in self.cases), default=0.0)

    @property
    def max_rel(self) -> float:
        return max((c.max_rel for c in self.cases), default=0.0)

    @property
    def max_abs_normalized(self) -> float:
        return max((c.max_abs_normalized for c in self.cases), default=0.0)

    @property
    def passed(self) -> bool:
        return bool(self.cases) and self.max_abs_normalized <= self.tolerance

    def to_json(self) -> dict[str, Any]:
        """The sidecar's `parity` entry."""
        return {
            "reference": self.reference,
            "candidate": self.candidate,
            "max_abs_err": self.max_abs,
            "max_rel_err": self.max_rel,
            "max_abs_err_normalized": self.max_abs_normalized,
            "tolerance": self.tolerance,
            "cases": len(self.cases),
            "real_frames": sum(c.source.startswith("dataset") for c in self.cases),
            **(
                {"pytorch_fp32_max_abs_err_normalized": self.baseline_max_abs_normalized,
                 "tolerance_rule": f"max({PARITY_FACTOR:g} x pytorch_fp32, {ONNX_PARITY_TOLERANCE:g})"}
                if self.baseline else {}
            ),
        }  # fmt: skip

    def summary(self) -> str:
        verdict = "ok" if self.passed else "FAILED"
        base = self.baseline_max_abs_normalized
        fp32 = (
            f"; pytorch float32 vs {self.reference}: max abs normalized {base:.3e}"
            if base is not None
            else ""
        )
        return (
            f"parity {self.candidate} vs {self.reference} over {len(self.cases)} inputs: "
            f"max abs {self.max_abs:.3e}, "
            f"max rel {self.max_rel:.3e}, max abs normalized {self.max_abs_normalized:.3e} "
            f"(tolerance {self.tolerance:.2e}){fp32}: {verdict}"
        )


def compare(reference: np.ndarray, candidate: np.ndarray, spec: PolicySpec, source: str) -> CaseError:
    """Errors between two raw-unit action chunks `(1, k, A)`."""
    ref = np.asarray(reference, dtype=np.float64)
    got = np.asarray(candidate, dtype=np.float64)
    if ref.shape != got.shape:
        raise ValueError(f"{source}: output shape {got.shape} differs from the reference {ref.shape}")
    std = np.asarray(spec.action_mean_std()[1], dtype=np.float64)
    diff = np.abs(got - ref)
    rel = diff / np.maximum(np.abs(ref), REL_FLOOR)
    norm = diff / np.maximum(std, 1e-8)  # |(got-mean)/std - (ref-mean)/std|
    if not (np.isfinite(got).all() and np.isfinite(ref).all()):
        return CaseError(source, float("inf"), float("inf"), float("inf"))
    return CaseError(source, float(diff.max()), float(rel.max()), float(norm.max()))


def ort_session(model_bytes: bytes, *, threads: int = 0) -> Any:
    """A CPU ONNX Runtime session over an in-memory model (nothing on disk yet)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    return ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])


def ort_runner(model_bytes: bytes) -> Callable[[dict[str, np.ndarray]], np.ndarray]:
    sess = ort_session(model_bytes)
    return lambda feeds: sess.run(["action"], feeds)[0]


def check_parity(
    reference: Callable[[dict[str, np.ndarray]], np.ndarray],
    candidate: Callable[[dict[str, np.ndarray]], np.ndarray],
    spec: PolicySpec,
    cases: Sequence[tuple[str, dict[str, np.ndarray]]],
    *,
    tolerance: float = ONNX_PARITY_TOLERANCE,
    names: tuple[str, str] = ("pytorch", "onnxruntime"),
) -> ParityReport:
    """Run both on every `(source, feeds)` case and collect the errors."""
    report = ParityReport(reference=names[0], candidate=names[1], tolerance=tolerance)
    for source, feeds in cases:
        report.cases.append(compare(reference(feeds), candidate(feeds), spec, source))
    log.info(report.summary())
    return report


def check_parity_f64(
    reference64: Callable[[dict[str, np.ndarray]], np.ndarray],
    torch32: Callable[[dict[str, np.ndarray]], np.ndarray],
    candidate: Callable[[dict[str, np.ndarray]], np.ndarray],
    spec: PolicySpec,
    cases: Sequence[tuple[str, dict[str, np.ndarray]]],
    *,
    factor: float | None = None,
    floor: float | None = None,
) -> ParityReport:
    """`candidate` and PyTorch float32 against the float64 reference; the tolerance is
    max(factor x PyTorch float32's error, floor) (module constants by default)."""
    factor = PARITY_FACTOR if factor is None else factor
    floor = ONNX_PARITY_TOLERANCE if floor is None else floor
    report = ParityReport(reference="pytorch-float64", candidate="onnxruntime", tolerance=floor)
    for source, feeds in cases:
        ref = reference64(feeds)
        report.baseline.append(compare(ref, torch32(feeds), spec, source))
        report.cases.append(compare(ref, candidate(feeds), spec, source))
    report.tolerance = max(factor * (report.baseline_max_abs_normalized or 0.0), floor)
    log.info(report.summary())
    return report


def dataset_cases(
    spec: PolicySpec, config: dict[str, Any], count: int
) -> tuple[list[tuple[str, dict[str, np.ndarray]]], str | None]:
    """Up to `count` real frames spread over the checkpoint's dataset; ([], reason) when unavailable.

    Looked for as training does: the recorded absolute `root`, else the LeRobot `repo_id` (or the `id` as
    typed) through `resolve_dataset` (cache, mirror). The reason names every place tried."""
    dataset = config.get("dataset", {})
    tried = [
        (what, dataset[what]) for what in ("root", "repo_id", "id") if isinstance(dataset.get(what), str)
    ]
    if not tried or count <= 0:
        return [], "the checkpoint names no dataset"
    try:
        from edgeact.train.data import ChunkDataset, LeRobotDataset, resolve_dataset
    except ImportError as err:
        return [], f"the dataset readers are not importable here ({err})"
    errors = []
    for name, what in {name: what for what, name in reversed(tried)}.items():  # each name once
        try:
            root = resolve_dataset(name)
            chunks = ChunkDataset(LeRobotDataset(root), spec.chunk_size, frame_cache=False, progress=False)
            break
        except Exception as err:  # not found or not readable here: try the next name
            errors.append(f"{what} {name!r}: {type(err).__name__}: {(str(err).splitlines() or [''])[0]}")
    else:
        return [], "dataset not found or not readable here (" + "; ".join(errors) + ")"
    wanted = [c.feature for c in spec.cameras] + [v.feature for v in spec.vectors]
    missing = [k for k in wanted if k not in chunks.dataset.meta.features]
    if missing:
        return [], f"dataset {str(root)!r} has no {missing} (the checkpoint was trained with them)"
    try:
        idx = np.linspace(0, len(chunks) - 1, num=min(count, len(chunks))).astype(np.int64)
        batch = chunks.get_batch(idx)
        cases = []
        for row, index in enumerate(idx):
            feeds = {
                c.feature: np.ascontiguousarray(batch[c.feature][row : row + 1].transpose(0, 2, 3, 1))
                for c in spec.cameras
            }
            for v in spec.vectors:
                feeds[v.feature] = np.asarray(batch[v.feature][row : row + 1], dtype=np.float32)  # (1, D)
            cases.append((f"dataset frame {int(index)}", feeds))
    except Exception as err:  # any failure here only means "no real frames": random inputs still run
        return [], f"dataset {str(root)!r} not readable here ({type(err).__name__}: {err})"
    bad = [
        c.feature for c in spec.cameras if cases and cases[0][1][c.feature].shape[1:3] != (c.height, c.width)
    ]
    if bad:
        return [], f"dataset frames of {bad} do not have the trained resolution"
    wrong = [v.feature for v in spec.vectors if cases and cases[0][1][v.feature].shape != (1, v.dim)]
    if wrong:
        return [], f"dataset vectors {wrong} do not have the trained width"
    return cases, None


def random_inputs(spec: PolicySpec, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random graph inputs: uniform images, vectors (state, env state) spread around their dataset stats."""
    feeds: dict[str, np.ndarray] = {}
    for cam in spec.cameras:
        feeds[cam.feature] = rng.integers(
            0, 256, size=(1, cam.height, cam.width, cam.channels), dtype=np.uint8
        )
    for v in spec.vectors:
        st = spec.stats.get(v.feature, {})
        mean = np.asarray(st.get("mean", np.zeros(v.dim)), dtype=np.float32).reshape(-1)
        std = np.asarray(st.get("std", np.ones(v.dim)), dtype=np.float32).reshape(-1)
        feeds[v.feature] = (mean + std * rng.standard_normal(v.dim)).astype(np.float32)[None]  # (1, D)
    return feeds


def random_cases(spec: PolicySpec, count: int, seed: int = 0) -> list[tuple[str, dict[str, np.ndarray]]]:
    rng = np.random.default_rng(seed)
    return [(f"random {i}", random_inputs(spec, rng)) for i in range(count)]
