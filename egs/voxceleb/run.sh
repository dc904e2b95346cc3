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
. ./cmd.sh   # launcher of the --nj jobs of stages 1 and 3 (local or Slurm)

stage=0
stop_stage=5
nj=16
device=cuda
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

ngpu=1                      # stage 2 processes per node (GPUs; CPU processes with --device cpu)
nnodes=1
node_rank=0
master_addr=""              # needed with --nnodes > 1 unless --rdzv-endpoint is given
master_port=29500
rdzv_endpoint=""            # HOST:PORT: torchrun rendezvous instead of node rank / master

. utils/parse_options.sh
. utils/recipe.sh

train_set=vox2_dev
test_sets=vox1
mean_set=vox2_dev_mean
feats_dir=feats
exp_dir=exp/$(python -m sslsv.bin.config --config "$config" --get experiment)

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  [ -n "$voxceleb1_root" ] && [ -n "$voxceleb2_root" ] && [ -n "$wav_cache" ] \
    || die "stage 0 needs --voxceleb1-root, --voxceleb2-root and --wav-cache"
  aug_opts=()
  [ -n "$musan_root" ] && aug_opts+=(--musan-root "$musan_root")
  [ -n "$rirs_root" ] && aug_opts+=(--rirs-root "$rirs_root")
  local/prepare_data.sh --voxceleb1-root "$voxceleb1_root" --voxceleb2-root "$voxceleb2_root" \
    --wav-cache "$wav_cache" --data-root data --nj "$nj" --trials "$trials" \
    --download "$download" \
    "${aug_opts[@]+"${aug_opts[@]}"}"
  # Augmentation sets live under data/aug/{rirs,noise,speech,music}: MUSAN / RIRS_NOISES when
  # given, simulated rooms and noises otherwise.
  mkdir -p data/aug
  if [ -n "$musan_root" ]; then
    for kind in noise speech music; do ln -sfn "../musan_$kind" "data/aug/$kind"; done
  fi
  [ -n "$rirs_root" ] && ln -sfn ../rirs data/aug/rirs
  if [ -z "$musan_root" ] || [ -z "$rirs_root" ]; then
    python -m sslsv.bin.make_aug_sets --out data/aug_simulated --seed "$seed" \
      --babble-from "data/$train_set" --num-rirs "$num_rirs"
    for kind in rirs noise speech; do
      [ -e "data/aug/$kind" ] || ln -sfn "../aug_simulated/$kind" "data/aug/$kind"
    done
  fi
  log "augmentation sets in use: $(for s in data/aug/*; do printf '%s=%s ' "${s##*/}" "$(readlink "$s")"; done)"
  # Every k-th utterance, so that the mean covers all speakers, not the first few.
  awk -v n="$mean_utts" -v total="$(wc -l < "data/$train_set/utt2spk")" \
    'BEGIN { k = int(total / n); if (k < 1) k = 1 } NR % k == 0 { print $1 }' \
    "data/$train_set/utt2spk" > "data/$train_set/mean_utts"
  python -m sslsv.bin.datadir subset --utt-list "data/$train_set/mean_utts" \
    "data/$train_set" "data/$mean_set"
fi

. utils/ssl_stages.sh
