#!/usr/bin/env bash
# VoxCeleb recipe: train on VoxCeleb2 dev without labels, evaluate on VoxCeleb1-O/E/H.
#
#   ./run.sh --voxceleb1-root /data/VoxCeleb1 --voxceleb2-root /data/VoxCeleb2 \
#            --wav-cache /data/vox2_wav [--musan-root /data/musan --rirs-root /data/RIRS_NOISES] \
#            [--config conf/simclr_ntxent_am.yaml] [--rounds 2] [--stage 0] [--stop-stage 7]
#
# Stages: 0 data, 1 log-mels, 2 first stage (SSL; and the training-free stats baseline),
# 3 second stage (--rounds rounds: embed VoxCeleb2 dev with the newest model, cluster it into
# pseudo-speakers, train an AAM-softmax classifier on them; conf/classifier_pl_*.yaml),
# 4 the supervised ceiling (off by default: --supervised true; a long run that uses the
# VoxCeleb2 speaker labels), 5 embeddings, 6 scores, 7 RESULTS.
#
# Each row of the paper's study is one config in conf/ (--config conf/<row>.yaml); the
# experiment directory is exp/<experiment name in the config>.
set -euo pipefail
cd "$(dirname "$0")"
. ./path.sh
. ./cmd.sh   # fbank_cmd, extract_cmd: where the --nj jobs of stages 1, 3 and 5 run

stage=0
stop_stage=7
nj=16
device=cuda
ngpu=1                      # stage 2 processes per node
train_opts=""               # more steps/train.sh options, e.g. several nodes:
                            # "--nnodes 2 --node-rank 0 --master-addr HOST"
config=conf/simclr_ntxent_am.yaml     # the first stage (SSL)
stats_config=conf/stats.yaml          # the training-free baseline
pl_config=conf/classifier_pl_resnet34.yaml  # the second stage: clustering and classifier
supervised_config=conf/classifier_supervised_resnet34.yaml  # the ceiling: true labels
rounds=2                    # second-stage rounds (0: none)
pl_seed=""                  # the first round's seed model (default: the SSL final.pt)
supervised=false            # true: train and score the supervised ceiling (uses labels)
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

. utils/parse_options.sh
. utils/recipe.sh
check_stages 7
# Checks the whole configs now, so that a bad key fails before stage 0.
exp=exp/$("$SSLSV_PYTHON" -m sslsv.bin.config --config "$config" --get experiment)
stats_exp=exp/$("$SSLSV_PYTHON" -m sslsv.bin.config --config "$stats_config" --get experiment)
"$SSLSV_PYTHON" -m sslsv.bin.config --config "$pl_config" --get experiment > /dev/null
supervised_exp=exp/$("$SSLSV_PYTHON" -m sslsv.bin.config --config "$supervised_config" \
  --get experiment)
read -r -a train_args <<< "$train_opts"
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
  log "stage 1: log-mels of the sets stage 5 embeds: vox2_dev_mean vox1"
  for set in vox2_dev_mean vox1; do
    steps/make_fbank.sh --nj "$nj" --cmd "$fbank_cmd" --config "$config" \
      "data/$set" "feats/$set"
  done
fi

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  log "stage 2: SSL training -> $exp; stats baseline -> $stats_exp"
  steps/train.sh --device "$device" --ngpu "$ngpu" ${train_args[@]+"${train_args[@]}"} \
    "$config" data/vox2_dev "$exp"
  steps/fit_stats.sh "$stats_config" data/vox2_dev_mean "$stats_exp"
fi

if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
  seed_model=$pl_seed
  for round in $(seq 1 "$rounds"); do
    log "stage 3: second stage, round $round of $rounds: seed $seed_model -> ${exp}_pl$round"
    steps/pseudo_label_round.sh --nj "$nj" --cmd "$extract_cmd" --device "$device" \
      --ngpu "$ngpu" --train-opts "$train_opts" "$pl_config" "$seed_model" data/vox2_dev \
      "data/vox2_dev_pl$round" "${exp}_pl$round"
    seed_model=${exp}_pl$round/final.pt
  done
fi

if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ] && [ "$supervised" = true ]; then
  log "stage 4: supervised ceiling (true speaker labels) -> $supervised_exp"
  steps/train.sh --device "$device" --ngpu "$ngpu" ${train_args[@]+"${train_args[@]}"} \
    "$supervised_config" data/vox2_dev "$supervised_exp"
fi

if [ "$stage" -le 5 ] && [ "$stop_stage" -ge 5 ]; then
  for i in "${!models[@]}"; do
    for set in vox2_dev_mean vox1; do  # vox2_dev_mean: the back end's training set
      log "stage 5: embeddings of data/$set with ${models[i]} (${labels[i]})"
      steps/extract_embeddings.sh --nj "$nj" --cmd "$extract_cmd" --device "$device" \
        --config "${configs[i]}" "${models[i]}" "data/$set" "$(emb_dir "${models[i]}")/$set"
    done
  done
fi

if [ "$stage" -le 6 ] && [ "$stop_stage" -ge 6 ]; then
  for i in "${!models[@]}"; do
    log "stage 6: scores of data/vox1 (trials_O/E/H) with ${models[i]} (${labels[i]})"
    model_dir=$(dirname "${models[i]}")
    steps/score_trials.sh --config "${configs[i]}" \
      --train-embeddings "$(emb_dir "${models[i]}")/vox2_dev_mean" --train-data data/vox2_dev_mean \
      "$(emb_dir "${models[i]}")/vox1" data/vox1 "$model_dir/scores_$(basename "${models[i]}" .pt)"
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
    clustering+=" pl$round=data/vox2_dev_pl$round"
  done
  steps/make_results.sh --config "$config" --models "" --rows "$rows" \
    --clustering "$clustering" --note "this run: stages $stage-$stop_stage in ${SECONDS}s" \
    "$exp" data/vox1
fi
