#!/usr/bin/env bash
# Every GPU check of this project in one command, for a machine that has torch and
# torchaudio 2.11 but no package registry (such as a lent GPU machine).
#
#   bench/device_check.sh --download   # here, with a registry: the missing wheels -> .whl/
#   bench/device_check.sh              # there: install .whl/, CUDA tests, throughput table
#
# The second form writes to $OUT (default ./device_out): cuda_tests.log, throughput.md (the
# table for docs/TRAINING.md) and throughput.log. Python 3.12 wheels, as the GPU image has.
set -uo pipefail
cd "$(dirname "$0")/.."

wheels=(kaldiio==2.18.1 soundfile==0.14.0 cffi==2.1.1 pycparser==3.12 pyroomacoustics==0.10.1)

if [ "${1:-}" = --download ]; then
  mkdir -p .whl
  for spec in "${wheels[@]}"; do
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
      --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl "$spec" || exit 1
  done
  ls .whl
  exit 0
fi

out=${OUT:-device_out}
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"

# Correctness first: no host-device synchronisation in training steps, a bf16 epoch, CUDA
# extraction = CPU extraction, GPU augmentation = CPU augmentation.
timeout 240 python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_augment.py \
  2>&1 | tee "$out/cuda_tests.log"
tests_rc=${PIPESTATUS[0]}

# Then speed: every benchmark row on CUDA (the compile rows take most of the time).
timeout "${BENCH_TIMEOUT:-420}" python3 bench/train_throughput.py --device cuda \
  --output "$out/throughput.md" 2>&1 | tee "$out/throughput.log"
bench_rc=${PIPESTATUS[0]}
echo "tests rc=$tests_rc bench rc=$bench_rc"
[ "$tests_rc" = 0 ] && [ "$bench_rc" = 0 ]
