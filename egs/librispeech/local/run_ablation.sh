#!/usr/bin/env bash
# The margin / symmetry / method ablation: every row of conf/ trained with each seed, same
# budget (conf/base.yaml's: 10 epochs of ~3,060 utterances since speechocean762 joined the
# training set, 90 of 380 before; docs/RESULTS.md's table was made with 24 epochs of the
# LibriSpeech-only set), then one table (mean and spread over seeds) and the
# score-distribution plot.
#
#   local/run_ablation.sh [--rows "simclr_ntxent ..."] [--seeds "1 2 3"] [--out ../../docs] \
#     [--table-name ablation_librispeech] [--plot-name ablation_score_distributions] \
#     [--epochs N]   # every row trained N epochs instead of conf/base.yaml's
set -euo pipefail
cd "$(dirname "$0")/.."
. ./path.sh

rows="simclr_ntxent simclr_ntxent_sym simclr_ntxent_am moco_ntxent moco_ntxent_am"
seeds="1 2 3"
out=../../docs
table_name=ablation_librispeech
plot_name=ablation_score_distributions
epochs=""
nj=2

. utils/parse_options.sh

start=$(date +%s)
./run.sh --stage 0 --stop-stage 1 --nj "$nj"
# Seed by seed, so that a run stopped part-way has every row at the same number of seeds.
for seed in $seeds; do
  for row in $rows; do
    # The first stage only (stages 2-5: no second stage, no supervised ceiling): rows init,
    # stats, ssl.
    ./run.sh --stage 2 --stop-stage 5 --nj "$nj" --config "conf/$row.yaml" --train-seed "$seed" \
      --train-epochs "$epochs"
  done
done
elapsed=$(( $(date +%s) - start ))
python local/summarize_ablation.py --rows $rows --seeds $seeds --elapsed "$elapsed" \
  ${epochs:+--epochs "$epochs"} \
  --table "$out/$table_name.md" --plot "$out/$plot_name.png"
