#!/usr/bin/env bash
# Results: metrics of every score file (EER, minDCF, actDCF, Cllr; DET and score-
# histogram plots) and a RESULTS file with one line per model and trial list: the models of
# one experiment (--models) and/or of several (--rows), with the second stage's clustering
# statistics per round (--clustering). A row whose model has a calibration
# (<dir>/calibration_<model>/calibration.json, from steps/calibrate.sh on development trials)
# also reports actDCF and Cllr after calibration, and its thresholds go into THRESHOLDS
# beside RESULTS.
set -euo pipefail

# Begin configuration section.
config=              # experiment config (scoring.p_target; the protocol named in RESULTS)
models="final init"  # rows <model> from <exp-dir>/scores_<model>/
rows=                # more rows, "LABEL=DIR/MODEL ...": scores from DIR/scores_MODEL/
clustering=          # "LABEL=PL-DATA-DIR ...": the clustering.json of each round
note=                # one more line for the header (e.g. the wall time of the run)
output=              # the RESULTS file (default <exp-dir>/RESULTS)
# End configuration section.

help_message="Usage: $0 [options] --config <config> <exp-dir> <test-data-dir>...
 e.g.: $0 --config conf/x.yaml --models \"final init\" --rows \"stats=exp/stats/final\" \\
         --clustering \"pl1=data/train_pl1\" exp/x data/test
Reads <dir>/scores_<model>/<set>_<trials>.scores of each row for each trial list of each
test data dir, and each <pl-data-dir>/clustering.json. Writes beside each score file its
.metrics, <dir>/plots_<model>/<set>_<trials>/{det,score_hist}.png, the RESULTS file
(printed too) and, when any row is calibrated, THRESHOLDS beside it."

. "$(dirname "$(readlink -f "$0")")/../utils/lib/sslsv_env.sh"
. "$SSLSV_ROOT/utils/parse_options.sh"

if [ $# -lt 2 ] || [ -z "$config" ]; then
  echo "$help_message" >&2
  exit 1
fi
exp=$1
shift
entries=()
for model in $models; do
  entries+=("$model=$exp/$model")
done
for row in $rows; do
  entries+=("$row")
done
args=()
for entry in ${entries[@]+"${entries[@]}"}; do
  label=${entry%%=*}
  dir=$(dirname "${entry#*=}")
  model=$(basename "${entry#*=}")
  cal=$dir/calibration_$model/calibration.json
  cal_opts=()
  if [ -f "$cal" ]; then
    cal_opts=(--calibration "$cal")
    args+=(--thresholds "$label" "$cal")
  fi
  for data in "$@"; do
    for trials in "$data"/trials "$data"/trials_*; do
      [ -f "$trials" ] || continue
      name=$(basename "$data")_$(basename "$trials")
      scores=$dir/scores_$model/$name
      "$SSLSV_PYTHON" -m sslsv.bin.compute_metrics --config "$config" --trials "$trials" \
        --scores "$scores.scores" --plot-dir "$dir/plots_$model/$name" \
        ${cal_opts[@]+"${cal_opts[@]}"} --output "$scores.metrics" > /dev/null
      args+=(--row "$label $name" "$scores.metrics")
    done
  done
done
[ ${#args[@]} -gt 0 ] || { echo "$0: no row, or no trial list in $*" >&2; exit 1; }
for entry in $clustering; do
  args+=(--clustering "${entry%%=*}" "${entry#*=}/clustering.json")
done
[ -n "$note" ] && args+=(--note "$note")
"$SSLSV_PYTHON" -m sslsv.bin.results --config "$config" --output "${output:-$exp/RESULTS}" \
  "${args[@]}"
