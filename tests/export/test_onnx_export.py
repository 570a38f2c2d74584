"""ONNX export of a tiny real ACT checkpoint: the artifact on disk, parity, folding, a second evaluator."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from edgeact.export import onnx as onnx_export
from edgeact.export import verify
from edgeact.export.artifact import METADATA_KEY, SCHEMA_VERSION, spec_from_checkpoint_config
from edgeact.export.cli import main
from edgeact.export.wrap import ExportWrapper, run_torch
from edgeact.train.checkpoint import load_policy

# The keys of docs/design.md "Policy artifact"; the runtime reads these.
DESIGN_KEYS = {
    "schema_version", "format", "model_file", "model_sha256", "graph_sha256", "inputs", "outputs", "cameras",
    "chunk_size", "fps", "state_names", "action_names", "normalization", "image_resize", "execution",
    "train_config", "engine", "parity",
}  # fmt: skip


@pytest.fixture(scope="module")
def exported(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("onnx") / "policy.onnx"
    assert (
        main([str(tiny_checkpoint), "--output", str(out), "--parity-frames", "6", "--parity-random", "2"])
        == 0
    )
    return out


@pytest.fixture(scope="module")
def loaded(tiny_checkpoint: Path):
    policy, doc = load_policy(tiny_checkpoint)
    return policy, doc, spec_from_checkpoint_config(doc)


def test_artifact_files_and_sidecar(exported: Path, tiny_checkpoint: Path, tiny) -> None:
    sidecar = json.loads(exported.with_suffix(".json").read_text())
    assert set(sidecar) >= DESIGN_KEYS
    assert sidecar["schema_version"] == SCHEMA_VERSION and sidecar["format"] == "onnx"
    assert sidecar["model_file"] == "policy.onnx"
    assert sidecar["model_sha256"] == hashlib.sha256(exported.read_bytes()).hexdigest()
    h, w = tiny.image_hw
    assert [i["shape"] for i in sidecar["inputs"]] == [[1, h, w, 3], [1, h, w, 3], [1, 3]]
    assert [i["dtype"] for i in sidecar["inputs"]] == ["uint8", "uint8", "float32"]
    assert [c["feature"] for c in sidecar["cameras"]] == list(tiny.cameras)
    assert sidecar["outputs"][0]["shape"] == [1, tiny.policy["chunk_size"], 4]
    assert sidecar["action_names"] == [f"joint_{i}" for i in range(4)]
    assert sidecar["state_names"] == [f"state_{i}" for i in range(3)]
    assert sidecar["normalization"]["inside_graph"] is True
    ckpt_cfg = json.loads((tiny_checkpoint / "checkpoints" / "last" / "config.json").read_text())
    assert sidecar["normalization"]["stats"] == ckpt_cfg["dataset"]["stats"]
    assert sidecar["execution"] == {
        "mode": "ensemble",
        "temporal_ensemble_coeff": 0.01,
        "n_action_steps": tiny.policy["chunk_size"],  # None in the config = the whole chunk
    }
    parity = sidecar["parity"]
    assert parity["real_frames"] == 6 and parity["cases"] == 8
    assert parity["max_abs_err_normalized"] <= parity["tolerance"]
    assert parity["tolerance"] == max(
        verify.PARITY_FACTOR * parity["pytorch_fp32_max_abs_err_normalized"], verify.ONNX_PARITY_TOLERANCE
    )
    assert parity["reference"] == "pytorch-float64" and parity["pytorch_fp32_max_abs_err_normalized"] > 0
    assert not list(exported.parent.glob(".*.tmp"))  # no temp files left behind


def test_graph_io_metadata_and_self_contained(exported: Path, tiny) -> None:
    model = onnx.load(exported)
    onnx.checker.check_model(model, full_check=True)
    names = [i.name for i in model.graph.input]
    assert names == [*tiny.cameras, "observation.state"]
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert [o.name for o in model.graph.output] == ["action"]
    assert all(t.data_location != onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    assert not any("vae" in t.name for t in model.graph.initializer), "the VAE encoder must not be exported"
    embedded = onnx_export.read_metadata(model)
    sidecar = json.loads(exported.with_suffix(".json").read_text())
    assert embedded == {**sidecar, "model_sha256": None}
    assert embedded["graph_sha256"] == onnx_export.graph_sha256(model)
    assert [p.key for p in model.metadata_props].count(METADATA_KEY) == 1


def test_file_matches_pytorch_on_dataset_frames(exported: Path, loaded, tiny) -> None:
    policy, doc, spec = loaded
    cases, why_not = verify.dataset_cases(spec, doc, 3)
    assert why_not is None and len(cases) == 3
    sess = verify.ort_session(exported.read_bytes())
    for _, feeds in cases:
        with torch.no_grad():
            images = {k: torch.from_numpy(feeds[k]).permute(0, 3, 1, 2) for k in tiny.cameras}
            ref = policy.predict_chunk(images, torch.from_numpy(feeds["observation.state"])).numpy()
        got = sess.run(["action"], feeds)[0]
        std = np.asarray(spec.action_mean_std()[1])
        assert np.abs((got - ref) / std).max() <= verify.ONNX_PARITY_TOLERANCE
        assert np.abs(ref).max() > 1.0  # raw units: the unnormalization is inside the graph


def test_reference_evaluator_agrees(exported: Path, loaded, tiny) -> None:
    """A second evaluator, not ONNX Runtime, on the same file."""
    from onnx.reference import ReferenceEvaluator

    policy, _, spec = loaded
    model = onnx.load(exported)
    feeds = verify.random_cases(spec, 1, seed=3)[0][1]
    got = ReferenceEvaluator(model).run(["action"], feeds)[0]
    ref = run_torch(ExportWrapper(policy, spec).eval(), spec, feeds)
    assert got.shape == ref.shape == (1, tiny.policy["chunk_size"], 4)
    assert np.abs((got - ref) / np.asarray(spec.action_mean_std()[1])).max() <= 1e-4


def test_folding_removes_input_independent_nodes(loaded) -> None:
    policy, _, spec = loaded
    unfolded, none = onnx_export.export_onnx(policy, spec, fold=False)
    assert none is None
    folded, report = onnx_export.fold_constants(unfolded)
    assert report.after.nodes < report.before.nodes and report.folded_nodes > 0
    # The decoder's first self-attention on the learned queries is input-independent: one Softmax fewer.
    assert report.after.ops.get("Softmax", 0) == report.before.ops["Softmax"] - 1
    _, second = onnx_export.fold_constants(folded)
    assert second.folded_nodes == 0  # nothing input-independent is left
    feeds = verify.random_cases(spec, 1, seed=4)[0][1]
    a = verify.ort_runner(unfolded.SerializeToString())(feeds)
    b = verify.ort_runner(folded.SerializeToString())(feeds)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)


def test_int8_bound_is_enforced(exported: Path, loaded) -> None:
    from edgeact.export.errors import QuantizationError
    from edgeact.export.quantize import INT8_MAX_NORMALIZED_ERR, quantize_checked

    policy, doc, spec = loaded
    model = onnx.load(exported)
    wrapper = ExportWrapper(policy, spec).eval()
    cases = verify.random_cases(spec, 2)
    qmodel, report = quantize_checked(
        model, spec, cases, lambda f: run_torch(wrapper, spec, f), config=doc, force=True
    )
    assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in qmodel.graph.node}
    assert report.int8_bytes < report.fp32_bytes / 2 and report.fp32_ms > 0 and report.int8_ms > 0
    assert report.calibration.endswith("dataset frames")
    # An untrained 32-wide model is far more fragile than a trained one: its int8 loss is over the bound.
    assert report.parity.max_abs_normalized > INT8_MAX_NORMALIZED_ERR
    with pytest.raises(QuantizationError, match="nothing written"):
        quantize_checked(model, spec, cases, lambda f: run_torch(wrapper, spec, f), config=doc)


def test_runtime_reader_accepts_the_artifact(exported: Path, tiny) -> None:
    """The other side of the contract: edgeact.runtime reads what export writes."""
    from edgeact.runtime.artifact import load_artifact

    art = load_artifact(exported)
    assert art.format == "onnx" and art.chunk_size == tiny.policy["chunk_size"]
    assert [c.input_name for c in art.cameras] == list(tiny.cameras)
    assert (art.state_dim, art.action_dim) == (tiny.state_dim, tiny.action_dim)
    assert art.model_sha256 == json.loads(exported.with_suffix(".json").read_text())["model_sha256"]


def test_onnx_artifact_as_engine_source(exported: Path, tmp_path: Path) -> None:
    """What `--format trt` reads on the target: the graph, checked against the hash in its own metadata."""
    from types import SimpleNamespace

    from edgeact.export.artifact import spec_from_sidecar
    from edgeact.export.errors import CheckpointError
    from edgeact.export.trt import _onnx_source

    data, doc = _onnx_source(SimpleNamespace(checkpoint=exported))
    assert data == exported.read_bytes()
    assert spec_from_sidecar(doc, where="test").input_names == [i["name"] for i in doc["inputs"]]
    model = onnx.load(exported)
    model.graph.initializer[0].raw_data = bytes(len(model.graph.initializer[0].raw_data))  # tampered weights
    tampered = tmp_path / "policy.onnx"
    onnx.save(model, tampered)
    with pytest.raises(CheckpointError, match="graph_sha256"):
        _onnx_source(SimpleNamespace(checkpoint=tampered))
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a model")
    with pytest.raises(CheckpointError, match="not an ONNX model"):
        _onnx_source(SimpleNamespace(checkpoint=garbage))


def _robot_observation(art) -> tuple[dict[str, np.ndarray], np.ndarray]:
    rng = np.random.default_rng(3)
    images = {
        c.name: rng.integers(0, 256, (c.height, c.width, c.channels), dtype=np.uint8) for c in art.cameras
    }
    return images, rng.standard_normal(art.state_dim).astype(np.float32)


def _copy_lone(exported: Path, tmp_path: Path) -> Path:
    """Only the .onnx, copied to a fresh folder (as to a robot), under another name: it is its own model."""
    import shutil

    robot = tmp_path / "robot"
    robot.mkdir()
    return Path(shutil.copy(exported, robot / "pusht.onnx"))


def test_lone_onnx_copied_to_the_robot_loads(exported: Path, tmp_path: Path) -> None:
    """Issue 12: the embedded sidecar (model_sha256 null, graph_sha256 checked) is enough to run the file."""
    from edgeact.runtime.artifact import load_artifact, sha256_file

    lone = _copy_lone(exported, tmp_path)
    art = load_artifact(lone)
    assert art.path == lone and art.model_path() == lone
    assert art.model_sha256 == sha256_file(lone)  # what the runtime checks before it loads the model
    assert art.io == load_artifact(exported).io
    images, state = _robot_observation(art)
    feeds = {c.input_name: images[c.name][None] for c in art.cameras}
    feeds["observation.state"] = state[None]
    out = [verify.ort_session(p.read_bytes()).run(["action"], feeds)[0] for p in (lone, exported)]
    np.testing.assert_array_equal(out[0], out[1])


def test_lone_onnx_runs_one_runtime_step(exported: Path, tmp_path: Path) -> None:
    from edgeact.runtime.core import Policy, Status

    lone = _copy_lone(exported, tmp_path)
    policy = Policy.load(lone)  # the runtime's own file check passes
    images, state = _robot_observation(policy.artifact)
    np.testing.assert_array_equal(policy.infer(images, state), Policy.load(exported).infer(images, state))
    session = policy.session()
    session.reset()
    command, status = session.step(images, state)
    assert status == Status.OK and command is not None and np.isfinite(command).all()


def test_lone_onnx_with_a_modified_graph_is_refused(exported: Path, tmp_path: Path) -> None:
    from edgeact.runtime.artifact import ArtifactError, load_artifact

    model = onnx.load(exported)
    init = model.graph.initializer[0]
    init.raw_data = bytes(len(init.raw_data))  # tampered weights, metadata left as exported
    tampered = tmp_path / "policy.onnx"
    tampered.write_bytes(model.SerializeToString())
    with pytest.raises(
        ArtifactError, match=r"policy.onnx: the graph differs from metadata field 'graph_sha256'"
    ):
        load_artifact(tampered)
    tampered.write_bytes(exported.read_bytes()[:1000])  # truncated copy
    with pytest.raises(ArtifactError, match=r"policy\.onnx: .*not an ONNX model"):
        load_artifact(tampered)


def test_parity_bound_follows_pytorch_float32(loaded) -> None:
    """Issue 12: a graph as close to float64 as PyTorch float32 is passes, even above 1e-5 action std;
    one far beyond PyTorch float32's own error fails. Both errors are printed."""
    _, _, spec = loaded
    cases = verify.random_cases(spec, 2)
    std = np.asarray(spec.action_mean_std()[1])
    exact = np.zeros((1, spec.chunk_size, spec.action_dim))

    def off_by(n_std: float):
        return lambda feeds: exact + n_std * std

    close = verify.check_parity_f64(lambda f: exact, off_by(3e-5), off_by(9e-5), spec, cases)
    assert close.passed and close.tolerance == pytest.approx(verify.PARITY_FACTOR * 3e-5)
    assert "pytorch float32 vs pytorch-float64: max abs normalized 3.000e-05" in close.summary()
    far = verify.check_parity_f64(lambda f: exact, off_by(3e-5), off_by(2e-4), spec, cases)
    assert not far.passed and "FAILED" in far.summary()
    tiny = verify.check_parity_f64(lambda f: exact, off_by(0.0), off_by(5e-6), spec, cases)
    assert tiny.passed and tiny.tolerance == verify.ONNX_PARITY_TOLERANCE  # never below the floor


def test_float64_reference_computes_in_float64(loaded) -> None:
    from edgeact.export.wrap import float64_runner

    policy, _, spec = loaded
    feeds = verify.random_cases(spec, 1)[0][1]
    ref64 = float64_runner(policy, spec)(feeds)
    ref32 = run_torch(ExportWrapper(policy, spec).eval(), spec, feeds)
    assert ref64.dtype == np.float64 and next(policy.parameters()).dtype == torch.float32
    err = np.abs(ref64 - ref32).max()
    assert 0 < err < 1e-3 * max(1.0, np.abs(ref64).max())
