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
# VoxCeleb2 speaker labels), 5 embeddings, 6 scores and calibration on VoxCeleb1 dev speakers,
# 7 RESULTS, THRESHOLDS and packaged models (model.pt).
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
extract_nj=""               # embedding jobs (stages 3, 5); empty: one per visible GPU with
                            # --device cuda (give it with a Slurm --extract-cmd), else $nj
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
num_dev_speakers=200        # VoxCeleb1 dev speakers whose trials calibrate the scores
dev_trials_per_utt=4
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

# The models that stages 5-7 embed, score, calibrate and report: label, model file, config.
models="init $exp/init.pt $config
stats $stats_exp/final.pt $stats_config
ssl $exp/final.pt $config"
for round in $(seq 1 "$rounds"); do
  models+=$'\n'"pl$round ${exp}_pl$round/final.pt $pl_config"
done
if [ "$supervised" = true ]; then
  models+=$'\n'"supervised $supervised_exp/final.pt $supervised_config"
fi
if [ -z "$extract_nj" ] && [ "$device" != cuda ]; then
  extract_nj=$nj
fi
# data/vox2_dev_mean: the back end's training set. An empty --nj reaches sslsv.bin.extract as
# no --nj: one job per visible GPU.
eval_opts=(--nj "$extract_nj" --cmd "$extract_cmd" --device "$device" --train data/vox2_dev_mean)

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
  # The development set that calibrates the scores: VoxCeleb1 speakers outside VoxCeleb1-O
  # (the dev part; trials_E/H contain them too, so only O's thresholds are held out).
  mkdir -p data/local
  awk 'NR == FNR { seen[$1]; seen[$2]; next } ($1 in seen) { print $2 }' \
    data/vox1/trials_O data/vox1/utt2spk | LC_ALL=C sort -u > data/local/vox1_o_speakers
  cut -d' ' -f1 data/vox1/spk2utt | LC_ALL=C sort | comm -23 - data/local/vox1_o_speakers \
    | head -n "$num_dev_speakers" > data/local/vox1_dev_speakers
  if [ -s data/local/vox1_dev_speakers ]; then
    utils/subset_data_dir.sh --spk-list data/local/vox1_dev_speakers data/vox1 data/vox1_dev
    "$SSLSV_PYTHON" -m sslsv.bin.make_trials data/vox1_dev --num-per-utt "$dev_trials_per_utt" \
      --seed "$seed"
  else
    log "no VoxCeleb1 speakers outside VoxCeleb1-O (test part only): no calibration"
    rm -rf data/vox1_dev
  fi
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
    steps/pseudo_label_round.sh --nj "$extract_nj" --cmd "$extract_cmd" --device "$device" \
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

# data/vox1_dev, the calibration's trials, exists when stage 0 found VoxCeleb1 speakers
# outside VoxCeleb1-O.
if [ -f data/vox1_dev/trials ]; then
  eval_opts+=(--dev data/vox1_dev)
fi

if [ "$stage" -le 5 ] && [ "$stop_stage" -ge 5 ]; then
  log "stage 5: embeddings of data/vox2_dev_mean, data/vox1 (and data/vox1_dev) with every model"
  steps/evaluate_models.sh "${eval_opts[@]}" embed "$models" "$exp" data/vox1
fi

if [ "$stage" -le 6 ] && [ "$stop_stage" -ge 6 ]; then
  log "stage 6: scores of data/vox1 (trials_O/E/H) and data/vox1_dev; calibration on the latter"
  steps/evaluate_models.sh "${eval_opts[@]}" score "$models" "$exp" data/vox1
fi

if [ "$stage" -le 7 ] && [ "$stop_stage" -ge 7 ]; then
  log "stage 7: $exp/RESULTS and THRESHOLDS; trained models packaged as model.pt"
  clustering=""
  for round in $(seq 1 "$rounds"); do
    clustering+=" pl$round=data/vox2_dev_pl$round"
  done
  steps/evaluate_models.sh "${eval_opts[@]}" --config "$config" --clustering "$clustering" \
    --note "this run: stages $stage-$stop_stage in ${SECONDS}s" report "$models" "$exp" data/vox1
fi
