#!/usr/bin/env bash
# `make test-aarch64`: the C++ core and its ctest tests cross-compiled for aarch64 and run under qemu-user.
#
# 1. installs Debian's cross compiler and qemu-user-static when missing (apt-get; root or sudo),
# 2. takes libonnxruntime.so from the onnxruntime manylinux aarch64 wheel (ORT_AARCH64_VERSION pins it),
# 3. configures with cmake/aarch64-linux-gnu.cmake (no Python module, no TensorRT) and builds in build/aarch64,
# 4. runs ctest; every test goes through `qemu-aarch64-static -L /usr/aarch64-linux-gnu` (no binfmt needed).
#    Besides the unit tests, ort_library dlopens the aarch64 libonnxruntime with init_onnxruntime() and runs the
#    tiny ONNX policy of tests/runtime/tiny_policy.py when a Python with onnx is at hand to write it.
# The `timing` tests (ctest label: wall-clock behaviour of the loop) depend on the host's speed; under emulation a
# failing test is rerun up to CTEST_TRIES (3) times before it counts, which absorbs a late tick but not a wrong
# result (a deterministic failure fails every try). docs/jetson.md has the measured result and wall time.
# Not part of `make test` or CI.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
out=$here/build/aarch64
sysroot=/usr/aarch64-linux-gnu
ort_dir=$here/third_party/onnxruntime-aarch64
python=${PYTHON:-python3}
start=$(date +%s)

if ! command -v aarch64-linux-gnu-g++ >/dev/null || ! command -v qemu-aarch64-static >/dev/null; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  echo "test-aarch64: installing g++-aarch64-linux-gnu and qemu-user-static (apt-get)"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq g++-aarch64-linux-gnu qemu-user-static
fi
bash scripts/fetch_ort_headers.sh

if [ -n "${ORT_AARCH64_VERSION:-}" ] && ! grep -q "^onnxruntime-$ORT_AARCH64_VERSION-" "$ort_dir/SOURCE_WHEEL" 2>/dev/null; then
  rm -rf "$ort_dir"  # another version was asked for
fi
if ! ls "$ort_dir"/libonnxruntime.so.* >/dev/null 2>&1; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  spec=onnxruntime${ORT_AARCH64_VERSION:+==$ORT_AARCH64_VERSION}
  echo "test-aarch64: fetching the $spec manylinux aarch64 wheel for its libonnxruntime"
  "$python" -m pip download -q --no-deps --platform manylinux_2_28_aarch64 --python-version 3.11 \
    --only-binary=:all: -d "$work" "$spec"
  "$python" -c 'import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
z.extractall(sys.argv[2], [n for n in z.namelist() if n.startswith("onnxruntime/capi/libonnxruntime.so")])' \
    "$(ls "$work"/onnxruntime-*.whl)" "$work/x"
  rm -rf "$ort_dir" && mkdir -p "$ort_dir"
  cp "$work"/x/onnxruntime/capi/libonnxruntime.so* "$ort_dir/"
  basename "$work"/onnxruntime-*.whl > "$ort_dir/SOURCE_WHEEL"
fi
ort_lib=$(ls "$ort_dir"/libonnxruntime.so.* | head -1)
echo "test-aarch64: $(basename "$ort_lib") from $(cat "$ort_dir/SOURCE_WHEEL"): $(file -b "$ort_lib" | cut -d, -f1-2)"

# The tiny policy graph for ort_library, written by any Python that has onnx (the project's .venv has it).
model=""
for py in "$here/.venv/bin/python" "$python"; do
  if [ -x "$(command -v "$py")" ] && "$py" -c 'import onnx' 2>/dev/null; then
    "$py" -c "import sys; sys.path.insert(0, 'tests/runtime'); from pathlib import Path
from tiny_policy import build_tiny_policy; build_tiny_policy(Path('$out/model'))" && model=$out/model/policy.onnx
    break
  fi
done
[ -n "$model" ] || echo "test-aarch64: no Python with onnx: ort_library only loads the library"

# qemu-user 7.2 (Debian 12) shows the guest the host's /proc/cpuinfo; ONNX Runtime's CPU detection (cpuinfo) finds
# no ARM core in an x86 one and dereferences NULL at load. The -L prefix below links to the sysroot and adds an
# aarch64 proc/cpuinfo (one Cortex-A78AE per host CPU: implementer 0x41, part 0xd42, the Orin's core; Arm's
# Cortex-A78AE Technical Reference Manual, MIDR_EL1), which qemu opens instead of the host's.
prefix=$out-qemu-root
rm -rf "$prefix" && mkdir -p "$prefix/proc"
ln -s "$sysroot/lib" "$prefix/lib" && ln -s "$sysroot" "$prefix/usr"
for ((i = 0; i < $(nproc); i++)); do
  printf 'processor\t: %d\nBogoMIPS\t: 62.50\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd42\nCPU revision\t: 1\n\n' "$i"
done > "$prefix/proc/cpuinfo"

generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
cmake -S . -B "$out" "${generator[@]}" --toolchain cmake/aarch64-linux-gnu.cmake -DCMAKE_BUILD_TYPE=Release \
  -DEDGEACT_BUILD_PYTHON_MODULE=OFF -DEDGEACT_BUILD_TESTS=ON -DEDGEACT_WITH_TENSORRT=OFF \
  -DORT_INCLUDE_DIR="$here/third_party/onnxruntime/include" -DEDGEACT_TEST_ORT_LIBRARY="$ort_lib" \
  -DEDGEACT_TEST_ORT_MODEL="$model" -DEDGEACT_QEMU_PREFIX="$prefix" > "$out.log" 2>&1 || { cat "$out.log"; exit 1; }
cmake --build "$out" --parallel "${JOBS:-2}" >> "$out.log" 2>&1 || { cat "$out.log"; exit 1; }
file -b "$out/test_loop" | cut -d, -f1-2
echo "test-aarch64: configured and built in $(( $(date +%s) - start )) s; running ctest under qemu-aarch64-static"
cd "$out" && ctest --output-on-failure --repeat "until-pass:${CTEST_TRIES:-3}"
