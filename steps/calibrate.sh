#!/usr/bin/env bash
# Calibration of a model's scores on development trials: a linear score -> log-likelihood-
# ratio map (prior-weighted logistic regression) and the thresholds of its operating points.
#
# The development trials must be the model's own dev split (held-out speakers that are not
# in the test trials): calibrating on the test trials would report a calibration that no
# user could have made.
set -euo pipefail

# Begin configuration section.
config=            # experiment config (its scoring: section is recorded and checked); required
p_target=0.01      # prior of the calibration (and of its Bayes threshold)
# End configuration section.

help_message="Usage: $0 [options] --config <config> <model-file> <dev-scores> <dev-trials> <dir>
 e.g.: $0 --config conf/x.yaml exp/x/final.pt exp/x/scores_final/dev_trials.scores \\
         data/dev/trials exp/x/calibration_final
Reads the model file (its fingerprint ties the calibration to it), the development score
file and trial list. Writes <dir>/calibration.json (the map, the thresholds at the EER,
minDCF and false-accept-rate points, the dev metrics before and after) and <dir>/log."

. "$(dirname "$(readlink -f "$0")")/../utils/lib/sslsv_env.sh"
. "$SSLSV_ROOT/utils/parse_options.sh"

if [ $# -ne 4 ] || [ -z "$config" ]; then
  echo "$help_message" >&2
  exit 1
fi
model=$1
scores=$2
trials=$3
dir=$4
for f in "$config" "$model" "$scores" "$trials"; do
  [ -f "$f" ] || { echo "$0: no such file $f" >&2; exit 1; }
done
mkdir -p "$dir"
status=0
"$SSLSV_PYTHON" -m sslsv.bin.calibrate --config "$config" --checkpoint "$model" \
  --trials "$trials" --scores "$scores" --p-target "$p_target" \
  --output "$dir/calibration.json" > "$dir/log" 2>&1 || status=$?
cat "$dir/log" >&2
exit "$status"
