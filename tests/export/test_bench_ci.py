"""CI latency check: `edgeact-bench --quick` at the PushT size; fails when the runtime's p50 speed-up over
PyTorch eager (same weights, same ensembling, same run) falls below `CI_SPEEDUP_FLOOR`. A ratio, never an
absolute time: the machine's speed moves with its load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("matplotlib")

from edgeact.export.bench import CI_SPEEDUP_FLOOR, main


@pytest.mark.slow
def test_quick_bench_pusht_speedup_floor(tmp_path: Path, capsys) -> None:
    out = tmp_path / "bench.json"
    rc = main(["--quick", "--sizes", "pusht", "--ticks", "15", "--loop-ticks", "100", "--json", str(out)])
    table = capsys.readouterr().out
    assert rc == 0
    res = json.loads(out.read_text())
    assert (tmp_path / "bench.png").stat().st_size > 1000
    pusht = res["sizes"]["pusht"]
    for stage in ("pre", "infer", "ensemble", "post", "core", "step", "overhead", "python"):
        assert pusht["runtime"][stage]["n"] == 15
    assert pusht["eager"]["step"]["n"] == 15
    assert res["loop"]["ticks"] >= 100 and res["loop"]["jitter"]["n"] >= 100
    assert res["runtime_process"]["torch_imported"] is False
    assert "speed-up over eager" in table
    assert pusht["speedup_p50"] >= CI_SPEEDUP_FLOOR, (
        f"runtime p50 speed-up over eager {pusht['speedup_p50']:.2f}x is below the floor {CI_SPEEDUP_FLOOR}x"
    )
