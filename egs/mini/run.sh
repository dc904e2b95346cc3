#!/usr/bin/env bash
# Mini recipe: a synthetic multi-speaker corpus built offline (eSpeak NG voices), SimCLR with
# the symmetric NT-Xent-AM loss, cosine scoring. Runs end to end on a 2-core CPU.
#
#   ./run.sh [--stage 0] [--stop-stage 5] [--nj 2] [--config conf/simclr_ntxent_am.yaml]
set -euo pipefail
cd "$(dirname "$0")"
. ./path.sh
. ./cmd.sh   # launcher of the --nj jobs of stages 1 and 3 (local or Slurm)

stage=0
stop_stage=5
nj=2
device=cpu
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

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  log "stage 0: synthetic corpus ($num_speakers speakers) and data dirs"
  python -m sslsv.bin.make_mini_corpus --out "$corpus" --num-speakers "$num_speakers" \
    --utts-per-speaker "$utts_per_speaker" --seed "$seed" --nj "$nj"
  python -m sslsv.bin.prepare_data folder "$corpus/wav" data/all --nj "$nj"
  cut -d' ' -f1 data/all/spk2utt > data/all/speakers
  head -n -"$num_test_speakers" data/all/speakers > data/all/train_speakers
  tail -n "$num_test_speakers" data/all/speakers > data/all/test_speakers
  python -m sslsv.bin.datadir subset --spk-list data/all/train_speakers data/all data/train
  python -m sslsv.bin.datadir subset --spk-list data/all/test_speakers data/all data/test
  python -m sslsv.bin.make_trials data/test --num-per-utt "$trials_per_utt" \
    --target-fraction "$target_fraction" --seed "$seed"
  # No MUSAN/RIRS_NOISES offline: simulated rooms, coloured noise, babble of training speech.
  python -m sslsv.bin.make_aug_sets --out data/aug --seed "$seed" --babble-from data/train \
    --num-rirs "$num_rirs"
  for set in train test; do
    python -m sslsv.bin.datadir validate "data/$set"
  done
fi

. utils/ssl_stages.sh
