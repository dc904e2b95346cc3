#!/usr/bin/env bash
# The pipeline of every recipe: its stages, once. Each recipe folder links it (egs/<corpus>/
# sv.sh -> ../TEMPLATE/sv.sh) and its run.sh calls it with the corpus's data dirs and
# defaults; the corpus's own stage 0 is its local/data.sh.
#
#   cd egs/<corpus> && ./sv.sh --train-set data/train --test-set data/test [--dev-set data/dev] \
#     [--config conf/simclr_ntxent_am.yaml] [--stage 0] [--stop-stage 9] [stage 0's options]
#
# Stages:
#   0  data: local/data.sh (corpus -> data dirs, trial lists, augmentation sets)
#   1  features: log-mels of the sets that are embedded (--fbank-sets)
#   2  first stage: SSL training (--config) -> exp/<experiment>, and the training-free stats
#      baseline (--stats-config)
#   3  embeddings of the init (the untrained encoder), stats and SSL models
#   4  their scores (every trial list of the test set, and the dev set's trials) and their
#      calibration on the dev trials
#   5  RESULTS and THRESHOLDS of those rows (init, stats, ssl), their trained models packaged
#      (model.pt): stages 0-5 are the paper's whole pipeline
#   6  second stage: --rounds rounds of embed -> cluster -> AAM-softmax classifier, each
#      seeded by the newest model (the first by --pl-seed, default the SSL model), then
#      large-margin fine-tuning on the last round's labels (--lmft-config)
#   7  the supervised ceiling: the classifier on the true speakers (--supervised true)
#   8  embeddings, scores and calibration of the round and ceiling models, and the
#      label-free choice among the SSL, round and fine-tuned models (sslsv.bin.select:
#      the split-utterance EER of the dev set's audio, no labels) -> <rounds' exp>_SELECTION
#   9  RESULTS with every row and that choice, THRESHOLDS, every trained model packaged
# Each stage reruns alone (--stage N --stop-stage N): every step reuses what is up to date
# and redoes what changed, saying which.
#
# A new corpus is a folder with path.sh, cmd.sh and conf/ like the others', links utils ->
# ../../utils, steps -> ../../steps and sv.sh -> ../TEMPLATE/sv.sh, its stage 0 in
# local/data.sh (options in a configuration section; it gets --config and --nj from here),
# and a run.sh that calls ./sv.sh with its data dirs and defaults, then "$@".
set -euo pipefail

# Begin configuration section.
stage=0
stop_stage=9
nj=4                # parallel jobs: stage 0, features, and embeddings on CPU
extract_nj=         # embedding jobs (stages 3, 6 and 8); empty: one per visible GPU with
                    # --device cuda (give it with a Slurm --extract-cmd), else --nj
device=cpu          # cpu or cuda: training, embeddings, clustering
ngpu=1              # training processes per node (GPUs; CPU processes with --device cpu)
train_opts=         # more steps/train.sh options, e.g. several nodes:
                    # "--nnodes 2 --node-rank 0 --master-addr HOST"
train_seed=         # set: the SSL training's train.seed; its experiment gets _seed<N>
train_epochs=       # set: the SSL training's train.epochs; its experiment gets _epochs<N>
config=conf/simclr_ntxent_am.yaml      # the first stage (SSL)
stats_config=conf/stats.yaml           # the training-free baseline
pl_config=conf/classifier_pl.yaml      # the second stage: clustering and classifier
lmft_config=        # set: large-margin fine-tuning after the last round (row "lmft")
pl_train_seed=      # set: the second stage's train.seed; its experiments get _seed<N>
results_dir=        # stage 9's RESULTS and THRESHOLDS go there (default: the SSL exp dir)
supervised_config=conf/classifier_supervised.yaml  # the ceiling: true labels
rounds=2            # second-stage rounds (0: none)
pl_seed=            # the first round's seed model (default: the SSL final.pt)
supervised=true     # true: train and report the supervised ceiling (uses labels)
train_set=          # training data dir: SSL, second stage, ceiling (required)
backend_set=        # the back end's training set (mean, PLDA, cohort) and the stats
                    # baseline's (default: --train-set)
test_set=           # test data dir: each of its trial lists (trials, trials_<name>) is
                    # scored and reported (required)
dev_set=            # development data dir: its trials calibrate each model (no calibration
                    # when it has none)
fbank_sets=         # the data dirs of stage 1 (default: --backend-set, --test-set, --dev-set)
# End configuration section.
# fbank_cmd and extract_cmd, where the jobs of stage 1 and of the embeddings run, are options
# too (cmd.sh).

help_message="Usage: $0 [options] [stage 0's options]
 e.g. (egs/mini/run.sh): $0 --train-set data/train --test-set data/test --dev-set data/dev
Runs in a recipe folder (path.sh, cmd.sh, conf/, local/data.sh); the recipe's run.sh calls it.
Options that are not this script's go to stage 0, local/data.sh (local/data.sh --help lists
them); they are checked before any stage runs. Writes data/, feats/ and exp/ in the folder."

