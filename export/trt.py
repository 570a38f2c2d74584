"""TensorRT engines: built on the target from the exported ONNX and checked against ONNX Runtime.

An engine only runs on the GPU model and TensorRT version it was built with, so `policy.json` records both
(`engine.gpu`, `engine.compute_capability`, `engine.tensorrt_version`) and the runtime refuses a mismatch. The
usual flow builds on the Jetson from an ONNX artifact made elsewhere (no torch or checkpoint needed there):

    export-policy policy.onnx --format trt --output policy.engine [--fp16]

TensorRT is imported lazily; the CUDA calls use the driver and runtime libraries through ctypes, so the only
Python packages this needs on the target are tensorrt, onnx, onnxruntime and numpy. Not run on these machines
(no GPU); the tests that build engines are marked `trt`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import shlex
from pathlib import Path
from typing import Any

import numpy as np
from edgeact.export.artifact import (
    build_sidecar,
    check_output_path,
    sha256_bytes,
    spec_from_sidecar,
    write_artifact,
)
from edgeact.export.errors import (
    CheckpointError,
    ExportError,
    ParityError,
    TensorRTBuildError,
    TensorRTUnavailableError,
)
from edgeact.export.verify import ParityReport, check_parity, random_cases

log = logging.getLogger(__name__)

# Max abs error of the engine vs ONNX Runtime on normalized actions. fp32 builds clear the TF32 flag so the
# engine computes in true fp32; fp16 keeps about three significant digits through ~10 layers.
TRT_FP32_TOLERANCE = 1e-4
TRT_FP16_TOLERANCE = 2e-2
TRT_PARITY_INPUTS = 4
CU_ATTR_CC_MAJOR, CU_ATTR_CC_MINOR = 75, 76  # CUdevice_attribute (CUDA driver API)
_H2D, _D2H = 1, 2  # cudaMemcpyKind
_TRT_LOGGER: Any = None


def target_instructions(source: str, output: str, *, fp16: bool, workspace_mb: int, cache: str | None) -> str:
    """What to run on the Jetson: export-policy from the ONNX artifact, and the trtexec equivalent."""
    onnx_name = source if source.endswith(".onnx") else "policy.onnx"
    cmd = [
        "export-policy",
        onnx_name,
        "--format",
        "trt",
        "--output",
        output,
        "--workspace-mb",
        str(workspace_mb),
    ]
    trtexec = [
        "/usr/src/tensorrt/bin/trtexec",
        f"--onnx={onnx_name}",
        f"--saveEngine={output}",
        f"--memPoolSize=workspace:{workspace_mb}M",
    ]
    if fp16:
        cmd.append("--fp16")
        trtexec.append("--fp16")
    if cache:
        cmd += ["--timing-cache", cache]
        trtexec.append(f"--timingCacheFile={cache}")
    steps = []
    if not source.endswith(".onnx"):
        steps.append(f"  here:    export-policy {shlex.quote(source)} --format onnx --output policy.onnx")
        steps.append("  copy policy.onnx and policy.json to the Jetson, then")
    steps.append(f"  there:   {shlex.join(cmd)}")
    return (
        "TensorRT engines are specific to one GPU and TensorRT version, so they are built on the target "
        "(the Jetson, JetPack ships TensorRT and trtexec):\n" + "\n".join(steps) + "\n"
        f"  trtexec equivalent (engine only; export-policy also writes policy.json and checks parity):\n"
        f"           {shlex.join(trtexec)}"
    )


def require_tensorrt(args_like: dict[str, Any]) -> Any:
    """`import tensorrt`, or a TensorRTUnavailableError that says how to build on the target."""
    try:
        import tensorrt as trt
    except ImportError as err:
        raise TensorRTUnavailableError(
            "TensorRT is not installed on this machine (`import tensorrt` failed).\n"
            + target_instructions(**args_like)
        ) from err
    return trt


def _logger(trt: Any) -> Any:
    """One TensorRT logger for builder and runtime (TensorRT warns when they differ)."""
    global _TRT_LOGGER
    if _TRT_LOGGER is None:
        _TRT_LOGGER = trt.Logger(trt.Logger.WARNING)
    return _TRT_LOGGER


def _cuda_lib(names: list[str]) -> ctypes.CDLL:
    names = [*names, *(f"/usr/local/cuda/lib64/{n}" for n in names)]  # JetPack's CUDA may be off the ld path
    for name in names:
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    found = ctypes.util.find_library(names[0].split(".so")[0].removeprefix("lib"))
    if found:
        return ctypes.CDLL(found)
    raise TensorRTUnavailableError(f"cannot load {names[0]}: is the CUDA toolkit installed (JetPack)?")


def gpu_info(device: int = 0) -> dict[str, str]:
    """Name and compute capability of CUDA device `device`, from the driver API (libcuda)."""
    cuda = _cuda_lib(["libcuda.so.1", "libcuda.so"])
    dev, major, minor = ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
    name = ctypes.create_string_buffer(256)
    for rc in (
        cuda.cuInit(0),
        cuda.cuDeviceGet(ctypes.byref(dev), device),
        cuda.cuDeviceGetName(name, len(name), dev),
        cuda.cuDeviceGetAttribute(ctypes.byref(major), CU_ATTR_CC_MAJOR, dev),
        cuda.cuDeviceGetAttribute(ctypes.byref(minor), CU_ATTR_CC_MINOR, dev),
    ):
        if rc != 0:
            raise TensorRTUnavailableError(f"CUDA driver error {rc} while querying device {device}")
    return {"gpu": name.value.decode(errors="replace"), "compute_capability": f"{major.value}.{minor.value}"}


def _save_atomic(path: Path, data: bytes) -> None:
    from edgeact.runtime.artifact_commit import write_temp

    os.replace(write_temp(path.parent, path.name, data), path)  # umask mode, not mkstemp's 0600


def build_engine(
    trt: Any, onnx_bytes: bytes, *, fp16: bool, workspace_mb: int, timing_cache: Path | None
) -> bytes:
    """Parse the ONNX graph and build a serialized engine (TensorRT 8.6+ Python API)."""
    logger = _logger(trt)
    builder = trt.Builder(logger)
    flags = 0
    if int(trt.__version__.split(".")[0]) < 10:  # explicit batch is the only mode from TensorRT 10 on
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_bytes):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise TensorRTBuildError(f"TensorRT {trt.__version__} cannot parse the ONNX graph: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    else:
        config.clear_flag(trt.BuilderFlag.TF32)
    cache_bytes = timing_cache.read_bytes() if timing_cache and timing_cache.is_file() else b""
    config.set_timing_cache(config.create_timing_cache(cache_bytes), False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise TensorRTBuildError(f"TensorRT {trt.__version__} failed to build the engine (see its log above)")
    if timing_cache is not None:
        _save_atomic(timing_cache, bytes(memoryview(config.get_timing_cache().serialize())))
    return bytes(memoryview(serialized))


class EngineRunner:
    """Runs a serialized engine on numpy feeds: device buffers from libcudart, `execute_async_v3`."""

    def __init__(self, trt: Any, engine_bytes: bytes) -> None:
        self._cudart = _cuda_lib(["libcudart.so", "libcudart.so.12", "libcudart.so.11.0"])
        self._cudart.cudaMalloc.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t]
        self._cudart.cudaMemcpy.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        self._cudart.cudaFree.argtypes = [ctypes.c_void_p]
        runtime = trt.Runtime(_logger(trt))
        self.engine = runtime.deserialize_cuda_engine(engine_bytes)
        if self.engine is None:
            raise TensorRTBuildError("TensorRT cannot deserialize the engine it just built")
        self.context = self.engine.create_execution_context()
        self.names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.trt = trt

    def _check(self, rc: int, what: str) -> None:
        if rc != 0:
            raise ExportError(f"CUDA runtime error {rc} in {what}")

    def __call__(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        ptrs: dict[str, ctypes.c_void_p] = {}
        host: dict[str, np.ndarray] = {}
        try:
            for name in self.names:
                dtype = np.dtype(self.trt.nptype(self.engine.get_tensor_dtype(name)))
                shape = tuple(self.context.get_tensor_shape(name))
                is_input = self.engine.get_tensor_mode(name) == self.trt.TensorIOMode.INPUT
                host[name] = (
                    np.ascontiguousarray(feeds[name], dtype=dtype) if is_input else np.empty(shape, dtype)
                )
                ptrs[name] = ctypes.c_void_p()
                self._check(
                    self._cudart.cudaMalloc(ctypes.byref(ptrs[name]), host[name].nbytes), "cudaMalloc"
                )
                if is_input:
                    rc = self._cudart.cudaMemcpy(ptrs[name], host[name].ctypes.data, host[name].nbytes, _H2D)
                    self._check(rc, "cudaMemcpy")
                self.context.set_tensor_address(name, ptrs[name].value)
            if not self.context.execute_async_v3(0):
                raise ExportError("TensorRT execute_async_v3 failed")
            self._check(self._cudart.cudaDeviceSynchronize(), "cudaDeviceSynchronize")
            out = host["action"]
            self._check(
                self._cudart.cudaMemcpy(out.ctypes.data, ptrs["action"], out.nbytes, _D2H), "cudaMemcpy"
            )
            return out.astype(np.float32)
        finally:
            for ptr in ptrs.values():
                if ptr.value:
                    self._cudart.cudaFree(ptr)


def _onnx_source(args: Any) -> tuple[bytes, dict[str, Any]]:
    """The ONNX bytes and their sidecar: from an ONNX artifact, or a fresh parity-checked export."""
    from edgeact.export.onnx import embed_metadata, graph_sha256

    if args.checkpoint.suffix == ".onnx":
        import onnx
        from edgeact.export.artifact import check_sidecar
        from edgeact.export.onnx import read_metadata

        try:
            model = onnx.load(args.checkpoint)
        except Exception as err:  # protobuf raises DecodeError and friends
            raise CheckpointError(f"{args.checkpoint}: not an ONNX model: {err}") from err
        where = f"{args.checkpoint} metadata_props[edgeact.policy]"
        doc = check_sidecar(read_metadata(model), where)
        if doc["graph_sha256"] != graph_sha256(model):
            raise CheckpointError(
                f"{args.checkpoint}: the graph does not match the graph_sha256 in its metadata"
            )
        return model.SerializeToString(), doc
    from edgeact.export.cli import export_checked

    checked = export_checked(args)
    doc = build_sidecar(
        checked.spec,
        fmt="onnx",
        model_file="policy.onnx",
        model_sha256=None,
        graph_sha256=graph_sha256(checked.model),
        parity=checked.report.to_json(),
    )
    return embed_metadata(checked.model, doc), doc


def export_engine_cli(args: Any) -> Path:
    """`export-policy SRC --format trt`: build, verify against ONNX Runtime, write engine and sidecar."""
    out_arg = args.output or Path("policy.engine")
    cache = str(args.timing_cache) if args.timing_cache else None
    trt = require_tensorrt(
        {"source": str(args.checkpoint), "output": Path(out_arg).name, "fp16": args.fp16,
         "workspace_mb": args.workspace_mb, "cache": cache}
    )  # fmt: skip
    out = check_output_path(Path(out_arg), ".engine")
    if not args.checkpoint.exists():
        raise CheckpointError(f"{args.checkpoint}: no such checkpoint or ONNX file")
    if args.quantize:
        raise ExportError("--quantize int8 is for ONNX Runtime CPU targets; use --fp16 for TensorRT")
    onnx_bytes, onnx_doc = _onnx_source(args)
    spec = spec_from_sidecar(onnx_doc, where=str(args.checkpoint))
    engine_bytes = build_engine(
        trt, onnx_bytes, fp16=args.fp16, workspace_mb=args.workspace_mb, timing_cache=args.timing_cache
    )
    from edgeact.export.verify import ort_runner

    report: ParityReport = check_parity(
        ort_runner(onnx_bytes),
        EngineRunner(trt, engine_bytes),
        spec,
        random_cases(spec, TRT_PARITY_INPUTS, seed=7),
        tolerance=TRT_FP16_TOLERANCE if args.fp16 else TRT_FP32_TOLERANCE,
        names=("onnxruntime", "tensorrt-fp16" if args.fp16 else "tensorrt-fp32"),
    )
    print(report.summary())
    if not report.passed:
        raise ParityError(f"{args.checkpoint}: {report.summary()}; nothing written")
    engine = {
        **gpu_info(),
        "tensorrt_version": trt.__version__,
        "precision": "fp16" if args.fp16 else "fp32",
        "workspace_mb": args.workspace_mb,
    }
    sidecar = build_sidecar(
        spec,
        fmt="tensorrt",
        model_file=out.name,
        model_sha256=sha256_bytes(engine_bytes),
        graph_sha256=onnx_doc["graph_sha256"],
        parity={**report.to_json(), "onnx": onnx_doc.get("parity")},
        engine=engine,
        quantization=onnx_doc.get("quantization"),
    )
    model_path, json_path = write_artifact(out, engine_bytes, sidecar)
    print(f"wrote {model_path} for {engine['gpu']} (sm {engine['compute_capability']}) and {json_path}")
    return model_path
