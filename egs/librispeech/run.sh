#!/usr/bin/env bash
# LibriSpeech recipe (real read speech) for the margin / symmetry / method ablation on a CPU.
# Any LibriSpeech-layout root works (SPK/CHAPTER/SPK-CHAPTER-UTT.flac); by default the
# development copy beside the checkout (../shared/data/LibriSpeech: train-clean-5 with 28
# speakers, train-clean-100-sample with one utterance of each of 251 speakers).
#
#   ./run.sh [--config conf/simclr_ntxent_am.yaml] [--train-seed 1] [--stage 0] [--stop-stage 5]
#
# Whole speakers (conf/test_speakers) are held out: they are dropped from every training list
# and make up the test set, whose trials come from local session (chapter) information.
set -euo pipefail
cd "$(dirname "$0")"
. ./path.sh
. ./cmd.sh   # fbank_cmd, extract_cmd: where the --nj jobs of stages 1 and 3 run

stage=0
stop_stage=5
nj=2
device=cpu
ngpu=1                                # stage 2 processes (GPUs; CPU processes with --device cpu)
config=conf/simclr_ntxent_am.yaml
librispeech_root=../../../shared/data/LibriSpeech
eval_subset=train-clean-5             # test speakers come from here
extra_subsets=train-clean-100-sample  # more unlabelled training speech
noise_dir=../../../shared/data/noise  # real background noises, when present
train_seed=""                         # set: train.seed override, exp dir gets _seed<N>
seed=1234
trials_per_utt=50
target_fraction=0.25
models="final init"

. utils/parse_options.sh
. utils/recipe.sh
check_stages 5
# Checks the whole config now, so that a bad key fails before stage 0.
exp=exp/$("$SSLSV_PYTHON" -m sslsv.bin.config --config "$config" --get experiment)
overrides=""
if [ -n "$train_seed" ]; then
  exp=${exp}_seed$train_seed
  overrides="train.seed=$train_seed"
fi

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  [ -d "$librispeech_root/$eval_subset" ] \
    || die "no LibriSpeech at '$librispeech_root/$eval_subset' (give --librispeech-root)"
  log "stage 0: $librispeech_root ($eval_subset + $extra_subsets), test speakers: conf/test_speakers"
  "$SSLSV_PYTHON" -m sslsv.bin.prepare_data librispeech "$librispeech_root/$eval_subset" \
    data/test --speakers conf/test_speakers --nj "$nj"
  "$SSLSV_PYTHON" -m sslsv.bin.make_trials data/test --num-per-utt "$trials_per_utt" \
    --target-fraction "$target_fraction" --seed "$seed"
  "$SSLSV_PYTHON" -m sslsv.bin.prepare_data librispeech "$librispeech_root/$eval_subset" \
    data/train_main --exclude-speakers conf/test_speakers --nj "$nj"
  parts=(data/train_main)
  for subset in $extra_subsets; do
    "$SSLSV_PYTHON" -m sslsv.bin.prepare_data librispeech "$librispeech_root/$subset" \
      "data/train_$subset" --exclude-speakers conf/test_speakers --nj "$nj"
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
  for set in train test; do
    utils/validate_data_dir.sh "data/$set"
  done
fi

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  log "stage 1: log-mels of the sets stage 3 embeds (training makes its own on the device)"
  for set in train test; do
    steps/make_fbank.sh --nj "$nj" --cmd "$fbank_cmd" --config "$config" \
      "data/$set" "feats/$set"
  done
fi

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  log "stage 2: SSL training -> $exp"
  steps/train_ssl.sh --device "$device" --ngpu "$ngpu" --overrides "$overrides" \
    "$config" data/train "$exp"
fi

if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
  for model in $models; do
    for set in train test; do  # train: the mean that cosine scoring subtracts
      log "stage 3: embeddings of data/$set with $model.pt"
      steps/extract_embeddings.sh --nj "$nj" --cmd "$extract_cmd" --device "$device" \
        --config "$config" "$exp/$model.pt" "data/$set" "$exp/embeddings_$model/$set"
    done
  done
fi

if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ]; then
  for model in $models; do
    log "stage 4: scores of data/test with $model.pt"
    steps/score_trials.sh --config "$config" --train-embeddings "$exp/embeddings_$model/train" \
      --train-data data/train "$exp/embeddings_$model/test" data/test "$exp/scores_$model"
  done
fi

if [ "$stage" -le 5 ] && [ "$stop_stage" -ge 5 ]; then
  log "stage 5: $exp/RESULTS"
  steps/make_results.sh --config "$config" --models "$models" "$exp" data/test
fi
