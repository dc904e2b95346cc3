#!/usr/bin/env bash
# The evaluation of every recipe, over a list of models (RESULTS rows): one step each.
#
#   embed   embeddings of the test set, the dev set and, for a model whose scoring uses it
#           (a mean to subtract, PLDA, a score-normalisation cohort), the back end's training
#           set;
#   score   scores of every trial list of the test set, and of the dev set's trials, which
#           then calibrate the model (steps/calibrate.sh: an LLR map and its thresholds);
#   report  metrics of every score file, RESULTS (calibrated actDCF and Cllr included) and
#           THRESHOLDS beside it, and each trained model (final.pt) packaged as model.pt
#           with its training mean (when its scoring subtracts one), calibration and card.
#
# The dev set holds speakers that are in neither the training nor the test set: thresholds
# fitted there are what a user could have fitted before seeing the test trials.
set -euo pipefail

# Begin configuration section.
nj=             # embed: parallel jobs (empty: one per visible GPU with --device cuda, 4 on CPU)
cmd=local       # embed: where the jobs run (see cmd.sh)
device=cpu      # embed: cpu or cuda
train=          # the back end's training set (mean, PLDA, cohort); required
dev=            # the development set (its trials calibrate each model); empty: no calibration
config=         # report: the experiment config that RESULTS names; required for report
clustering=     # report: "LABEL=PL-DATA-DIR ...", one clustering line per round
note=           # report: one more RESULTS header line
package=true    # report: package every final.pt as model.pt beside it
# End configuration section.

help_message="Usage: $0 [options] <embed|score|report> <models> <exp-dir> <test-data-dir>
 e.g.: $0 --train data/train --dev data/dev score \"\$models\" exp/x data/test
<models>: lines 'LABEL MODEL-FILE CONFIG' (a row of RESULTS each).
Writes, per model <dir>/<name>.pt: <dir>/embeddings_<name>/{test,dev(,train)}/,
<dir>/scores_<name>/*.scores, <dir>/calibration_<name>/calibration.json; then
<exp-dir>/RESULTS, <exp-dir>/THRESHOLDS and <dir>/model.pt + <dir>/model.card.md."

. "$(dirname "$(readlink -f "$0")")/../utils/lib/sslsv_env.sh"
. "$SSLSV_ROOT/utils/parse_options.sh"

if [ $# -ne 4 ] || [ -z "$train" ]; then
  echo "$help_message" >&2
  exit 1
fi
what=$1
models=$2
exp=$3
test=$4
steps=$SSLSV_ROOT/steps
log() { echo "$(date '+%H:%M:%S') [evaluate_models.sh $what] $*" >&2; }
emb_dir() { echo "$(dirname "$1")/embeddings_$(basename "$1" .pt)"; }
scores_dir() { echo "$(dirname "$1")/scores_$(basename "$1" .pt)"; }
calibration_dir() { echo "$(dirname "$1")/calibration_$(basename "$1" .pt)"; }
name_of() { basename "$1"; }
# check_scoring CONFIG: sets uses_train to whether the config's scoring reads the training
# set's embeddings (sslsv.bin.score: a mean to subtract, PLDA, score normalisation's cohort);
# when it does not, they are neither made nor given to it.
declare -A scoring_of=()
check_scoring() {
  if [ -z "${scoring_of[$1]+set}" ]; then
    scoring_of[$1]=$("$SSLSV_PYTHON" -m sslsv.bin.config --config "$1" --reads-training-set \
      < /dev/null)
  fi
  uses_train=${scoring_of[$1]}
}

case $what in
  embed)
    while read -r label model conf; do
      [ -n "$label" ] || continue
      check_scoring "$conf"
      sets=("$test" ${dev:+"$dev"})
      [ "$uses_train" = false ] || sets=("$train" "${sets[@]}")
      for set in "${sets[@]}"; do
        log "embeddings of $set with $model ($label)"
        "$steps/extract_embeddings.sh" --nj "$nj" --cmd "$cmd" --device "$device" \
          --config "$conf" "$model" "$set" "$(emb_dir "$model")/$(name_of "$set")"
      done
    done <<< "$models"
    ;;
  score)
    while read -r label model conf; do
      [ -n "$label" ] || continue
      emb=$(emb_dir "$model")
      check_scoring "$conf"
      scoring=(--config "$conf")
      if [ "$uses_train" = true ]; then
        scoring+=(--train-embeddings "$emb/$(name_of "$train")" --train-data "$train")
      fi
      for set in "$test" ${dev:+"$dev"}; do
        log "scores of $set with $model ($label)"
        "$steps/score_trials.sh" "${scoring[@]}" "$emb/$(name_of "$set")" "$set" \
          "$(scores_dir "$model")"
      done
      if [ -n "$dev" ]; then
        log "calibration of $model ($label) on $dev/trials"
        cal_dir=$(calibration_dir "$model")
        # A model whose dev trials admit no calibration (targets and non-targets separated:
        # no finite fit) is reported without one, loudly; it does not stop the recipe.
        if ! "$steps/calibrate.sh" --config "$conf" "$model" \
            "$(scores_dir "$model")/$(name_of "$dev")_trials.scores" "$dev/trials" "$cal_dir"; then
          rm -f "$cal_dir/calibration.json"
          log "WARNING: $model ($label) not calibrated: $(tail -n 1 "$cal_dir/log")"
        fi
      fi
    done <<< "$models"
    ;;
  report)
    [ -n "$config" ] || { echo "$0: report needs --config" >&2; exit 1; }
    rows=""
    while read -r label model conf; do
      [ -n "$label" ] && rows+=" $label=${model%.pt}"
    done <<< "$models"
    log "$exp/RESULTS"
    "$steps/make_results.sh" --config "$config" --models "" --rows "$rows" \
      --clustering "$clustering" --note "$note" "$exp" "$test"
    [ "$package" = true ] || exit 0
    while read -r label model conf; do
      [ -n "$label" ] && [ "$(basename "$model")" = final.pt ] || continue
      # --skip-unsupported: a PLDA or score-normalised config is said and skipped (the API
      # scores by plain cosine).
      opts=(--config "$conf" --train-data "$train" --results "$exp/RESULTS" --name "$label"
            --skip-unsupported)
      cal=$(calibration_dir "$model")/calibration.json
      [ -f "$cal" ] && opts+=(--calibration "$cal")
      train_emb=$(emb_dir "$model")/$(name_of "$train")/embeddings.scp
      [ -f "$train_emb" ] && opts+=(--train-embeddings "$train_emb")
      "$SSLSV_PYTHON" -m sslsv.bin.package --checkpoint "$model" \
        --output "$(dirname "$model")/model.pt" "${opts[@]}"
    done <<< "$models"
    ;;
  *)
    echo "$0: the step is embed, score or report, not '$what'" >&2
    exit 1
    ;;
esac
