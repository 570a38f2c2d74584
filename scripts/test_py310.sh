#!/usr/bin/env bash
# `make test-py310`: the robot-computer install on Python 3.10 with numpy 1.x (what JetPack 6 ships), no torch.
#
# 1. builds the edgeact wheel (the C++ extension included) with a Python 3.10 interpreter (pyenv's, or PY310),
# 2. installs `edgeact[runtime]` into a scratch folder with `numpy<2` and the last onnxruntime for 3.10, and
#    reports its installed size,
# 3. a fresh venv (build/py310/venv) gets `edgeact[runtime,sim]` plus the test tools (pytest, hypothesis, onnx for
#    the hand-built test graphs; still no torch) and runs tests/runtime,
# 4. one `rt-run --robot pusht-sim` episode (50 ticks) on MODEL (below), reporting peak RSS and time to first
#    action.
# Not part of `make test` or CI (several minutes, package downloads). Results: docs/jetson.md.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
out=$here/build/py310
model=${MODEL:-}
ort_version=${ORT_PY310:-1.23.2}  # onnxruntime 1.23.x is the last series with Python 3.10 wheels

py310=${PY310:-}
if [ -z "$py310" ]; then
  for cand in "$(pyenv prefix 3.10 2>/dev/null || true)/bin/python3.10" "$HOME"/.pyenv/versions/3.10*/bin/python3.10 \
              "$(command -v python3.10 || true)"; do
    if [ -x "$cand" ]; then py310=$cand; break; fi
  done
fi
if [ -z "$py310" ] || ! "$py310" -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null; then
  echo "test-py310: no Python 3.10 found (pyenv install 3.10, or PY310=/path/to/python3.10)" >&2
  exit 1
fi
echo "test-py310: $("$py310" -VV | head -1) at $py310"
start=$(date +%s)
rm -rf "$out" && mkdir -p "$out"
printf 'numpy<2\nonnxruntime==%s\n' "$ort_version" > "$out/constraints.txt"
bash scripts/fetch_ort_headers.sh

# 1. The wheel, built with the build tools in their own venv (not installed on the robot).
"$py310" -m venv "$out/build-venv"
"$out/build-venv/bin/pip" install -q --upgrade pip
"$out/build-venv/bin/pip" install -q "scikit-build-core>=0.10" "pybind11>=2.12" cmake ninja
PATH="$out/build-venv/bin:$PATH" "$out/build-venv/bin/pip" wheel -q --no-build-isolation --no-deps . -w "$out/wheels"
wheel=$(ls "$out"/wheels/edgeact-*.whl)
echo "test-py310: built $(basename "$wheel") ($(du -k "$wheel" | cut -f1) KiB)"

# 2. What `pip install edgeact[runtime]` puts on the robot computer.
"$out/build-venv/bin/pip" install -q --target "$out/runtime-only" -c "$out/constraints.txt" "$wheel[runtime]"
size_mb=$(du -sm "$out/runtime-only" | cut -f1)
echo "test-py310: installed size of edgeact[runtime] (numpy<2, onnxruntime $ort_version): $size_mb MiB"
du -sm "$out"/runtime-only/* | sort -rn | head -6 | sed 's/^/  /'
if ls "$out"/runtime-only | grep -qi '^torch'; then echo "test-py310: torch was installed" >&2; exit 1; fi

# 3. The runtime tests in a fresh venv, no torch.
"$py310" -m venv "$out/venv"
vpy=$out/venv/bin/python
"$vpy" -m pip install -q --upgrade pip
"$vpy" -m pip install -q -c "$out/constraints.txt" "$wheel[runtime,sim]" pytest pytest-benchmark hypothesis onnx
"$vpy" -c 'import numpy, onnxruntime, sys; from edgeact.runtime import _core
print(f"test-py310: Python {sys.version.split()[0]}, numpy {numpy.__version__}, onnxruntime {onnxruntime.__version__}")
assert numpy.__version__.startswith("1."), numpy.__version__'
if "$vpy" -c 'import torch' 2>/dev/null; then echo "test-py310: torch is importable in the venv" >&2; exit 1; fi
# -p no:cacheprovider: leave the checkout's .pytest_cache to the main venv. Tests that need torch skip themselves;
# test_video_and_record is left out because `rt-run --record` writes a LeRobot dataset with pyarrow, which comes
# with edgeact[train], not edgeact[runtime].
(cd "$here" && "$vpy" -m pytest -q -p no:cacheprovider tests/runtime \
  --deselect tests/runtime/test_rt_run.py::test_video_and_record ${PYTEST_ARGS:-})

# 4. One rt-run episode, in a process of its own, on MODEL: a path, `pusht` (a real-size PushT ACT with random
# weights exported by the project's .venv, the edgeact-bench export; needs `make install`) or `tiny` (the
# hand-built graph of tests/runtime/tiny_policy.py). Default: pusht when .venv has torch, else tiny.
if [ -z "$model" ]; then
  model=tiny
  if [ -x "$here/.venv/bin/python" ] && "$here/.venv/bin/python" -c 'import torch' 2>/dev/null; then model=pusht; fi
fi
case $model in
  pusht)
    "$here/.venv/bin/python" -c "from pathlib import Path
from edgeact.export.bench import SIZES, build_policy, export_policy
export_policy(*build_policy(SIZES['pusht']), Path('$out/pusht'))" | tail -1
    model=$out/pusht/policy.onnx ;;
  tiny)
    "$vpy" -c "import sys; sys.path.insert(0, 'tests/runtime'); from pathlib import Path
from tiny_policy import build_tiny_policy; build_tiny_policy(Path('$out/tiny'), target=(300.0, 200.0))"
    model=$out/tiny/policy.onnx ;;
esac
"$out/venv/bin/rt-run" --robot pusht-sim --model "$model" --episodes 1 --seed 0 --max-episode-steps 50 \
  --json "$out/rt_run.json"
"$vpy" - "$out/rt_run.json" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
print(f"test-py310: rt-run peak RSS {s['peak_rss_mb']:.0f} MiB, time to first action {s['time_to_first_action_s']:.2f} s")
EOF
echo "test-py310: OK in $(( $(date +%s) - start )) s"
