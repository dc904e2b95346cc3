#!/usr/bin/env bash
# Stage 5: metrics of every score file of an experiment (EER, minDCF, actDCF, Cllr; DET and
# score-histogram plots) and the experiment's RESULTS file.
set -euo pipefail

# Begin configuration section.
config=              # experiment config (scoring.p_target; the protocol named in RESULTS)
models="final init"  # <exp-dir>/scores_<model>/ for each
# End configuration section.

help_message="Usage: $0 [options] --config <config> <exp-dir> <test-data-dir>...
 e.g.: $0 --config conf/x.yaml --models \"final init\" exp/x data/test
Reads <exp-dir>/scores_<model>/<set>_<trials>.scores for each model and each trial list of
each test data dir. Writes beside each its .metrics, <exp-dir>/plots_<model>/<set>_<trials>/
{det,score_hist}.png and <exp-dir>/RESULTS (printed too)."

. "$(dirname "$(readlink -f "$0")")/../utils/lib/sslsv_env.sh"
. "$SSLSV_ROOT/utils/parse_options.sh"

if [ $# -lt 2 ] || [ -z "$config" ]; then
  echo "$help_message" >&2
  exit 1
fi
exp=$1
shift
rows=()
for model in $models; do
  for data in "$@"; do
    for trials in "$data"/trials "$data"/trials_*; do
      [ -f "$trials" ] || continue
      name=$(basename "$data")_$(basename "$trials")
      scores=$exp/scores_$model/$name
      "$SSLSV_PYTHON" -m sslsv.bin.compute_metrics --config "$config" --trials "$trials" \
        --scores "$scores.scores" --plot-dir "$exp/plots_$model/$name" \
        --output "$scores.metrics" > /dev/null
      rows+=(--row "$model $name" "$scores.metrics")
    done
  done
done
[ ${#rows[@]} -gt 0 ] || { echo "$0: no trial list in $*" >&2; exit 1; }
"$SSLSV_PYTHON" -m sslsv.bin.results --config "$config" --output "$exp/RESULTS" "${rows[@]}"
