#!/usr/bin/env bash
# The Python runtime on aarch64 under qemu-user: Debian's arm64 Python 3.11, numpy 1.x and onnxruntime 1.23.2
# aarch64 wheels, the extension cross-compiled for it, and the torch-free runtime tests run under emulation.
#
#   bash scripts/test_aarch64_python.sh        (after or without `make test-aarch64`; ~10-15 min on 2 busy cores)
#
# 1. an arm64 Debian 12 file tree with python3.11 and its headers (`mmdebstrap --variant=extract`: packages are
#    unpacked, no maintainer script runs, so no binfmt registration is needed), from this machine's Debian mirror,
# 2. the runtime's dependencies as aarch64 wheels (`pip install --target --platform`), no torch,
# 3. `_core` cross-compiled against that Python (cmake/aarch64-linux-gnu.cmake; CMake's FindPython runs the aarch64
#    interpreter through qemu to ask for its paths),
# 4. under `qemu-aarch64-static`: the runtime tests that need neither the simulator (gym-pusht needs pymunk 6,
#    which has no aarch64 wheel) nor a subprocess (the kernel cannot exec an aarch64 binary without binfmt), and a
#    `bench_runtime probe` (load + first action) of the tiny policy.
# Results and times: docs/jetson.md. Not part of `make test` or CI.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
out=$here/build/aarch64-python
python=${PYTHON:-python3}
ort_version=${ORT_PY_AARCH64:-1.23.2}
start=$(date +%s)

need=()
command -v aarch64-linux-gnu-g++ >/dev/null || need+=(g++-aarch64-linux-gnu)
command -v qemu-aarch64-static >/dev/null || need+=(qemu-user-static)
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}"
fi
bash scripts/fetch_ort_headers.sh
rm -rf "$out" && mkdir -p "$out"

# 1. The arm64 file tree, from the mirror this machine's apt uses (the same lookup as fetch_ort_headers.sh).
uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
[ -n "$uri" ] || uri=$(awk '/^deb / {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
[ -n "$uri" ] || { echo "test-aarch64-python: no Debian mirror URI in /etc/apt" >&2; exit 1; }
mmdebstrap --quiet --variant=extract --architectures=arm64 \
  --include=python3.11,libpython3.11-dev,zlib1g,libffi8,libssl3,libexpat1,libbz2-1.0,liblzma5,libstdc++6,libgcc-s1 \
  bookworm "$out/rootfs" "$uri"
# qemu's -L prefix: the file tree plus an aarch64 /proc/cpuinfo (see scripts/test_aarch64.sh for why).
mkdir -p "$out/qroot/proc"
ln -s "$out/rootfs/lib" "$out/qroot/lib" && ln -s "$out/rootfs/usr" "$out/qroot/usr"
for ((i = 0; i < $(nproc); i++)); do
  printf 'processor\t: %d\nBogoMIPS\t: 62.50\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd42\nCPU revision\t: 1\n\n' "$i"
done > "$out/qroot/proc/cpuinfo"
cat > "$out/python" <<EOF
#!/bin/sh
# The aarch64 Python 3.11 under qemu-user, with the aarch64 wheels and the edgeact package on its path.
PYTHONPATH="$out/site:$out/pkg" exec qemu-aarch64-static -L "$out/qroot" "$out/rootfs/usr/bin/python3.11" "\$@"
EOF
chmod +x "$out/python"

# 2. aarch64 wheels for CPython 3.11: the runtime, the test tools, pybind11 for the build.
"$python" -m pip install -q --target "$out/site" --only-binary=:all: --python-version 3.11 --implementation cp \
  --abi cp311 --platform manylinux2014_aarch64 --platform manylinux_2_17_aarch64 --platform manylinux_2_28_aarch64 \
  "numpy<2" "onnxruntime==$ort_version" pyyaml av pyserial python-can canopen opencv-python-headless \
  pytest pytest-benchmark hypothesis onnx "pybind11>=2.12"

# 3. The extension, cross-compiled. pyconfig.h includes <aarch64-linux-gnu/python3.11/pyconfig.h>: the tree's
# include folder is searched after the cross compiler's own (-idirafter).
cmake -S . -B "$out/build" -G Ninja --toolchain cmake/aarch64-linux-gnu.cmake -DCMAKE_BUILD_TYPE=Release \
  -DEDGEACT_WITH_TENSORRT=OFF -DORT_INCLUDE_DIR="$here/third_party/onnxruntime/include" \
  -DEDGEACT_AARCH64_SYSROOT="$out/rootfs" -DEDGEACT_QEMU_PREFIX="$out/qroot" -DPython_EXECUTABLE="$out/python" \
  -DCMAKE_PROGRAM_PATH="$out/rootfs/usr/bin" -DCMAKE_CXX_FLAGS="-idirafter $out/rootfs/usr/include" \
  > "$out/build.log" 2>&1 || { cat "$out/build.log"; exit 1; }
cmake --build "$out/build" --target _core --parallel "${JOBS:-2}" >> "$out/build.log" 2>&1 \
  || { cat "$out/build.log"; exit 1; }
# The package as the wheel lays it out (pyproject.toml, [tool.scikit-build.wheel.packages]).
mkdir -p "$out/pkg/edgeact"
for d in train export runtime firmware_bridge configs; do cp -r "$d" "$out/pkg/edgeact/$d"; done
cp "$out"/build/_core.cpython-311-aarch64-linux-gnu.so "$out/pkg/edgeact/runtime/"
echo "test-aarch64-python: file tree, wheels and extension ready in $(( $(date +%s) - start )) s"

# 4. Under emulation.
"$out/python" -c 'import platform, numpy, onnxruntime
from edgeact.runtime import core
print("test-aarch64-python:", platform.machine(), "Python", platform.python_version(), "numpy", numpy.__version__,
      "onnxruntime", onnxruntime.__version__, "backends", core.available_backends())'
# test_async_loop_merges_chunks_from_the_inference_thread counts commands in 0.3 s of wall time: emulation is
# too slow for its numbers (a host-speed test), so it is left out here.
"$out/python" -m pytest -q -p no:cacheprovider tests/runtime/test_core.py tests/runtime/test_core_loop.py \
  tests/runtime/test_ensemble_core.py tests/runtime/test_ensemble_ref.py tests/runtime/test_prepost.py \
  tests/runtime/test_artifact_reader.py \
  --deselect tests/runtime/test_core_loop.py::test_async_loop_merges_chunks_from_the_inference_thread
"$out/python" -c "import sys; sys.path.insert(0, 'tests/runtime'); from pathlib import Path
from tiny_policy import build_tiny_policy; build_tiny_policy(Path('$out/tiny'))"
"$out/python" -m edgeact.export.bench_runtime probe "$out/tiny/policy.onnx"
echo "test-aarch64-python: OK in $(( $(date +%s) - start )) s"
