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
. ./cmd.sh   # launcher of the --nj jobs of stages 1 and 3 (local or Slurm)

stage=0
stop_stage=5
nj=2
device=cpu
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

ngpu=1                      # stage 2 processes per node (GPUs; CPU processes with --device cpu)
nnodes=1
node_rank=0
master_addr=""              # needed with --nnodes > 1 unless --rdzv-endpoint is given
master_port=29500
rdzv_endpoint=""            # HOST:PORT: torchrun rendezvous instead of node rank / master

. utils/parse_options.sh
. utils/recipe.sh

train_set=train
test_sets=test
mean_set=train
feats_dir=feats
exp_dir=exp/$(python -m sslsv.bin.config --config "$config" --get experiment)
train_overrides=()
if [ -n "$train_seed" ]; then
  exp_dir=${exp_dir}_seed$train_seed
  train_overrides=(train.seed="$train_seed")
fi

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  [ -d "$librispeech_root/$eval_subset" ] \
    || die "no LibriSpeech at '$librispeech_root/$eval_subset' (give --librispeech-root)"
  log "stage 0: $librispeech_root ($eval_subset + $extra_subsets), test speakers: conf/test_speakers"
  python -m sslsv.bin.prepare_data librispeech "$librispeech_root/$eval_subset" data/test \
    --speakers conf/test_speakers --nj "$nj"
  python -m sslsv.bin.make_trials data/test --num-per-utt "$trials_per_utt" \
    --target-fraction "$target_fraction" --seed "$seed"
  python -m sslsv.bin.prepare_data librispeech "$librispeech_root/$eval_subset" data/train_main \
    --exclude-speakers conf/test_speakers --nj "$nj"
  parts=(data/train_main)
  for subset in $extra_subsets; do
    python -m sslsv.bin.prepare_data librispeech "$librispeech_root/$subset" "data/train_$subset" \
      --exclude-speakers conf/test_speakers --nj "$nj"
    # Subsets can share utterances: keep only those not already in the training list.
    cat "${parts[@]/%//utt2spk}" | cut -d' ' -f1 | sort > "data/train_$subset/seen"
    cut -d' ' -f1 "data/train_$subset/utt2spk" | comm -23 - "data/train_$subset/seen" \
      > "data/train_$subset/new_utts"
    rm -rf "data/train_${subset}_new"
    python -m sslsv.bin.datadir subset --utt-list "data/train_$subset/new_utts" \
      "data/train_$subset" "data/train_${subset}_new"
    parts+=("data/train_${subset}_new")
  done
  rm -rf data/train
  python -m sslsv.bin.datadir combine data/train "${parts[@]}"
  noise_opts=()
  [ -d "$noise_dir" ] && noise_opts=(--noise-dir "$noise_dir")
  python -m sslsv.bin.make_aug_sets --out data/aug --seed "$seed" --babble-from data/train \
    "${noise_opts[@]+"${noise_opts[@]}"}"
  for set in train test; do python -m sslsv.bin.datadir validate "data/$set"; done
fi

. utils/ssl_stages.sh
