#!/usr/bin/env bash
# Training a speaker-embedding extractor: self-supervised (the first stage), or a classifier
# on the speakers of the data dir's utt2spk (the second stage's pseudo-speakers, or true
# speakers).
#
# One process, or torchrun over --ngpu processes per node and --nnodes nodes; the config's
# train.batch_size is the global batch whatever the number of processes. A rerun resumes
# from the newest checkpoint; a finished experiment is left as it is; a changed config is
# refused (extract: and scoring: may change, and train.epochs may grow).
set -euo pipefail

# Begin configuration section.
device=cpu         # cpu or cuda
ngpu=1             # processes per node (GPUs; CPU processes with --device cpu)
nnodes=1
node_rank=0
master_addr=       # needed with --nnodes > 1 unless --rdzv-endpoint is given
master_port=29500
rdzv_endpoint=     # HOST:PORT: torchrun rendezvous instead of node rank and master
overrides=         # config overrides KEY=VALUE, separated by spaces (e.g. "train.seed=2")
init_model=        # a model file to start the encoder from (pseudo_label.init_from_seed)
init_embeddings=   # with --init-model: its embeddings of the data dir (classifier centres)
# End configuration section.

help_message="Usage: $0 [options] <config> <train-data-dir> <exp-dir>
 e.g.: $0 --device cuda --ngpu 4 conf/simclr_ntxent_am.yaml data/vox2_dev exp/simclr_ntxent_am
Reads the config, <train-data-dir>/{wav.scp,utt2dur} (and segments) and the augmentation sets
the config names. Writes <exp-dir>/{config.yaml,init.pt,checkpoints/,log/train.log,
tensorboard/,final.pt}."

. "$(dirname "$(readlink -f "$0")")/../utils/lib/sslsv_env.sh"
. "$SSLSV_ROOT/utils/parse_options.sh"

if [ $# -ne 3 ]; then
  echo "$help_message" >&2
  exit 1
fi
config=$1
data=$2
exp=$3
for f in "$config" "$data/wav.scp" "$data/utt2dur" ${init_model:+"$init_model"}; do
  [ -f "$f" ] || { echo "$0: no such file $f" >&2; exit 1; }
done

launch=("$SSLSV_PYTHON")
if [ "$ngpu" -gt 1 ] || [ "$nnodes" -gt 1 ]; then
  launch=("$SSLSV_PYTHON" -m torch.distributed.run --nnodes "$nnodes" --nproc-per-node "$ngpu")
  if [ -n "$rdzv_endpoint" ]; then
    launch+=(--rdzv-backend c10d --rdzv-endpoint "$rdzv_endpoint" --rdzv-id sslsv)
  elif [ "$nnodes" -gt 1 ]; then
    if [ -z "$master_addr" ]; then
      echo "$0: --nnodes $nnodes needs --master-addr or --rdzv-endpoint" >&2
      exit 1
    fi
    launch+=(--node-rank "$node_rank" --master-addr "$master_addr" --master-port "$master_port")
  else
    launch+=(--standalone)
  fi
fi
read -r -a override_args <<< "$overrides"
"${launch[@]}" -m sslsv.bin.train --config "$config" --data "$data" --exp-dir "$exp" \
  --device "$device" ${init_model:+--init-model "$init_model"} \
  ${init_embeddings:+--init-embeddings "$init_embeddings"} \
  ${override_args[@]+--override "${override_args[@]}"}
