#!/usr/bin/env bash
# One round of the second stage: embed the training set with a seed model, cluster the
# embeddings into pseudo-speakers (a data dir whose utt2spk is the pseudo-speaker), and train
# a classifier (AAM-softmax) on them, its encoder started from the seed's when they match
# (pseudo_label.init_from_seed), its class centres then at the clusters' mean embeddings.
#
# Each part is the ordinary step or program (extract_embeddings.sh, sslsv.bin.cluster,
# train.sh), so each reuses what is up to date and redoes what changed, saying so.
set -euo pipefail

# Begin configuration section.
nj=            # embedding jobs (empty: one per visible GPU with --device cuda, 4 on CPU)
cmd=local      # where they run: local, "slurm SBATCH-OPTIONS", "srun SRUN-OPTIONS"
device=cpu     # cpu or cuda: the embedding jobs, the clustering (k-means, merging), training
ngpu=1         # training processes (GPUs; CPU processes with --device cpu)
train_opts=    # more train.sh options (several nodes), e.g. "--nnodes 2 --rdzv-endpoint H:P"
overrides=     # config overrides for training, e.g. "train.seed=1"
labels=        # a pseudo-labelled data dir to train on instead of clustering (fine-tuning
               # on the last round's labels); <pl-data-dir> is then that dir, unchanged
# End configuration section.

help_message="Usage: $0 [options] <config> <seed-model.pt> <train-data-dir> <pl-data-dir> <exp-dir>
 e.g.: $0 --nj 8 conf/classifier.yaml exp/simclr/final.pt data/train data/train_pl1 exp/simclr_pl1
Reads the config (its extract:, pseudo_label: and training sections), the seed model and
<train-data-dir> (wav.scp, utt2dur, and utt2spk when it has true speakers: clustering
statistics only). Writes <seed-dir>/embeddings_<seed>/<train-set>/ (the seed's embeddings),
<pl-data-dir>/ (a data dir of pseudo-speakers with clustering.{txt,json}) and <exp-dir>/
(the classifier: config.yaml, init.pt, checkpoints/, log/, final.pt). With label correction
(method.correction), also <pl-data-dir>_corrected/: the labels the round ended with."

. "$(dirname "$(readlink -f "$0")")/../utils/lib/sslsv_env.sh"
. "$SSLSV_ROOT/utils/parse_options.sh"

if [ $# -ne 5 ]; then
  echo "$help_message" >&2
  exit 1
fi
config=$1
seed=$2
data=$3
pl_data=$4
exp=$5
for f in "$config" "$seed" "$data/wav.scp" "$data/utt2dur"; do
  [ -f "$f" ] || { echo "$0: no such file $f" >&2; exit 1; }
done
steps=$SSLSV_ROOT/steps
embeddings=$(dirname "$seed")/embeddings_$(basename "$seed" .pt)/$(basename "$data")

"$steps/extract_embeddings.sh" --nj "$nj" --cmd "$cmd" --device "$device" --config "$config" \
  "$seed" "$data" "$embeddings"
if [ -n "$labels" ]; then
  [ "$labels" = "$pl_data" ] || { echo "$0: --labels $labels: give it as <pl-data-dir> too" >&2; exit 1; }
else
  "$SSLSV_PYTHON" -m sslsv.bin.cluster --config "$config" \
    --embeddings "$embeddings/embeddings.scp" --data "$data" --output "$pl_data" --device "$device"
fi
read -r -a more <<< "$train_opts"
"$steps/train.sh" --device "$device" --ngpu "$ngpu" --init-model "$seed" \
  --init-embeddings "$embeddings/embeddings.scp" --overrides "$overrides" \
  ${more[@]+"${more[@]}"} "$config" "$pl_data" "$exp"
if [ -f "$exp/utt2label" ]; then  # written with final.pt; rewritten each time (seconds)
  "$SSLSV_PYTHON" -m sslsv.bin.relabel --data "$pl_data" --labels "$exp/utt2label" \
    --truth "$data" --output "${pl_data}_corrected"
fi
