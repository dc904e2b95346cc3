#!/usr/bin/env bash
# Scoring: every trial list of a test data dir (trials, trials_<name>) with a back end.
#
# The back end is the scoring: section of the experiment config: cosine (optionally minus the
# training set's mean embedding) or LDA + PLDA, optionally score-normalised against the
# training set as cohort. The training set is --train-embeddings (an embedding dir of
# steps/extract_embeddings.sh) with the speaker labels of --train-data, which only PLDA and
# speaker cohorts use.
set -euo pipefail

# Begin configuration section.
config=             # experiment config (its scoring: section); required
train_embeddings=   # embedding dir of the training set (mean, PLDA training data, cohort)
train_data=         # data dir of the training set (its utt2spk: PLDA, speaker-mean cohorts)
# End configuration section.

help_message="Usage: $0 [options] --config <config> <embedding-dir> <test-data-dir> <scores-dir>
 e.g.: $0 --config conf/x.yaml --train-embeddings exp/x/embeddings_final/train \\
         --train-data data/train exp/x/embeddings_final/test data/test exp/x/scores_final
Reads <embedding-dir>/embeddings.scp and the trial lists of <test-data-dir>. Writes
<scores-dir>/<set>_<trials>.scores (enroll test score, in trial order) per trial list, and
<scores-dir>/plda.npz when the back end is PLDA (reused by a rerun with the same settings)."

. "$(dirname "$(readlink -f "$0")")/../utils/lib/sslsv_env.sh"
. "$SSLSV_ROOT/utils/parse_options.sh"

if [ $# -ne 3 ] || [ -z "$config" ]; then
  echo "$help_message" >&2
  exit 1
fi
emb=$1/embeddings.scp
data=$2
dir=$3
set_name=$(basename "$data")
for f in "$config" "$emb" ${train_embeddings:+"$train_embeddings/embeddings.scp"}; do
  [ -f "$f" ] || { echo "$0: no such file $f" >&2; exit 1; }
done
train_opts=()
[ -n "$train_embeddings" ] && train_opts+=(--train "$train_embeddings/embeddings.scp")
[ -n "$train_data" ] && train_opts+=(--train-utt2spk "$train_data/utt2spk")

found=false
for trials in "$data"/trials "$data"/trials_*; do
  [ -f "$trials" ] || continue
  found=true
  "$SSLSV_PYTHON" -m sslsv.bin.score --config "$config" --trials "$trials" \
    --enroll "$emb" --test "$emb" ${train_opts[@]+"${train_opts[@]}"} \
    --backend-model "$dir/plda.npz" --output "$dir/${set_name}_$(basename "$trials").scores"
done
$found || { echo "$0: $data has no trial list (trials, trials_<name>)" >&2; exit 1; }
