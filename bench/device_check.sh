#!/usr/bin/env bash
# Every GPU check of this project in one command of at most 540 s, for a machine that has
# torch and torchaudio 2.11 for Python 3.12 but no package registry (the lent H100):
#
#   bench/device_check.sh --download   # beforehand, where pip reaches a registry: the five
#                                      # missing wheels (kaldiio, soundfile, ...) -> .whl/
#   bench/device_check.sh              # on the GPU machine: wheels, CUDA tests, benchmarks
#   bench/device_check.sh --dry-run    # here, without a GPU: every part on the CPU with tiny
#                                      # sizes (about 1 min on 2 quiet cores), before a GPU run
#
# .whl/ is git-ignored (wheels are never committed), and the device tool copies only tracked
# and untracked-not-ignored files: the run call must name it, carry: [".whl"] (2.9 MB).
#
# Writes to $OUT (default device_out/, or device_out/dry-run/), each file as it goes, so that
# a part cut off by its time limit keeps what finished before it:
#   device_check.log  this script's log: wheels, GPU, each part's exit status and time
#   cuda_tests.log    pytest: tests/test_cuda*.py and the GPU augmentation test
#   bench.log         the benchmark's own output
#   rows.md           the throughput table, a line appended as each row ends
#   rows.jsonl        the same rows, one JSON line each
#   throughput.md     the whole table made from rows.jsonl at the end (for docs/TRAINING.md)
# Exit status 0 when every part ran through; the table marks each target pass or FAIL.
set -uo pipefail
cd "$(dirname "$0")/.."

# Time limits of the parts (s). One device command may run 600 s; these, plus KILL_AFTER for
# each part, add up to at most 540 s (tests/test_device_check.py checks the sum).
T_INSTALL=20
T_GPU_INFO=10
T_TESTS=150
T_BENCH_CORE=110
T_BENCH_METHODS=140
T_BENCH_COMPILE=80
T_REPORT=15
KILL_AFTER=2 # a part still running this long after its TERM is killed

# The benchmark rows, most wanted first within each part: a part cut off by its limit loses
# its last rows only. Embedding rows stand for every method (all embed with Fast ResNet-34).
ROWS_CORE=model-bf16,pipeline-bf16,loader,loader-dino,extract-bf16,stage3-fp32,whole-fp32,extract-fp32,model-fp32
ROWS_METHODS=model-bf16-moco,pipeline-bf16-moco,model-bf16-ssps,pipeline-bf16-ssps,model-bf16-cls,pipeline-bf16-cls,model-bf16-dino,pipeline-bf16-dino
ROWS_COMPILE=model-bf16-compile,extract-bf16-compile,pipeline-bf16-compile

wheels=(kaldiio==2.18.1 soundfile==0.14.0 cffi==2.1.1 pycparser==3.12 pyroomacoustics==0.10.1)
# Python 3.12 x86-64 wheels, as the GPU image needs, whatever Python runs pip.
wheel_tags=(--only-binary=:all: --python-version 3.12 --implementation cp
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)

mode=gpu
case "${1:-}" in
  --download)
    mkdir -p .whl
    for spec in "${wheels[@]}"; do
      python3 -m pip download -q --no-deps "${wheel_tags[@]}" -d .whl "$spec" || exit 1
    done
    ls -l .whl
    echo "now run bench/device_check.sh on the GPU machine with .whl carried (carry: [\".whl\"])"
    exit 0
    ;;
  --dry-run) mode=dry ;;
  "") ;;
  *)
    echo "usage: bench/device_check.sh [--download | --dry-run]" >&2
    exit 2
    ;;
esac

if [ "$mode" = dry ]; then
  out=${OUT:-device_out/dry-run}
  py=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
  site=$(mktemp -d) work=$(mktemp -d)
  trap 'rm -rf "$site" "$work"' EXIT
  # The real rows on the CPU, as small as they go; the compile rows are skipped (CUDA only).
  bench_args=(--device cpu --batch-size 4 --steps 1 --warmup 0 --num-workers 1 --num-files 8
    --num-rirs 2)
  export PYTHONPATH="$PWD" # the wheels are Python 3.12 builds: installed, not imported
else
  out=${OUT:-device_out}
  py=${PYTHON:-python3}
  site=/tmp/site work=/tmp/sslsv-bench
  bench_args=(--device cuda)
  export PYTHONPATH="$site:$PWD"