if ! [ -f ./path.sh ] || ! [ -f ./cmd.sh ]; then
  echo "$0: run from a recipe folder (egs/<corpus>, as its run.sh does)" >&2
  exit 1
fi
. ./path.sh
. ./cmd.sh
_unknown_options=()   # stage 0's options, passed on to local/data.sh
. utils/parse_options.sh
. utils/recipe.sh

[ $# -eq 0 ] || die "unexpected argument '$1' (see --help)"
check_stages 9
[ -n "$train_set" ] && [ -n "$test_set" ] || die "--train-set and --test-set are required"
[[ "$rounds" =~ ^[0-9]+$ ]] || die "--rounds $rounds: a number of rounds (0: none)"
case $supervised in
  true|false) ;;
  *) die "--supervised $supervised: true or false" ;;
esac
# Stage 0's options, checked now whatever the stages (its parser stops at one it does not
# have; with all of them it prints its help, here thrown away).
data_opts=(--config "$config" --nj "$nj" ${_unknown_options[@]+"${_unknown_options[@]}"})
if [ "$stage" -eq 0 ] || [ ${#_unknown_options[@]} -gt 0 ]; then
  [ -f local/data.sh ] || die "no local/data.sh: this recipe has no stage 0"
  local/data.sh "${data_opts[@]}" --help > /dev/null \
    || die "an option of neither $0 (see --help) nor stage 0 (local/data.sh --help)"
fi

# Checks the whole configs now, so that a bad key fails before stage 0.
experiment_of() { "$SSLSV_PYTHON" -m sslsv.bin.config --config "$1" --get experiment; }
exp=exp/$(experiment_of "$config")
stats_exp=exp/$(experiment_of "$stats_config")
# The second stage's experiments: exp/<ssl>_<pl experiment>[_seed<N>]_pl<round>, _lmft.
pl_exp=${exp}_$(experiment_of "$pl_config")
pl_overrides=""
if [ -n "$pl_train_seed" ]; then
  pl_exp+=_seed$pl_train_seed
  pl_overrides="train.seed=$pl_train_seed"
fi
[ -z "$lmft_config" ] || experiment_of "$lmft_config" > /dev/null
supervised_exp=exp/$(experiment_of "$supervised_config")
overrides=""
if [ -n "$train_epochs" ]; then
  exp=${exp}_epochs$train_epochs
  overrides="train.epochs=$train_epochs"
fi
if [ -n "$train_seed" ]; then
  exp=${exp}_seed$train_seed
  overrides+=" train.seed=$train_seed"
fi
read -r -a train_args <<< "$train_opts"
[ -n "$pl_seed" ] || pl_seed=$exp/final.pt
[ -n "$backend_set" ] || backend_set=$train_set
[ -n "$fbank_sets" ] || fbank_sets="$backend_set $test_set $dev_set"
if [ -z "$extract_nj" ] && [ "$device" != cuda ]; then
  extract_nj=$nj
fi

# The rows of RESULTS: label, model file, config. Stages 3-5: the first stage's models;
# stage 8: the second stage's; stage 9: all of them.
first_models="init $exp/init.pt $config
stats $stats_exp/final.pt $stats_config
ssl $exp/final.pt $config"
second_models=""
clustering=""
pl_data=${train_set}_$(basename "$pl_exp")
for round in $(seq 1 "$rounds"); do
  second_models+="pl$round ${pl_exp}_pl$round/final.pt $pl_config"$'\n'
  clustering+=" pl$round=${pl_data}_pl$round"
done
if [ -n "$lmft_config" ] && [ "$rounds" -gt 0 ]; then
  second_models+="lmft ${pl_exp}_lmft/final.pt $lmft_config"$'\n'
fi
if [ "$supervised" = true ]; then
  second_models+="supervised $supervised_exp/final.pt $supervised_config"$'\n'
fi

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  log "stage 0: data (local/data.sh)"
  local/data.sh "${data_opts[@]}"
fi

# The evaluation's data sets (stages 3-5, 8-9), known once stage 0 has made them: the
# development set calibrates when it has trials.
eval_opts=(--nj "$extract_nj" --cmd "$extract_cmd" --device "$device" --train "$backend_set")
if [ -n "$dev_set" ] && [ -f "$dev_set/trials" ]; then
  eval_opts+=(--dev "$dev_set")
elif [ "$stop_stage" -ge 3 ]; then
  log "no development trials (--dev-set '$dev_set'): no calibration, no THRESHOLDS"
fi

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  log "stage 1: log-mels of $fbank_sets"
  for set in $fbank_sets; do
    steps/make_fbank.sh --nj "$nj" --cmd "$fbank_cmd" --config "$config" \
      "$set" "feats/$(basename "$set")"
  done
fi

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  log "stage 2: SSL training -> $exp; stats baseline -> $stats_exp"
  steps/train.sh --device "$device" --ngpu "$ngpu" --overrides "$overrides" \
    ${train_args[@]+"${train_args[@]}"} "$config" "$train_set" "$exp"
  steps/fit_stats.sh "$stats_config" "$backend_set" "$stats_exp"
fi

if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
  log "stage 3: embeddings of the init, stats and SSL models"
  steps/evaluate_models.sh "${eval_opts[@]}" embed "$first_models" "$exp" "$test_set"
fi

if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ]; then
  log "stage 4: scores of the init, stats and SSL models; calibration on the dev trials"
  steps/evaluate_models.sh "${eval_opts[@]}" score "$first_models" "$exp" "$test_set"
fi

if [ "$stage" -le 5 ] && [ "$stop_stage" -ge 5 ]; then
  log "stage 5: $exp/RESULTS and THRESHOLDS (init, stats, ssl); models packaged as model.pt"
  steps/evaluate_models.sh "${eval_opts[@]}" --config "$config" \
    --note "this run: stages $stage-5 in ${SECONDS}s" report "$first_models" "$exp" "$test_set"
fi

if [ "$stage" -le 6 ] && [ "$stop_stage" -ge 6 ]; then
  seed_model=$pl_seed
  for round in $(seq 1 "$rounds"); do
    log "stage 6: second stage, round $round of $rounds: seed $seed_model -> ${pl_exp}_pl$round"
    steps/pseudo_label_round.sh --nj "$extract_nj" --cmd "$extract_cmd" --device "$device" \
      --ngpu "$ngpu" --train-opts "$train_opts" --overrides "$pl_overrides" "$pl_config" \
      "$seed_model" "$train_set" "${pl_data}_pl$round" "${pl_exp}_pl$round"
    seed_model=${pl_exp}_pl$round/final.pt
  done
  if [ -n "$lmft_config" ] && [ "$rounds" -gt 0 ]; then
    # The last round's labels (corrected ones when the round corrected them).
    labels=${pl_data}_pl$rounds
    [ -d "${labels}_corrected" ] && labels=${labels}_corrected
    log "stage 6: large-margin fine-tuning of $seed_model on $labels -> ${pl_exp}_lmft"
    steps/pseudo_label_round.sh --nj "$extract_nj" --cmd "$extract_cmd" --device "$device" \
      --ngpu "$ngpu" --train-opts "$train_opts" --overrides "$pl_overrides" \
      --labels "$labels" "$lmft_config" "$seed_model" "$train_set" "$labels" "${pl_exp}_lmft"
  fi
fi

if [ "$stage" -le 7 ] && [ "$stop_stage" -ge 7 ] && [ "$supervised" = true ]; then
  log "stage 7: supervised ceiling (true speaker labels) -> $supervised_exp"
  steps/train.sh --device "$device" --ngpu "$ngpu" ${train_args[@]+"${train_args[@]}"} \
    "$supervised_config" "$train_set" "$supervised_exp"
fi

selection=${pl_exp}_SELECTION   # the label-free choice (stage 8), named in RESULTS (stage 9)
[ -n "$results_dir" ] || results_dir=$exp
if [ "$stage" -le 8 ] && [ "$stop_stage" -ge 8 ] && [ -n "$second_models" ]; then
  log "stage 8: embeddings, scores and calibration of the round and ceiling models"
  steps/evaluate_models.sh "${eval_opts[@]}" embed "$second_models" "$exp" "$test_set"
  steps/evaluate_models.sh "${eval_opts[@]}" score "$second_models" "$exp" "$test_set"
  if [ "$rounds" -gt 0 ] && [ -n "$dev_set" ]; then
    log "stage 8: label-free choice of the second stage's model (audio of $dev_set) -> $selection"
    candidates=("ssl=$exp/final.pt")
    while read -r label model _; do
      [ -z "$label" ] || [ "$label" = supervised ] || candidates+=("$label=$model")
    done <<< "$second_models"
    "$SSLSV_PYTHON" -m sslsv.bin.select --data "$dev_set" --output "$selection" \
      --device "$device" "${candidates[@]}"
  fi
fi

second_stage_note() {  # what the rows pl<r> and lmft are, for RESULTS
  [ "$rounds" -gt 0 ] || return 0
  local gate
  gate=$("$SSLSV_PYTHON" -m sslsv.bin.config --config "$pl_config" \
    --get method.gate.kind method.correction.enabled 2> /dev/null | paste -sd' ') || gate=""
  set -- $gate
  echo "; second stage: $pl_config (method.gate.kind ${1:-none}, method.correction.enabled" \
    "${2:-false})${lmft_config:+, fine-tuning: $lmft_config}"
}
selection_note() {
  [ -f "$selection" ] || return 0
  echo "; label-free choice (split-utterance EER of the dev audio, $selection):" \
    "$(tail -n 1 "$selection" | cut -d' ' -f2)"
}
if [ "$stage" -le 9 ] && [ "$stop_stage" -ge 9 ]; then
  log "stage 9: $results_dir/RESULTS (every row) and THRESHOLDS; every model packaged as model.pt"
  mkdir -p "$results_dir"
  steps/evaluate_models.sh "${eval_opts[@]}" --config "$config" --clustering "$clustering" \
    --note "this run: stages $stage-$stop_stage in ${SECONDS}s$(second_stage_note)$(selection_note)" \
    report "$first_models"$'\n'"$second_models" "$results_dir" "$test_set"
fi
