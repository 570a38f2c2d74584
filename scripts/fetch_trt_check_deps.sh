#!/usr/bin/env bash
# Fetch the CUDA runtime headers that `make check-trt` compiles the TensorRT code against.
#
# TensorRT's NvInferRuntime.h and our backend include cuda_runtime_api.h, which needs crt/host_defines.h. Both come
# from the CUDA wheels on the Python package index: nvidia-cuda-runtime-cu12 (nvidia/cuda_runtime/include) and
# nvidia-cuda-nvcc-cu12 (nvidia/cuda_nvcc/include, for crt/). Only their include/ folders are kept; nothing here is
# linked or run, and the product never needs them. CUDA 12.6 is the CUDA of JetPack 6.1/6.2 (docs/jetson.md).
# Usage: scripts/fetch_trt_check_deps.sh [DEST]   (default: third_party/cuda; PYTHON picks the pip to use)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
dest=${1:-$here/third_party/cuda}
python=${PYTHON:-python3}
cuda_version=${CUDA_HEADERS_VERSION:-12.6.*}
if [ -f "$dest/cuda_runtime/include/cuda_runtime_api.h" ] && [ -f "$dest/cuda_nvcc/include/crt/host_defines.h" ]; then
  echo "CUDA headers already in $dest"; exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if ! "$python" -m pip --version >/dev/null 2>&1; then  # a Python without pip: a throwaway venv brings one
  "$python" -m venv "$work/venv" && python=$work/venv/bin/python
fi
echo "fetching nvidia-cuda-runtime-cu12 and nvidia-cuda-nvcc-cu12 ($cuda_version) wheels for their headers..."
"$python" -m pip download -q --no-deps --only-binary=:all: -d "$work" \
  "nvidia-cuda-runtime-cu12==$cuda_version" "nvidia-cuda-nvcc-cu12==$cuda_version"
mkdir -p "$work/x"
for whl in "$work"/*.whl; do  # a wheel is a zip file; only its include folders are extracted
  "$python" -c 'import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
z.extractall(sys.argv[2], [n for n in z.namelist() if "/include/" in n])' "$whl" "$work/x"
  basename "$whl" >> "$work/x/SOURCE_WHEELS"
done
rm -rf "$dest.tmp" && mkdir -p "$dest.tmp"
for pkg in cuda_runtime cuda_nvcc; do
  [ -d "$work/x/nvidia/$pkg/include" ] || { echo "error: no nvidia/$pkg/include in the downloaded wheels" >&2; exit 1; }
  mkdir -p "$dest.tmp/$pkg" && cp -r "$work/x/nvidia/$pkg/include" "$dest.tmp/$pkg/"
done
cp "$work/x/SOURCE_WHEELS" "$dest.tmp/"
rm -rf "$dest" && mv "$dest.tmp" "$dest"
echo "CUDA headers in $dest ($(tr '\n' ' ' < "$dest/SOURCE_WHEELS"))"