fi
export PYTHONUNBUFFERED=1
mkdir -p "$out" "$work"
log=$out/device_check.log
rm -f "$log" "$out"/{cuda_tests.log,bench.log,rows.md,rows.jsonl,throughput.md}
bench_args+=(--keep-going --workdir "$work" --rows-md "$out/rows.md" --rows-jsonl "$out/rows.jsonl")

note() { echo "[device_check $(date -u +%H:%M:%S) +${SECONDS}s] $*" | tee -a "$log"; }

failed=()
# part NAME LIMIT LOGFILE COMMAND...: the command under its time limit, output to LOGFILE.
part() {
  local name=$1 limit=$2 logfile=$3 began=$SECONDS rc
  shift 3
  note "$name: start (limit ${limit} s)"
  timeout --kill-after="$KILL_AFTER" "$limit" "$@" >>"$logfile" 2>&1
  rc=$?
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    note "$name: TIMED OUT after $((SECONDS - began)) s (what it finished is kept)"
  else
    note "$name: exit status $rc after $((SECONDS - began)) s"
  fi
  [ "$rc" = 0 ] || failed+=("$name")
  return "$rc"
}

note "mode $mode, python $py, output $out"

# 1. The wheels (the real run imports them; the dry run only checks that they install).
if ls .whl/*.whl >/dev/null 2>&1; then
  missing=()
  for spec in "${wheels[@]}"; do
    ls .whl/"${spec%%==*}"-"${spec##*==}"-*.whl >/dev/null 2>&1 || missing+=("$spec")
  done
  [ ${#missing[@]} = 0 ] || note "WARNING: .whl/ lacks ${missing[*]}"
  part install "$T_INSTALL" "$log" "$py" -m pip install -q --no-index --no-deps --no-compile \
    --no-cache-dir --upgrade "${wheel_tags[@]}" --target "$site" .whl/*.whl
elif [ "$mode" = dry ]; then
  note "install: skipped, no .whl/ (bench/device_check.sh --download fills it)"
else
  note "ERROR: no .whl/: run bench/device_check.sh --download where pip reaches a registry," \
    "and carry .whl to this machine (carry: [\".whl\"])"
  exit 2
fi

# 2. The GPU, and torch's view of it (a run where torch sees no GPU would skip every test).
gpu_check='import subprocess, sys, torch
if sys.argv[1] == "gpu":
    query = ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv"]
    subprocess.run(query, check=True)
    assert torch.cuda.is_available(), "torch sees no CUDA device"
name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
print("torch", torch.__version__, "CUDA device:", name)'
part gpu "$T_GPU_INFO" "$log" "$py" -c "$gpu_check" "$mode"

# 3. Correctness first: no host-device synchronisation in training steps, a bf16 epoch, CUDA
# extraction = CPU extraction, GPU augmentation = CPU augmentation (skipped without CUDA).
shopt -s nullglob
cuda_tests=(tests/test_cuda*.py)
part tests "$T_TESTS" "$out/cuda_tests.log" "$py" -m pytest -q -p no:cacheprovider -rs \
  --durations=15 "${cuda_tests[@]}" tests/test_augment.py::test_cuda_matches_cpu

# 4. Then speed, in three parts with their own limits (the test data is written once).
part bench-core "$T_BENCH_CORE" "$out/bench.log" "$py" bench/train_throughput.py \
  "${bench_args[@]}" --rows "$ROWS_CORE"
part bench-methods "$T_BENCH_METHODS" "$out/bench.log" "$py" bench/train_throughput.py \
  "${bench_args[@]}" --rows "$ROWS_METHODS"
part bench-compile "$T_BENCH_COMPILE" "$out/bench.log" "$py" bench/train_throughput.py \
  "${bench_args[@]}" --rows "$ROWS_COMPILE"
part report "$T_REPORT" "$out/bench.log" "$py" bench/train_throughput.py --report "$out/rows.jsonl" \
  --output "$out/throughput.md"

[ -f "$out/throughput.md" ] && cat "$out/throughput.md"
verdicts=$(grep -o '| pass |\|| FAIL |' "$out/rows.md" 2>/dev/null | sort | uniq -c | tr -s ' \n' ' ')
note "targets:${verdicts:- none judged}; parts failed: ${failed[*]:-none}"
[ ${#failed[@]} = 0 ]
