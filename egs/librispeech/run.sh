#!/usr/bin/env bash
# LibriSpeech recipe (real read speech) on a CPU: the label-free pipeline of the field and its
# honest baselines. Any LibriSpeech-layout root works (SPK/CHAPTER/SPK-CHAPTER-UTT.flac); by
# default the development copy beside the checkout (../shared/data/LibriSpeech: train-clean-5
# with 28 speakers, train-clean-100-sample with one utterance of each of 251 speakers).
#
#   ./run.sh [--config conf/simclr_ntxent_am.yaml] [--rounds 2] [--stage 0] [--stop-stage 7]
#
# Stages: 0 data, 1 log-mels, 2 first stage (SSL; and the training-free stats baseline),
# 3 second stage (--rounds rounds of embed -> cluster -> AAM-softmax classifier, each seeded
# by the newest model), 4 the supervised ceiling (the classifier on the true speakers),
# 5 embeddings, 6 scores and calibration on the dev set, 7 RESULTS (every model, all trials
# and cross-chapter trials), THRESHOLDS and packaged models (model.pt).
# Whole speakers are held out: conf/test_speakers make up the test set, whose trials come
# from local session (chapter) information, and conf/dev_speakers the development set that
# calibrates the scores; both are dropped from every training list.
set -euo pipefail
cd "$(dirname "$0")"
. ./path.sh
. ./cmd.sh   # fbank_cmd, extract_cmd: where the --nj jobs of stages 1, 3 and 5 run

stage=0
stop_stage=7
nj=2
device=cpu
ngpu=1                                # training processes (GPUs; CPU processes with --device cpu)
config=conf/simclr_ntxent_am.yaml     # the first stage (SSL)
stats_config=conf/stats.yaml          # the training-free baseline
pl_config=conf/classifier_pl.yaml     # the second stage: clustering and classifier
supervised_config=conf/classifier_supervised.yaml  # the ceiling: true labels
rounds=2                              # second-stage rounds (0: none)
pl_seed=""                            # the first round's seed model (default: the SSL final.pt)
supervised=true                       # train and score the supervised ceiling (uses labels)
librispeech_root=../../../shared/data/LibriSpeech
eval_subset=train-clean-5             # test speakers come from here
extra_subsets=train-clean-100-sample  # more unlabelled training speech
noise_dir=../../../shared/data/noise  # real background noises, when present
train_seed=""                         # set: train.seed override, exp dir gets _seed<N>
train_epochs=""                       # set: train.epochs override, exp dir gets _epochs<N>
seed=1234
trials_per_utt=50
target_fraction=0.25

. utils/parse_options.sh
. utils/recipe.sh
check_stages 7
# Checks the whole configs now, so that a bad key fails before stage 0.
exp=exp/$("$SSLSV_PYTHON" -m sslsv.bin.config --config "$config" --get experiment)
stats_exp=exp/$("$SSLSV_PYTHON" -m sslsv.bin.config --config "$stats_config" --get experiment)
"$SSLSV_PYTHON" -m sslsv.bin.config --config "$pl_config" --get experiment > /dev/null
supervised_exp=exp/$("$SSLSV_PYTHON" -m sslsv.bin.config --config "$supervised_config" \
  --get experiment)
overrides=""
if [ -n "$train_epochs" ]; then
  exp=${exp}_epochs$train_epochs
  overrides="train.epochs=$train_epochs"
fi
if [ -n "$train_seed" ]; then
  exp=${exp}_seed$train_seed
  overrides+=" train.seed=$train_seed"
fi
[ -n "$pl_seed" ] || pl_seed=$exp/final.pt

# The models that stages 5-7 embed, score, calibrate and report: label, model file, config.
models="init $exp/init.pt $config
stats $stats_exp/final.pt $stats_config
ssl $exp/final.pt $config"
for round in $(seq 1 "$rounds"); do
  models+=$'\n'"pl$round ${exp}_pl$round/final.pt $pl_config"
done
if [ "$supervised" = true ]; then
  models+=$'\n'"supervised $supervised_exp/final.pt $supervised_config"
