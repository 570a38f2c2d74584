"""`edgeact.export.bench_runtime`: the loop-jitter and process probes that `edgeact-bench` runs in fresh
torch-free processes, on a small graph policy (tests/runtime/core_graphs.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from edgeact.export.bench_report import format_table
from edgeact.export.bench_runtime import in_subprocess

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runtime"))
from core_graphs import build_graph_policy


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_graph_policy(tmp_path_factory.mktemp("graph"), state_dim=2, action_dim=2, chunk_size=8)


@pytest.mark.parametrize(("realtime", "spin_us"), [(0, 0.0), (10, 0.0), (0, 1000.0)])
def test_loop_probe_reports_every_tick(model: Path, realtime: int, spin_us: float) -> None:
    argv = ["loop", str(model), "--ticks", "40", "--rate", "200", "--spin-us", str(spin_us)]
    if realtime:
        argv += ["--realtime", str(realtime), "--cpu", "0"]
    res = in_subprocess(argv)
    assert res["ticks"] >= 40 and len(res["lateness_ns"]) == res["ticks"] == len(res["tick_ns"])
    assert sum(res["histogram"]["counts"]) == res["ticks"]
    assert res["realtime"] == {
        "priority": realtime,
        "lock_memory": realtime > 0,
        "cpu": [0] if realtime else None,
        "spin_us": spin_us,
    }
    # sleeping or spinning, no tick ever starts before its deadline
    assert min(res["lateness_ns"]) >= 0
    # a system that refuses SCHED_FIFO or mlockall says so; the loop still runs
    assert all("SCHED_FIFO" in w or "mlockall" in w or "affinity" in w for w in res["realtime_warnings"])
    if not realtime:
        assert res["realtime_warnings"] == []
    assert res["torch_imported"] is False and not res["safe_stopped"]


def test_process_probe(model: Path) -> None:
    res = in_subprocess(["probe", str(model)])
    assert res["torch_imported"] is False
    assert 0 < res["time_to_first_action_s"] < 60 and res["peak_rss_mb"] >= res["rss_mb"] > 0


def test_table_labels_int8_apart_from_fp32() -> None:
    row = {"p50_us": 1.0, "p99_us": 2.0, "max_us": 3.0}
    res = {
        "params_millions": 1.0,
        "ticks": 2,
        "model_mb": 4.0,
        "runtime": {"step": row},
        "eager": {"step": row},
        "speedup_p50": 2.0,
        "speedup_p99": 2.0,
        "runtime_p99_over_p50": 1.0,
        "int8": {
            "model_mb": 1.0,
            "runtime": {"step": row},
            "speedup_over_eager_fp32_p50": 6.0,
            "speedup_over_runtime_fp32_p50": 3.0,
            "parity": {"max_abs_err_normalized": 0.5},
            "bound": 0.1,
            "within_bound": False,
        },
    }
    table = format_table({"threads": 1, "sizes": {"pusht": res}})
    assert "runtime fp32 step" in table and "runtime INT8 step" in table and "eager fp32 step" in table
    assert "6.00x over fp32 eager" in table and "0.5 action std" in table and "OVER the bound" in table
