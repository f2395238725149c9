#!/usr/bin/env bash
# Capacity on an NVIDIA GPU, on a machine with nvcc and CMake but no network: the CUDA llama.cpp libraries
# and llama-batched-bench built from the same sources (benchmarks/gpu_stage.sh's kit), the starter model
# rebuilt from its header with zero weights (same shapes, same speed), then llama-bench's tests with every
# layer offloaded (-ngl -1), Tokenometer's batched sweep beside llama-batched-bench's, and a chat load test.
# Usage: bash benchmarks/gpu_capacity.sh      (carry build/gpu-kit; output under $OUT when set, else build/)
set -u
cd "$(dirname "$0")/.."
KIT=${GPU_KIT:-build/gpu-kit}
BUILD=build/gpu-llama
RESULTS=${OUT:-build/gpu-results}
mkdir -p "$RESULTS"
say() { printf '\n== %s\n' "$*"; }
export PATH="$PATH:/usr/local/cuda/bin"

# 1. The CUDA libraries (gpu_check.sh's build step), then the reference tool from the same tree.
bash benchmarks/gpu_check.sh build
if [ ! -x "$BUILD/bin/llama-batched-bench" ] && [ -f "$BUILD/CMakeCache.txt" ]; then
  say "building llama-batched-bench from the same sources"
  start=$(date +%s)
  cmake -S "$BUILD/llama.cpp" -B "$BUILD" -DLLAMA_BUILD_COMMON=ON -DLLAMA_BUILD_TOOLS=ON > "$BUILD/tools.log" 2>&1 \
    && timeout 240 cmake --build "$BUILD" --target llama-batched-bench -j"$(nproc)" >> "$BUILD/tools.log" 2>&1 \
    && echo "  built in $(( $(date +%s) - start )) s" || { echo "  failed:"; tail -5 "$BUILD/tools.log"; }
fi
export LLAMA_CPP_LIB_PATH="$PWD/$BUILD/bin"
export PYTHONPATH="$PWD:$PWD/$KIT/site"
export TOKENOMETER_HOME="$PWD/build/gpu-home"
PY=${PY:-python3}

# 2. The starter model, rebuilt from its saved header.
MODEL=build/starter-zero.gguf
$PY - "$KIT/headers" "$MODEL" <<'EOF'
import sys
from pathlib import Path
sys.path.insert(0, "benchmarks")
from fit_check import rebuild
header = sorted(p for p in Path(sys.argv[1]).glob("*.hdr") if "starter" in p.name.lower() or p.name.startswith("0-"))[0]
print("rebuilt", rebuild(header, Path(sys.argv[2])), "from", header.name)
EOF
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

say "tokenometer bench, llama-bench's defaults (-ngl -1: every layer and the output on the GPU)"
$PY -m models.cli bench "$MODEL" -r 3 -o md --no-save 2>&1 | tee "$RESULTS/bench.md" | tail -8

NPL=1,2,4,8,16,32,64
say "tokenometer batched -npp 128 -ntg 128 -npl $NPL, and llama-batched-bench alternately"
for pair in 1 2; do
  $PY -m models.cli batched "$MODEL" -npp 128 -ntg 128 -npl $NPL -c 16384 -o jsonl --no-save > "$RESULTS/ours-$pair.jsonl" 2> "$RESULTS/ours-$pair.err"
  if [ -x "$BUILD/bin/llama-batched-bench" ]; then
    "$BUILD/bin/llama-batched-bench" -m "$MODEL" -c 16384 -b 2048 -ub 512 -ngl 99 -npp 128 -ntg 128 -npl $NPL \
      --output-format jsonl 2>&1 | grep '^{' > "$RESULTS/ref-$pair.jsonl"
  fi
done
$PY - "$RESULTS" <<'EOF'
import json, statistics, sys
from pathlib import Path
out = Path(sys.argv[1])
def load(prefix):
    rows = {}
    for f in sorted(out.glob(f"{prefix}-*.jsonl")):
        for line in f.read_text().splitlines():
            if line.startswith("{"):
                r = json.loads(line)
                rows.setdefault(r["pl"], []).append(r)
    return rows
ours, ref = load("ours"), load("ref")
print("|  B | Tokenometer S_PP | reference S_PP | ratio | Tokenometer S_TG | reference S_TG | ratio |")
print("|---:|---:|---:|---:|---:|---:|---:|")
for b in sorted(ours):
    a_pp = statistics.fmean(r["speed_pp"] for r in ours[b]); a_tg = statistics.fmean(r["speed_tg"] for r in ours[b])
    if b in ref:
        r_pp = statistics.fmean(r["speed_pp"] for r in ref[b]); r_tg = statistics.fmean(r["speed_tg"] for r in ref[b])
        print(f"| {b} | {a_pp:.0f} | {r_pp:.0f} | {a_pp / r_pp:.3f} | {a_tg:.0f} | {r_tg:.0f} | {a_tg / r_tg:.3f} |")
    else:
        print(f"| {b} | {a_pp:.0f} | – | – | {a_tg:.0f} | – | – |")
EOF

say "tokenometer load --profile chat (SLO: TTFT p90 <= 2 s, TPOT p90 <= 100 ms)"
$PY -m models.cli load "$MODEL" --profile chat --concurrency 1,4,16,64 --requests 64 -o md --no-save 2>&1 \
  | tee "$RESULTS/load.md" | tail -12
