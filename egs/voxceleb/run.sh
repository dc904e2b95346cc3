#!/usr/bin/env bash
# VoxCeleb recipe: train on VoxCeleb2 dev without labels, evaluate on VoxCeleb1-O/E/H.
#
#   ./run.sh --voxceleb1-root /data/VoxCeleb1 --voxceleb2-root /data/VoxCeleb2 \
#            --wav-cache /data/vox2_wav [--musan-root /data/musan --rirs-root /data/RIRS_NOISES] \
#            [--config conf/simclr_ntxent_am.yaml] [--stage 0] [--stop-stage 5] [--nj 16]
#
# Each row of the paper's study is one config in conf/ (--config conf/<row>.yaml); the
# experiment directory is exp/<experiment name in the config>.
set -euo pipefail
cd "$(dirname "$0")"
. ./path.sh
. ./cmd.sh   # fbank_cmd, extract_cmd: where the --nj jobs of stages 1 and 3 run

stage=0
stop_stage=5
nj=16
device=cuda
ngpu=1                      # stage 2 processes per node
train_opts=""               # more steps/train_ssl.sh options, e.g. several nodes:
                            # "--nnodes 2 --node-rank 0 --master-addr HOST"
config=conf/simclr_ntxent_am.yaml
voxceleb1_root=""           # wav/idXXXXX/VIDEO/NNNNN.wav (dev + test in one tree)
voxceleb2_root=""           # dev/aac/idXXXXX/VIDEO/NNNNN.m4a
wav_cache=""                # VoxCeleb2 m4a decoded once to 16 kHz wav here (needs ffmpeg)
musan_root=""
rirs_root=""
trials=O,E,H
download=false              # true: fetch the official trial lists (checksummed) if missing
num_rirs=200                # simulated rooms, when there is no RIRS_NOISES
mean_utts=20000             # training utterances whose mean embedding is subtracted
seed=1234
models="final init"

. utils/parse_options.sh
. utils/recipe.sh
check_stages 5
# Checks the whole config now, so that a bad key fails before stage 0.
exp=exp/$("$SSLSV_PYTHON" -m sslsv.bin.config --config "$config" --get experiment)
read -r -a train_args <<< "$train_opts"

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  [ -n "$voxceleb1_root" ] && [ -n "$voxceleb2_root" ] && [ -n "$wav_cache" ] \
    || die "stage 0 needs --voxceleb1-root, --voxceleb2-root and --wav-cache"
  aug_opts=()
  [ -n "$musan_root" ] && aug_opts+=(--musan-root "$musan_root")
  [ -n "$rirs_root" ] && aug_opts+=(--rirs-root "$rirs_root")
  local/prepare_data.sh --voxceleb1-root "$voxceleb1_root" --voxceleb2-root "$voxceleb2_root" \
    --wav-cache "$wav_cache" --data-root data --nj "$nj" --trials "$trials" \
    --download "$download" ${aug_opts[@]+"${aug_opts[@]}"}
  # Augmentation sets live under data/aug/{rirs,noise,speech,music}: MUSAN / RIRS_NOISES when
  # given, simulated rooms and noises otherwise.
  mkdir -p data/aug
  if [ -n "$musan_root" ]; then
    for kind in noise speech music; do ln -sfn "../musan_$kind" "data/aug/$kind"; done
  fi
  [ -n "$rirs_root" ] && ln -sfn ../rirs data/aug/rirs
  if [ -z "$musan_root" ] || [ -z "$rirs_root" ]; then
    "$SSLSV_PYTHON" -m sslsv.bin.make_aug_sets --out data/aug_simulated --seed "$seed" \
      --babble-from data/vox2_dev --num-rirs "$num_rirs"
    for kind in rirs noise speech; do
      [ -e "data/aug/$kind" ] || ln -sfn "../aug_simulated/$kind" "data/aug/$kind"
    done
  fi
  log "augmentation sets in use: $(for s in data/aug/*; do printf '%s=%s ' "${s##*/}" "$(readlink "$s")"; done)"
  # Every k-th utterance, so that the mean covers all speakers, not the first few.
  awk -v n="$mean_utts" -v total="$(wc -l < data/vox2_dev/utt2spk)" \
    'BEGIN { k = int(total / n); if (k < 1) k = 1 } NR % k == 0 { print $1 }' \
    data/vox2_dev/utt2spk > data/vox2_dev/mean_utts
  utils/subset_data_dir.sh --utt-list data/vox2_dev/mean_utts data/vox2_dev data/vox2_dev_mean
fi

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  # Not for vox2_dev itself: training computes log-mels of augmented crops on the device.
  log "stage 1: log-mels of the sets stage 3 embeds: vox2_dev_mean vox1"
  for set in vox2_dev_mean vox1; do
    steps/make_fbank.sh --nj "$nj" --cmd "$fbank_cmd" --config "$config" \
      "data/$set" "feats/$set"
  done
fi

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  log "stage 2: SSL training -> $exp"
  steps/train_ssl.sh --device "$device" --ngpu "$ngpu" ${train_args[@]+"${train_args[@]}"} \
    "$config" data/vox2_dev "$exp"
fi

if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
  for model in $models; do
    for set in vox2_dev_mean vox1; do  # vox2_dev_mean: the mean cosine scoring subtracts
      log "stage 3: embeddings of data/$set with $model.pt"
      steps/extract_embeddings.sh --nj "$nj" --cmd "$extract_cmd" --device "$device" \
        --config "$config" "$exp/$model.pt" "data/$set" "$exp/embeddings_$model/$set"
    done
  done
fi

if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ]; then
  for model in $models; do
    log "stage 4: scores of data/vox1 (trials_O/E/H) with $model.pt"
    steps/score_trials.sh --config "$config" \
      --train-embeddings "$exp/embeddings_$model/vox2_dev_mean" --train-data data/vox2_dev_mean \
      "$exp/embeddings_$model/vox1" data/vox1 "$exp/scores_$model"
  done
fi

if [ "$stage" -le 5 ] && [ "$stop_stage" -ge 5 ]; then
  log "stage 5: $exp/RESULTS"
  steps/make_results.sh --config "$config" --models "$models" "$exp" data/vox1
fi
