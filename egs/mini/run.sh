#!/usr/bin/env bash
# Mini recipe: a synthetic multi-speaker corpus built offline (eSpeak NG voices), SimCLR with
# the symmetric NT-Xent-AM loss, cosine scoring. Runs end to end on a 2-core CPU.
#
#   ./run.sh [--stage 0] [--stop-stage 5] [--nj 2] [--config conf/simclr_ntxent_am.yaml]
set -euo pipefail
cd "$(dirname "$0")"
. ./path.sh
. ./cmd.sh   # fbank_cmd, extract_cmd: where the --nj jobs of stages 1 and 3 run

stage=0
stop_stage=5
nj=2
device=cpu
ngpu=1                      # stage 2 processes (GPUs; CPU processes with --device cpu)
config=conf/simclr_ntxent_am.yaml
seed=1234
corpus=corpus/mini          # generated here by stage 0
num_speakers=100
utts_per_speaker=12
num_test_speakers=20        # held out: never seen in training
trials_per_utt=15
target_fraction=0.3
num_rirs=200                # simulated rooms for reverberation
models="final init"         # init.pt: the same encoder untrained, to show what training adds

. utils/parse_options.sh
. utils/recipe.sh
check_stages 5
# Checks the whole config now, so that a bad key fails before stage 0.
exp=exp/$("$SSLSV_PYTHON" -m sslsv.bin.config --config "$config" --get experiment)

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  log "stage 0: synthetic corpus ($num_speakers speakers) and data dirs"
  "$SSLSV_PYTHON" -m sslsv.bin.make_mini_corpus --out "$corpus" --num-speakers "$num_speakers" \
    --utts-per-speaker "$utts_per_speaker" --seed "$seed" --nj "$nj"
  "$SSLSV_PYTHON" -m sslsv.bin.prepare_data folder "$corpus/wav" data/all --nj "$nj"
  cut -d' ' -f1 data/all/spk2utt > data/all/speakers
  head -n -"$num_test_speakers" data/all/speakers > data/all/train_speakers
  tail -n "$num_test_speakers" data/all/speakers > data/all/test_speakers
  utils/subset_data_dir.sh --spk-list data/all/train_speakers data/all data/train
  utils/subset_data_dir.sh --spk-list data/all/test_speakers data/all data/test
  "$SSLSV_PYTHON" -m sslsv.bin.make_trials data/test --num-per-utt "$trials_per_utt" \
    --target-fraction "$target_fraction" --seed "$seed"
  # No MUSAN/RIRS_NOISES offline: simulated rooms, coloured noise, babble of training speech.
  "$SSLSV_PYTHON" -m sslsv.bin.make_aug_sets --out data/aug --seed "$seed" \
    --babble-from data/train --num-rirs "$num_rirs"
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
  steps/train_ssl.sh --device "$device" --ngpu "$ngpu" "$config" data/train "$exp"
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