fi
# data/train: the back end's training set; data/dev: the calibration's development trials.
eval_opts=(--nj "$nj" --cmd "$extract_cmd" --device "$device" --train data/train --dev data/dev)

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  [ -d "$librispeech_root/$eval_subset" ] \
    || die "no LibriSpeech at '$librispeech_root/$eval_subset' (give --librispeech-root)"
  log "stage 0: $librispeech_root ($eval_subset + $extra_subsets), test speakers: conf/test_speakers"
  "$SSLSV_PYTHON" -m sslsv.bin.prepare_data librispeech "$librispeech_root/$eval_subset" \
    data/test --speakers conf/test_speakers --nj "$nj"
  # trials: all of them; trials_cross_chapter: without the same-chapter targets (recording
  # sessions differ, so the channel does not give the speaker away).
  "$SSLSV_PYTHON" -m sslsv.bin.make_trials data/test --num-per-utt "$trials_per_utt" \
    --target-fraction "$target_fraction" --seed "$seed" \
    --cross-session-output data/test/trials_cross_chapter
  # The development set (calibration), held out like the test speakers: conf/dev_speakers
  # (16 utterances each: the target trials) and the single utterances of the speakers of
  # conf/dev_nontarget_speakers (more non-target voices: with four speakers alone the dev
  # non-target scores are far lower than the test set's, and so is the calibration).
  "$SSLSV_PYTHON" -m sslsv.bin.prepare_data librispeech "$librispeech_root/$eval_subset" \
    data/dev_targets --speakers conf/dev_speakers --nj "$nj"
  dev_parts=(data/dev_targets)
  for subset in $extra_subsets; do
    "$SSLSV_PYTHON" -m sslsv.bin.prepare_data librispeech "$librispeech_root/$subset" \
      "data/dev_$subset" --speakers conf/dev_nontarget_speakers --nj "$nj"
    dev_parts+=("data/dev_$subset")
  done
  utils/combine_data.sh data/dev "${dev_parts[@]}"
  "$SSLSV_PYTHON" -m sslsv.bin.make_trials data/dev --num-per-utt "$trials_per_utt" \
    --target-fraction "$target_fraction" --seed "$seed"
  mkdir -p data/local
  cat conf/test_speakers conf/dev_speakers conf/dev_nontarget_speakers \
    > data/local/held_out_speakers
  "$SSLSV_PYTHON" -m sslsv.bin.prepare_data librispeech "$librispeech_root/$eval_subset" \
    data/train_main --exclude-speakers data/local/held_out_speakers --nj "$nj"
  parts=(data/train_main)
  for subset in $extra_subsets; do
    "$SSLSV_PYTHON" -m sslsv.bin.prepare_data librispeech "$librispeech_root/$subset" \
      "data/train_$subset" --exclude-speakers data/local/held_out_speakers --nj "$nj"
    # Subsets can share utterances: keep only those not already in the training list.
    cat "${parts[@]/%//utt2spk}" | cut -d' ' -f1 | sort > "data/train_$subset/seen"
    cut -d' ' -f1 "data/train_$subset/utt2spk" | comm -23 - "data/train_$subset/seen" \
      > "data/train_$subset/new_utts"
    utils/subset_data_dir.sh --utt-list "data/train_$subset/new_utts" \
      "data/train_$subset" "data/train_${subset}_new"
    parts+=("data/train_${subset}_new")
  done
  utils/combine_data.sh data/train "${parts[@]}"
  noise_opts=()
  [ -d "$noise_dir" ] && noise_opts=(--noise-dir "$noise_dir")
  "$SSLSV_PYTHON" -m sslsv.bin.make_aug_sets --out data/aug --seed "$seed" \
    --babble-from data/train ${noise_opts[@]+"${noise_opts[@]}"}
  for set in train test dev; do
    utils/validate_data_dir.sh "data/$set"
  done
fi

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  log "stage 1: log-mels of the sets that stages 3 and 5 embed"
  for set in train test dev; do
    steps/make_fbank.sh --nj "$nj" --cmd "$fbank_cmd" --config "$config" \
      "data/$set" "feats/$set"
  done
fi

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  log "stage 2: SSL training -> $exp; stats baseline -> $stats_exp"
  steps/train.sh --device "$device" --ngpu "$ngpu" --overrides "$overrides" \
    "$config" data/train "$exp"
  steps/fit_stats.sh "$stats_config" data/train "$stats_exp"
fi

if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
  seed_model=$pl_seed
  for round in $(seq 1 "$rounds"); do
    log "stage 3: second stage, round $round of $rounds: seed $seed_model -> ${exp}_pl$round"
    steps/pseudo_label_round.sh --nj "$nj" --cmd "$extract_cmd" --device "$device" \
      --ngpu "$ngpu" "$pl_config" "$seed_model" data/train "data/train_pl$round" \
      "${exp}_pl$round"
    seed_model=${exp}_pl$round/final.pt
  done
fi

if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ] && [ "$supervised" = true ]; then
  log "stage 4: supervised ceiling (true speaker labels) -> $supervised_exp"
  steps/train.sh --device "$device" --ngpu "$ngpu" "$supervised_config" data/train \
    "$supervised_exp"
fi

if [ "$stage" -le 5 ] && [ "$stop_stage" -ge 5 ]; then
  log "stage 5: embeddings of data/train, data/test and data/dev with every model"
  steps/evaluate_models.sh "${eval_opts[@]}" embed "$models" "$exp" data/test
fi

if [ "$stage" -le 6 ] && [ "$stop_stage" -ge 6 ]; then
  log "stage 6: scores of data/test and data/dev; each model calibrated on data/dev/trials"
  steps/evaluate_models.sh "${eval_opts[@]}" score "$models" "$exp" data/test
fi

if [ "$stage" -le 7 ] && [ "$stop_stage" -ge 7 ]; then
  log "stage 7: $exp/RESULTS and THRESHOLDS; trained models packaged as model.pt"
  clustering=""
  for round in $(seq 1 "$rounds"); do
    clustering+=" pl$round=data/train_pl$round"
  done
  steps/evaluate_models.sh "${eval_opts[@]}" --config "$config" --clustering "$clustering" \
    --note "this run: stages $stage-$stop_stage in ${SECONDS}s" report "$models" "$exp" data/test
fi
