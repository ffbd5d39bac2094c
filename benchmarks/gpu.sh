#!/usr/bin/env bash
# GPU figures in one command, from the repository root of a clone:
#
#     bash benchmarks/gpu.sh [--quick]
#
# Makes its own virtual environment (.venv-gpu; VENV=... to change it), installs cvstyle
# with ONNX Runtime's GPU build, the CUDA 12 / cuDNN 9 runtime wheels it loads, the
# TensorRT 10 libraries its TensorRT provider loads, and OpenVINO (whose GPU plugin drives
# Intel GPUs only); then runs benchmarks/gpu_paths.py: forward ms at 1200x630 and
# 1920x1080 for both fixture families on every GPU path that starts, live FPS at
# 1280x720, and each path's grey-level difference from the CPU in float32. Needs an
# NVIDIA driver (nvidia-smi) and Python >= 3.10; nothing else from the system.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv-gpu}"
PYTHON="${PYTHON:-python3}"

if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
else
    echo "gpu.sh: no nvidia-smi: ONNX Runtime's CUDA and TensorRT paths will be skipped" >&2
fi
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install --quiet --upgrade pip
"$VENV/bin/pip" install --quiet -e . 'onnxruntime-gpu[cuda,cudnn]>=1.20' \
    'tensorrt-cu12-libs>=10,<11' 'openvino>=2024.0'

# ONNX Runtime's TensorRT provider dlopens libnvinfer from the library path.
TRT_LIBS="$("$VENV/bin/python" -c 'import os, tensorrt_libs; print(os.path.dirname(tensorrt_libs.__file__))' 2>/dev/null || true)"
export LD_LIBRARY_PATH="${TRT_LIBS}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
exec "$VENV/bin/python" benchmarks/gpu_paths.py "$@"
