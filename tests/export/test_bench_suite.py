"""pytest-benchmark suite (marker `bench`): one control step of the C++ runtime and of PyTorch eager with
the same ensembling, at the PushT and arm sizes. Run with `pytest -m bench --benchmark-enable`; skipped
otherwise."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from edgeact.export import bench
from edgeact.export.bench_steppers import bench_inputs

pytestmark = pytest.mark.bench


def _skip_unless_enabled(config: pytest.Config) -> None:
    if config.getoption("benchmark_disable") and not config.getoption("benchmark_enable"):
        pytest.skip("benchmarks run with --benchmark-enable")


@pytest.fixture(scope="module", params=["pusht", "arm"])
def exported(request, tmp_path_factory):
    _skip_unless_enabled(request.config)  # before the (slow) export: a module fixture runs first
    size = bench.SIZES[request.param]
    policy, doc = bench.build_policy(size)
    model = bench.export_policy(policy, doc, tmp_path_factory.mktemp(size.name), exporter="legacy")
    return size, policy, model


def test_runtime_step(benchmark, exported) -> None:
    from edgeact.runtime.core import Policy, PolicyParams

    size, _, model = exported
    session = Policy.load(model, PolicyParams(intra_op_threads=1)).session()
    session.reset()
    images, state = bench_inputs(size)
    command, status = benchmark(session.step, images, state)
    assert command is not None and not status.is_fault


def test_eager_step(benchmark, exported) -> None:
    import torch
    from edgeact.runtime.ensemble_ref import ActionExecutor, ExecutionConfig

    size, policy, _ = exported
    torch.set_num_threads(1)
    images, state = bench_inputs(size)
    feats = {
        ("observation.image" if n == "image" else f"observation.images.{n}"): v for n, v in images.items()
    }
    ex = ActionExecutor(ExecutionConfig(chunk_size=policy.config.chunk_size, action_dim=size.action_dim))
    ex.reset()

    def step() -> np.ndarray:
        with torch.inference_mode():
            imgs = {k: torch.from_numpy(v).permute(2, 0, 1)[None] for k, v in feats.items()}
            chunk = policy.predict_chunk(imgs, torch.from_numpy(state)[None]).numpy()
        return ex.update(chunk)

    action = benchmark(step)
    assert action.shape == (size.action_dim,) and np.all(np.isfinite(action))
