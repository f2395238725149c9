#!/usr/bin/env bash
# Speed-prediction check on a bigger machine with no network (the device machine): CPU bandwidth measured three
# times (repeatability), the GPU's peak from NVML, then random llama models of three sizes in f16/Q8_0/Q4_0 made,
# benchmarked on the CPU (pp64, tg32, 3 repetitions) and predicted leave-one-model-out and from the first 3.
# Needs build/predict-kit/site (llama_cpp's bindings and CPU libraries, gguf, platformdirs, diskcache; carried).
# Usage: bash benchmarks/predict_device.sh   (writes under $OUT when set, else /tmp/predict-out)
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/predict-out}
mkdir -p "$OUT"
KIT=$PWD/build/predict-kit
if [ -f "$KIT/head.tar" ]; then  # a committed tree (git archive HEAD models tests/models/gguf benchmarks), not
  mkdir -p /tmp/predict-head && tar -xf "$KIT/head.tar" -C /tmp/predict-head && cd /tmp/predict-head  # edits
fi
export PYTHONPATH="$PWD:$KIT/site" TOKENOMETER_HOME=/tmp/predict-home
PY=${PY:-python3}
lscpu | grep -E "Model name|^CPU\(s\)|Thread|Core|Socket|NUMA node\(s\)" ; free -g | head -2
nvidia-smi --query-gpu=name,clocks.max.memory,memory.total --format=csv 2>&1
grep -E "^L3|^L2" <(lscpu)
for i in 1 2 3; do
  $PY -c "from models.machine.bandwidth import measure_cpu_bandwidth as m, fmt_rate_bytes as f
b = m(); print('cpu bandwidth', b.threads, 'threads:', f(b.read), 'read', f(b.copy), 'copy, spread', round(b.read_spread, 3))"
done
$PY -m models.cli hardware --no-llama | grep -E "^(CPU|GPU|Bandwidth|note)"
timeout 420 $PY benchmarks/predict_check.py --make-models /tmp/predict-models --bench --store "$OUT/results.sqlite3" -r 3 \
  2>"$OUT/stderr.txt"; echo "exit $?"; grep -iE "error|traceback" "$OUT/stderr.txt" | tail -5
echo "== leave one model out, bandwidth measured again"
$PY benchmarks/predict_check.py --store "$OUT/results.sqlite3" --measure
echo "== learned from the first 3 models measured (the smallest shape)"
$PY benchmarks/predict_check.py --store "$OUT/results.sqlite3" --history 3
echo "== learned from 3 models, one of each size"
$PY benchmarks/predict_check.py --store "$OUT/results.sqlite3" --history-names rand-s.Q8_0,rand-m.F16,rand-l.Q4_0
