#!/usr/bin/env bash
# The "stats" baseline's fit, in place of training (no labels, no training): per-utterance
# MFCC mean + std, standardised per dimension with the statistics of the training set.
#
# Writes a model like training's (final.pt, and init.pt: the unstandardised one) that
# extraction, scoring and RESULTS take as they take a trained one. A rerun with
# the same config and data is a no-op; a changed one is refitted (the log says what changed).
set -euo pipefail

# Begin configuration section.
# (none: everything is in the config)
# End configuration section.

help_message="Usage: $0 [options] <config> <train-data-dir> <exp-dir>
 e.g.: $0 conf/stats.yaml data/train exp/stats
Reads the config (encoder.name: stats), <train-data-dir>/wav.scp (and segments) and the
audio. Writes <exp-dir>/{config.yaml,init.pt,final.pt,log/fit_stats.log}."

. "$(dirname "$(readlink -f "$0")")/../utils/lib/sslsv_env.sh"
. "$SSLSV_ROOT/utils/parse_options.sh"

if [ $# -ne 3 ]; then
  echo "$help_message" >&2
  exit 1
fi
config=$1
data=$2
exp=$3
for f in "$config" "$data/wav.scp"; do
  [ -f "$f" ] || { echo "$0: no such file $f" >&2; exit 1; }
done

"$SSLSV_PYTHON" -m sslsv.bin.fit_stats --config "$config" --data "$data" --exp-dir "$exp"
