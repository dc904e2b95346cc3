#!/usr/bin/env bash
# Stage 0 of the VoxCeleb recipe (sv.sh runs it; its options are options of run.sh too):
# VoxCeleb1 (with the official trial lists O/E/H), VoxCeleb2 dev and the augmentation sets as
# data dirs.
#
#   local/data.sh --voxceleb1-root DIR --voxceleb2-root DIR --wav-cache DIR \
#     [--musan-root DIR --rirs-root DIR] [--config conf/simclr_ntxent_am.yaml] [--nj 16]
#
# Writes data/vox1 (trials_O/E/H) and data/vox2_dev (local/prepare_data.sh), data/aug/
# {rirs,noise,speech,music}: links to MUSAN / RIRS_NOISES when given, to simulated rooms and
# noises (data/aug_simulated) otherwise; data/vox2_dev_mean (every k-th utterance: the back
# end's training set, whose mean embedding is subtracted) and data/vox1_dev with trials (the
# development set that calibrates the scores: VoxCeleb1 speakers outside VoxCeleb1-O). Audio
# is decoded, and must be, at the config's features.sample_rate.
set -euo pipefail

# Begin configuration section.
config=conf/simclr_ntxent_am.yaml  # the experiment config (its features.sample_rate)
nj=16
seed=1234
voxceleb1_root=""           # wav/idXXXXX/VIDEO/NNNNN.wav (dev + test in one tree)
voxceleb2_root=""           # dev/aac/idXXXXX/VIDEO/NNNNN.m4a
wav_cache=""                # VoxCeleb2 m4a decoded once to wav here (needs ffmpeg)
musan_root=""
rirs_root=""
trials=O,E,H
download=false              # true: fetch the official trial lists (checksummed) if missing
num_rirs=200                # simulated rooms, when there is no RIRS_NOISES
mean_utts=20000             # training utterances whose mean embedding is subtracted
num_dev_speakers=200        # VoxCeleb1 dev speakers whose trials calibrate the scores
dev_trials_per_utt=4
# End configuration section.

help_message="Usage: $0 [options]   (see the comment at the top of $0)"

. ./path.sh
. utils/parse_options.sh
. utils/recipe.sh
[ $# -eq 0 ] || die "unexpected argument '$1'"

[ -n "$voxceleb1_root" ] && [ -n "$voxceleb2_root" ] && [ -n "$wav_cache" ] \
  || die "stage 0 needs --voxceleb1-root, --voxceleb2-root and --wav-cache"
aug_opts=()
[ -n "$musan_root" ] && aug_opts+=(--musan-root "$musan_root")
[ -n "$rirs_root" ] && aug_opts+=(--rirs-root "$rirs_root")
local/prepare_data.sh --voxceleb1-root "$voxceleb1_root" --voxceleb2-root "$voxceleb2_root" \
  --wav-cache "$wav_cache" --data-root data --config "$config" --nj "$nj" --trials "$trials" \
  --download "$download" ${aug_opts[@]+"${aug_opts[@]}"}
# Augmentation sets live under data/aug/{rirs,noise,speech,music}: MUSAN / RIRS_NOISES when
# given, simulated rooms and noises otherwise.
mkdir -p data/aug
if [ -n "$musan_root" ]; then
  for kind in noise speech music; do ln -sfn "../musan_$kind" "data/aug/$kind"; done
fi
[ -n "$rirs_root" ] && ln -sfn ../rirs data/aug/rirs
if [ -z "$musan_root" ] || [ -z "$rirs_root" ]; then
  "$SSLSV_PYTHON" -m sslsv.bin.make_aug_sets --config "$config" --out data/aug_simulated \
    --seed "$seed" --babble-from data/vox2_dev --num-rirs "$num_rirs"
  for kind in rirs noise speech; do
    [ -e "data/aug/$kind" ] || ln -sfn "../aug_simulated/$kind" "data/aug/$kind"
  done
fi
in_use=$(for s in data/aug/*; do printf '%s=%s ' "${s##*/}" "$(readlink "$s")"; done)
log "augmentation sets in use: $in_use"
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
