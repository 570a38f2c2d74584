#!/usr/bin/env bash
# `make check-trt`: compile the TensorRT code against every TensorRT header set in ../shared/third_party/tensorrt.
#
# No TensorRT library can be installed on the development and CI machines, so this is the only check the TensorRT
# backend gets there: each file is compiled to an object file (-c), with -Wall -Wextra -Werror for our code and the
# TensorRT and CUDA headers included as system headers (their own warnings are not ours). Nothing is linked or run.
# The header sets (10.3.0, 11.1.0; /work/shared/third_party/README.md says where they come from) are looked up
# beside the repository, in ../shared, where CI puts a copy; EDGEACT_TRT_HEADERS overrides the folder. Without it
# the check prints SKIPPED and exits 0: the product never needs these headers. The CUDA runtime headers come from
# scripts/fetch_trt_check_deps.sh. A compile error fails the check (exit 1) and names the TensorRT version.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
trt_root=${EDGEACT_TRT_HEADERS:-$here/../shared/third_party/tensorrt}
cuda_root=${EDGEACT_CUDA_HEADERS:-$here/third_party/cuda}
cxx=${CXX:-g++}
out=$here/build/check-trt

if [ ! -d "$trt_root" ]; then
  echo "check-trt: SKIPPED: no TensorRT headers at $trt_root (a copy of shared/ beside the repository;" \
       "set EDGEACT_TRT_HEADERS to the folder holding <version>/include). The TensorRT code was NOT compiled."
  exit 0
fi
versions=()
for inc in "$trt_root"/*/include; do
  [ -f "$inc/NvInferRuntime.h" ] && versions+=("$(basename "$(dirname "$inc")")")
done
if [ ${#versions[@]} -eq 0 ]; then
  echo "check-trt: FAILED: $trt_root exists but holds no <version>/include/NvInferRuntime.h" >&2
  exit 1
fi
bash scripts/fetch_trt_check_deps.sh "$cuda_root"

# The TensorRT code: the backend, the loader that calls it, and the probe of the builder calls export/trt.py makes.
sources=(cpp_ext/src/backend_trt.cpp cpp_ext/src/session.cpp scripts/trt_check/builder_api.cpp)
flags=(-std=c++17 -O1 -Wall -Wextra -Werror -DEDGEACT_WITH_TENSORRT -Icpp_ext/include -Icpp_ext/src
       -isystem "$cuda_root/cuda_runtime/include" -isystem "$cuda_root/cuda_nvcc/include")
failed=()
start=$(date +%s)
for version in "${versions[@]}"; do
  mkdir -p "$out/$version"
  for src in "${sources[@]}"; do
    obj="$out/$version/$(basename "${src%.cpp}").o"
    if "$cxx" "${flags[@]}" -isystem "$trt_root/$version/include" -c "$src" -o "$obj"; then
      echo "check-trt: TensorRT $version: $src compiled"
    else
      echo "check-trt: TensorRT $version: $src FAILED to compile" >&2
      failed+=("$version:$src")
    fi
  done
done
elapsed=$(( $(date +%s) - start ))
if [ ${#failed[@]} -gt 0 ]; then
  echo "check-trt: FAILED (${failed[*]}) in ${elapsed}s" >&2
  exit 1
fi
echo "check-trt: OK: ${#sources[@]} files x TensorRT ${versions[*]} compiled with -Wall -Wextra -Werror" \
     "(${elapsed}s; compiled only, not linked or run)"
