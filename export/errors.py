"""The one exception tree of edgeact.export; each error carries the exit code `export-policy` returns."""

from __future__ import annotations


class ExportError(Exception):
    """Base of every error raised while turning a checkpoint into a policy artifact."""

    exit_code = 1


class CheckpointError(ExportError):
    """Not a usable checkpoint or artifact: missing files, unknown schema version, missing stats."""

    exit_code = 3


class OutputPathError(ExportError):
    """The output path cannot be written (missing folder, wrong suffix, not writable)."""

    exit_code = 4


class ParityError(ExportError):
    """The graph disagrees with PyTorch (or the engine with ONNX Runtime) beyond the stated tolerance."""

    exit_code = 5


class QuantizationError(ExportError):
    """Int8 quantization failed or lost more accuracy than the stated bound (override with --force)."""

    exit_code = 6


class TensorRTUnavailableError(ExportError):
    """TensorRT (or a CUDA device) is not available on this machine; engines are built on the target."""

    exit_code = 7


class TensorRTBuildError(ExportError):
    """TensorRT could not parse the ONNX graph or build the engine."""

    exit_code = 8
