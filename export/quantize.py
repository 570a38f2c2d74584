"""Int8 quantization for CPU targets (ONNX Runtime static QDQ, per-channel weights) with its cost measured.

Static quantization calibrates activation ranges on inputs run through the fp32 graph: dataset frames when the
checkpoint's dataset is readable (what the robot will see), else random inputs (ranges then fit real frames
poorly, which the parity check below catches). The int8 graph is compared with PyTorch on the export's parity
inputs (their dataset frames when there are any); when its max abs error on normalized actions exceeds
`INT8_MAX_NORMALIZED_ERR`, nothing is written unless forced. The speed-up is measured in the same process,
fp32 and int8 sessions interleaved.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from edgeact.export.artifact import PolicySpec
from edgeact.export.errors import QuantizationError
from edgeact.export.verify import ParityReport, check_parity, dataset_cases, ort_session, random_cases
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

log = logging.getLogger(__name__)

# Max abs error of the int8 graph vs PyTorch on normalized actions (a tenth of one action std).
INT8_MAX_NORMALIZED_ERR = 0.1
CALIBRATION_FRAMES = 32
CALIBRATION_RANDOM = 8
TIMING_RUNS = 10

Case = tuple[str, dict[str, np.ndarray]]


@dataclass
class QuantReport:
    """Int8 vs fp32: parity of the int8 graph against PyTorch, and the latency of both in ONNX Runtime."""

    parity: ParityReport
    calibration: str
    fp32_ms: float
    int8_ms: float
    fp32_bytes: int
    int8_bytes: int

    @property
    def speedup(self) -> float:
        return self.fp32_ms / self.int8_ms if self.int8_ms > 0 else float("nan")

    def to_json(self) -> dict[str, Any]:
        return {
            "calibration": self.calibration,
            "judged_on": self.parity.notes[0] if self.parity.notes else None,
            "bound": INT8_MAX_NORMALIZED_ERR,
            "fp32_ms_p50": self.fp32_ms,
            "int8_ms_p50": self.int8_ms,
            "speedup": self.speedup,
            "fp32_bytes": self.fp32_bytes,
            "int8_bytes": self.int8_bytes,
        }

    def summary(self) -> str:
        return (
            f"int8: {self.fp32_bytes / 1e6:.1f} -> {self.int8_bytes / 1e6:.1f} MB, ONNX Runtime p50 "
            f"{self.fp32_ms:.1f} -> {self.int8_ms:.1f} ms ({self.speedup:.2f}x), "
            f"calibrated on {self.calibration}"
        )


class _Reader(CalibrationDataReader):
    """A calibration data reader over a list of feeds."""

    def __init__(self, feeds: Sequence[dict[str, np.ndarray]]) -> None:
        self._it = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)


def quantize_int8(model: onnx.ModelProto, calibration: Sequence[dict[str, np.ndarray]]) -> onnx.ModelProto:
    """Static QDQ int8 (per-channel int8 weights, uint8 activations) calibrated on `calibration`."""
    reader = _Reader(calibration)
    src = onnx.ModelProto()
    src.CopyFrom(model)
    # ONNX Runtime's quantizer re-infers shapes; stale value_info from the exporter can contradict it.
    del src.graph.value_info[:]
    with tempfile.TemporaryDirectory(prefix="edgeact-int8-") as tmp:
        fp32, int8 = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        onnx.save(src, fp32)
        try:
            quantize_static(
                fp32,
                int8,
                reader,
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                weight_type=QuantType.QInt8,
                activation_type=QuantType.QUInt8,
            )
        except Exception as err:  # the quantizer raises many types; all mean the same to the user
            raise QuantizationError(f"ONNX Runtime int8 quantization failed: {err}") from err
        return onnx.load(int8)


def _p50_ms(sessions: Sequence[Any], feeds: dict[str, np.ndarray]) -> list[float]:
    times: list[list[float]] = [[] for _ in sessions]
    for sess in sessions:  # warm-up
        sess.run(None, feeds)
    for _ in range(TIMING_RUNS):
        for i, sess in enumerate(sessions):
            t0 = time.perf_counter()
            sess.run(None, feeds)
            times[i].append(time.perf_counter() - t0)
    return [float(np.median(t)) * 1e3 for t in times]


def quantize_checked(
    model: onnx.ModelProto,
    spec: PolicySpec,
    cases: Sequence[Case],
    reference: Any,
    *,
    config: dict[str, Any] | None = None,
    force: bool = False,
) -> tuple[onnx.ModelProto, QuantReport]:
    """Quantize, measure parity against `reference` (feeds -> PyTorch actions) and speed; check the bound."""
    calib, why_not = dataset_cases(spec, config or {}, CALIBRATION_FRAMES)
    source = f"{len(calib)} dataset frames"
    if not calib:
        calib = random_cases(spec, CALIBRATION_RANDOM, seed=1234)
        source = f"{len(calib)} random inputs ({why_not})"
    qmodel = quantize_int8(model, [feeds for _, feeds in calib])
    fp32_bytes, int8_bytes = model.SerializeToString(), qmodel.SerializeToString()
    q_sess = ort_session(int8_bytes)
    # Judged on real frames when there are any: uniform-noise images lie far outside the calibrated ranges
    # and say nothing about the loss on what the camera sees.
    real = [c for c in cases if c[0].startswith("dataset")]
    parity = check_parity(
        reference,
        lambda feeds: q_sess.run(["action"], feeds)[0],
        spec,
        real or cases,
        tolerance=INT8_MAX_NORMALIZED_ERR,
        names=("pytorch", "onnxruntime-int8"),
    )
    parity.notes.append("dataset frames" if real else "random inputs only (no dataset frames)")
    fp32_ms, int8_ms = _p50_ms([ort_session(fp32_bytes), q_sess], cases[0][1])
    report = QuantReport(parity, source, fp32_ms, int8_ms, len(fp32_bytes), len(int8_bytes))
    if not parity.passed:
        msg = f"{parity.summary()}; the int8 graph loses more than the bound {INT8_MAX_NORMALIZED_ERR}"
        if not force:
            raise QuantizationError(f"{msg}; nothing written (--force writes it anyway)")
        log.warning("%s; written because forced", msg)
    return qmodel, report
