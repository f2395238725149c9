#!/usr/bin/env bash
# GPU check, on a machine with an NVIDIA GPU, nvcc and CMake but no network: the hardware probe must find the
# GPU through NVML, and the fit estimate is compared with the buffers and VRAM a CUDA llama.cpp really uses.
# Needs build/gpu-kit from benchmarks/gpu_stage.sh (carry it); a .venv is used when it works there.
# Usage: bash benchmarks/gpu_check.sh [build|check|all]      (default all; build alone can be run first)
# Env: PY (python to use), CUDA_ARCH (default 90 = H100/H200), BUILD_TIMEOUT (s, default 540),
#      CUDA_FA=OFF (skip the flash-attention kernels: a much shorter build; "auto" then resolves to off),
#      LLAMA_CPP_LIB_PATH (an existing CUDA libllama.so folder: skips the build)
set -u
cd "$(dirname "$0")/.."
KIT=${GPU_KIT:-build/gpu-kit}
OUT=build/gpu-llama
PHASE=${1:-all}
say() { printf '\n== %s\n' "$*"; }
export PATH="$PATH:/usr/local/cuda/bin"

if [ -z "${PY:-}" ]; then
  if .venv/bin/python -c "import psutil, platformdirs" 2>/dev/null; then PY=.venv/bin/python; else PY=python3; fi
fi
export PYTHONPATH="$PWD:$PWD/$KIT/site"
say "python $($PY --version 2>&1) ($PY); kit: $( [ -d "$KIT" ] && echo "$KIT" || echo "MISSING $KIT")"
for m in psutil platformdirs pynvml llama_cpp numpy; do
  $PY -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('$m') is None)" 2>/dev/null \
    && echo "  $m: found" || echo "  $m: missing"
done
for t in nvidia-smi nvcc cmake g++; do
  command -v $t >/dev/null && echo "  $t: $($t --version 2>&1 | grep -m1 -iE "version|release|[0-9]+\.[0-9]+")" \
    || echo "  $t: MISSING"
done
nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version,power.limit --format=csv 2>&1 | sed 's/^/  /'

if [ "$PHASE" != check ] && [ -z "${LLAMA_CPP_LIB_PATH:-}" ] && [ ! -f "$OUT/bin/libggml-cuda.so" ]; then
  say "building llama.cpp with CUDA (sm_${CUDA_ARCH:-90}, libraries only)"
  if [ ! -f "$KIT/llama.cpp.tar.xz" ] || ! command -v nvcc >/dev/null || ! command -v cmake >/dev/null; then
    echo "  cannot build: needs $KIT/llama.cpp.tar.xz, nvcc and cmake"
  else
    mkdir -p "$OUT" && tar -xJf "$KIT/llama.cpp.tar.xz" -C "$OUT"
    start=$(date +%s)
    cmake -S "$OUT/llama.cpp" -B "$OUT" -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCH:-90}" \
      -DBUILD_SHARED_LIBS=ON -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DGGML_CUDA_NCCL=OFF \
      -DGGML_CUDA_FA="${CUDA_FA:-ON}" \
      -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF \
      -DLLAMA_BUILD_COMMON=OFF -DLLAMA_BUILD_MTMD=OFF -DLLAMA_BUILD_APP=OFF > "$OUT/configure.log" 2>&1 \
      || { echo "  configure failed:"; tail -15 "$OUT/configure.log"; }
    timeout "${BUILD_TIMEOUT:-540}" cmake --build "$OUT" --target llama -j"$(nproc)" > "$OUT/build.log" 2>&1 \
      && echo "  built in $(( $(date +%s) - start )) s" \
      || { echo "  build failed or timed out after $(( $(date +%s) - start )) s (rerun to continue):"; tail -5 "$OUT/build.log"; }
  fi
fi
[ -z "${LLAMA_CPP_LIB_PATH:-}" ] && [ -f "$OUT/bin/libggml-cuda.so" ] && export LLAMA_CPP_LIB_PATH="$PWD/$OUT/bin"
[ "$PHASE" = build ] && exit 0

say "tokenometer hardware --json (LLAMA_CPP_LIB_PATH=${LLAMA_CPP_LIB_PATH:-<the installed llama_cpp>})"
$PY -m models.cli hardware --json || $PY -c "import json; from models.machine.hardware import probe_hardware; \
print(json.dumps(probe_hardware().to_json(), indent=2))" || echo "  the probe failed (missing packages above?)"

say "fit estimate vs measured, all layers on the GPU"
if [ -z "${LLAMA_CPP_LIB_PATH:-}" ] && ! $PY -c "import llama_cpp" 2>/dev/null; then
  echo "  skipped: no CUDA llama.cpp library and no llama_cpp package"
else
  $PY benchmarks/fit_check.py --headers "$KIT/headers" --quick --ngl 99
fi
