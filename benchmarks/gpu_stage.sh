#!/usr/bin/env bash
# Assemble build/gpu-kit (about 10 MB) for benchmarks/gpu_check.sh, here, where the venv and a registry exist:
#   site/      the pure-Python/abi3 packages the probe needs (psutil, platformdirs, pynvml, typing_extensions)
#              and llama_cpp's Python bindings without their CPU libraries
#   headers/   the header (metadata + tensor table) of the starter model and of each generated shape,
#              from which the device rebuilds same-shaped models with zero weights (the starter is 98 MB)
#   llama.cpp.tar.xz   llama.cpp's sources from the llama-cpp-python sdist of the installed version,
#              without docs, models, tools and the backends a CUDA build does not use
# Usage: bash benchmarks/gpu_stage.sh [path/to/llama_cpp_python-X.tar.gz]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
KIT=build/gpu-kit
VER=$($PY -c "from importlib.metadata import version; print(version('llama_cpp_python'))")
SITE=$($PY -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
rm -rf "$KIT" build/gpu-sdist-x && mkdir -p "$KIT/site/llama_cpp" build/gpu-sdist-x
cp -r "$SITE/psutil" "$SITE/platformdirs" "$SITE/pynvml.py" "$SITE/typing_extensions.py" "$KIT/site/"
cp "$SITE"/llama_cpp/*.py "$KIT/site/llama_cpp/"
find "$KIT/site" -name __pycache__ -prune -exec rm -rf {} +

SDIST=${1:-}
if [ -z "$SDIST" ]; then
  mkdir -p build/sdist
  "$PY" -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$VER" -d build/sdist
  SDIST=build/sdist/llama_cpp_python-$VER.tar.gz
fi
tar -xzf "$SDIST" -C build/gpu-sdist-x
SRC=build/gpu-sdist-x/llama_cpp_python-$VER/vendor
tar -cJf "$KIT/llama.cpp.tar.xz" -C "$SRC" \
  --exclude='llama.cpp/ggml/src/ggml-'{vulkan,sycl,opencl,cann,hexagon,metal,webgpu,openvino,et,virtgpu,zdnn,zendnn} \
  llama.cpp/CMakeLists.txt llama.cpp/cmake llama.cpp/include llama.cpp/src llama.cpp/vendor llama.cpp/ggml \
  llama.cpp/LICENSE llama.cpp/licenses

# The CPU table (for comparison) and the headers the device rebuilds its models from.
"$PY" benchmarks/fit_check.py --save-headers "$KIT/headers" | tee "$KIT/fit_check_cpu.txt"
echo "$VER" > "$KIT/llama_cpp_python_version"
du -sh "$KIT" "$KIT"/*
