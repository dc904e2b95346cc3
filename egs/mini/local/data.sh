#!/usr/bin/env bash
# Stage 0 of the mini recipe (sv.sh runs it; its options are options of run.sh too): the
# synthetic corpus of eSpeak NG voices, built offline, and its data dirs.
#
#   local/data.sh [--config conf/simclr_ntxent_am.yaml] [--nj 2] [--num-speakers 100] ...
#
# Writes corpus/mini (the training and test voices), corpus/mini_dev (the development set's
# voices), data/train, data/test and data/dev (with trials), data/aug (simulated rooms,
# coloured noise, babble of training speech: no MUSAN or RIRS_NOISES offline). The audio is at
# the config's features.sample_rate.
set -euo pipefail

# Begin configuration section.
config=conf/simclr_ntxent_am.yaml  # the experiment config (its features.sample_rate)
nj=2
seed=1234
corpus=corpus/mini          # the training and test voices, generated here
num_speakers=100
utts_per_speaker=12
num_test_speakers=20        # held out: never seen in training
dev_corpus=corpus/mini_dev  # the development set's voices (calibration), generated here
num_dev_speakers=60         # more than the test speakers: the tail of non-target scores
                            # matters at p 0.01
trials_per_utt=15
target_fraction=0.3
num_rirs=200                # simulated rooms for reverberation
# End configuration section.

help_message="Usage: $0 [options]   (see the comment at the top of $0)"

. ./path.sh
. utils/parse_options.sh
. utils/recipe.sh
[ $# -eq 0 ] || die "unexpected argument '$1'"

log "synthetic corpus ($num_speakers speakers) and data dirs"
"$SSLSV_PYTHON" -m sslsv.bin.make_mini_corpus --config "$config" --out "$corpus" \
  --num-speakers "$num_speakers" --utts-per-speaker "$utts_per_speaker" --seed "$seed" \
  --nj "$nj"
"$SSLSV_PYTHON" -m sslsv.bin.prepare_data folder "$corpus/wav" data/all --config "$config" \
  --nj "$nj"
cut -d' ' -f1 data/all/spk2utt > data/all/speakers
head -n -"$num_test_speakers" data/all/speakers > data/all/train_speakers
tail -n "$num_test_speakers" data/all/speakers > data/all/test_speakers
utils/subset_data_dir.sh --spk-list data/all/train_speakers data/all data/train
utils/subset_data_dir.sh --spk-list data/all/test_speakers data/all data/test
"$SSLSV_PYTHON" -m sslsv.bin.make_trials data/test --num-per-utt "$trials_per_utt" \
  --target-fraction "$target_fraction" --seed "$seed"
# The development set: other voices (another seed; ids dev...), in neither training nor
# test, whose trials calibrate each model's scores. Drawn as the test speakers are: the
# last of a plan of as many speakers (a small plan would spread them further apart).
"$SSLSV_PYTHON" -m sslsv.bin.make_mini_corpus --config "$config" --out "$dev_corpus" \
  --num-speakers "$num_speakers" --keep-last "$num_dev_speakers" \
  --utts-per-speaker "$utts_per_speaker" --seed "$((seed + 1))" --speaker-prefix dev \
  --nj "$nj"
"$SSLSV_PYTHON" -m sslsv.bin.prepare_data folder "$dev_corpus/wav" data/dev --config "$config" \
  --nj "$nj"
"$SSLSV_PYTHON" -m sslsv.bin.make_trials data/dev --num-per-utt "$trials_per_utt" \
  --target-fraction "$target_fraction" --seed "$seed"
# No MUSAN/RIRS_NOISES offline: simulated rooms, coloured noise, babble of training speech.
"$SSLSV_PYTHON" -m sslsv.bin.make_aug_sets --config "$config" --out data/aug --seed "$seed" \
  --babble-from data/train --num-rirs "$num_rirs"
for set in train test dev; do
  utils/validate_data_dir.sh "data/$set"
done
