#!/usr/bin/env bash
# Mini recipe: a synthetic multi-speaker corpus built offline (eSpeak NG voices), SimCLR with
# the symmetric NT-Xent-AM loss, the label-free second stage, and the baselines, with cosine
# scoring. Runs end to end on a 2-core CPU.
#
#   ./run.sh [--stage 0] [--stop-stage 7] [--nj 2] [--config conf/simclr_ntxent_am.yaml]
#
# Stages: 0 corpus and data dirs, 1 log-mels, 2 first stage (SSL; and the training-free stats
# baseline), 3 second stage (--rounds rounds of embed -> cluster -> AAM-softmax classifier),
# 4 the supervised ceiling (the classifier on the true speakers), 5 embeddings, 6 scores,
# 7 RESULTS.
set -euo pipefail
cd "$(dirname "$0")"
. ./path.sh
. ./cmd.sh   # fbank_cmd, extract_cmd: where the --nj jobs of stages 1, 3 and 5 run

stage=0
stop_stage=7
nj=2
device=cpu
ngpu=1                      # training processes (GPUs; CPU processes with --device cpu)
config=conf/simclr_ntxent_am.yaml     # the first stage (SSL)
stats_config=conf/stats.yaml          # the training-free baseline
pl_config=conf/classifier_pl.yaml     # the second stage: clustering and classifier
supervised_config=conf/classifier_supervised.yaml  # the ceiling: true labels
rounds=2                    # second-stage rounds (0: none)
pl_seed=""                  # the first round's seed model (default: the SSL final.pt)
supervised=true             # train and score the supervised ceiling (uses labels)
seed=1234
corpus=corpus/mini          # generated here by stage 0
num_speakers=100
utts_per_speaker=12
num_test_speakers=20        # held out: never seen in training
trials_per_utt=15
target_fraction=0.3
num_rirs=200                # simulated rooms for reverberation

. utils/parse_options.sh
. utils/recipe.sh
check_stages 7
# Checks the whole configs now, so that a bad key fails before stage 0.
exp=exp/$("$SSLSV_PYTHON" -m sslsv.bin.config --config "$config" --get experiment)
stats_exp=exp/$("$SSLSV_PYTHON" -m sslsv.bin.config --config "$stats_config" --get experiment)
"$SSLSV_PYTHON" -m sslsv.bin.config --config "$pl_config" --get experiment > /dev/null
supervised_exp=exp/$("$SSLSV_PYTHON" -m sslsv.bin.config --config "$supervised_config" \
  --get experiment)
[ -n "$pl_seed" ] || pl_seed=$exp/final.pt

# The models that stages 5-7 embed, score and report: label, model file, config.
labels=(init stats ssl)
models=("$exp/init.pt" "$stats_exp/final.pt" "$exp/final.pt")
configs=("$config" "$stats_config" "$config")
for round in $(seq 1 "$rounds"); do
  labels+=("pl$round"); models+=("${exp}_pl$round/final.pt"); configs+=("$pl_config")
done
if [ "$supervised" = true ]; then
  labels+=(supervised); models+=("$supervised_exp/final.pt"); configs+=("$supervised_config")
fi
emb_dir() { echo "$(dirname "$1")/embeddings_$(basename "$1" .pt)"; }  # of a model file

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
  log "stage 1: log-mels of the sets that stages 3 and 5 embed"
  for set in train test; do
    steps/make_fbank.sh --nj "$nj" --cmd "$fbank_cmd" --config "$config" \
      "data/$set" "feats/$set"
  done
fi

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  log "stage 2: SSL training -> $exp; stats baseline -> $stats_exp"
  steps/train.sh --device "$device" --ngpu "$ngpu" "$config" data/train "$exp"
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
  for i in "${!models[@]}"; do
    for set in train test; do  # train: the back end's training set (mean, PLDA, cohort)
      log "stage 5: embeddings of data/$set with ${models[i]} (${labels[i]})"
      steps/extract_embeddings.sh --nj "$nj" --cmd "$extract_cmd" --device "$device" \
        --config "${configs[i]}" "${models[i]}" "data/$set" "$(emb_dir "${models[i]}")/$set"
    done
  done
fi

if [ "$stage" -le 6 ] && [ "$stop_stage" -ge 6 ]; then
  for i in "${!models[@]}"; do
    log "stage 6: scores of data/test with ${models[i]} (${labels[i]})"
    model_dir=$(dirname "${models[i]}")
    steps/score_trials.sh --config "${configs[i]}" \
      --train-embeddings "$(emb_dir "${models[i]}")/train" --train-data data/train \
      "$(emb_dir "${models[i]}")/test" data/test "$model_dir/scores_$(basename "${models[i]}" .pt)"
  done
fi

if [ "$stage" -le 7 ] && [ "$stop_stage" -ge 7 ]; then
  log "stage 7: $exp/RESULTS"
  rows=""
  for i in "${!models[@]}"; do
    rows+=" ${labels[i]}=${models[i]%.pt}"
  done
  clustering=""
  for round in $(seq 1 "$rounds"); do
    clustering+=" pl$round=data/train_pl$round"
  done
  steps/make_results.sh --config "$config" --models "" --rows "$rows" \
    --clustering "$clustering" --note "this run: stages $stage-$stop_stage in ${SECONDS}s" \
    "$exp" data/test
fi
