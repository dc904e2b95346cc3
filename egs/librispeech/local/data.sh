#!/usr/bin/env bash
# Stage 0 of the LibriSpeech recipe (sv.sh runs it; its options are options of run.sh too):
# data dirs of any LibriSpeech-layout root (SPK/CHAPTER/SPK-CHAPTER-UTT.flac).
#
#   local/data.sh [--librispeech-root DIR] [--eval-subset train-clean-5] \
#     [--extra-subsets train-clean-100-sample] [--config conf/simclr_ntxent_am.yaml] [--nj 2]
#
# Whole speakers are held out: conf/test_speakers make up data/test, whose trials come from
# local session (chapter) information, and conf/dev_speakers (with the single utterances of
# conf/dev_nontarget_speakers) data/dev, whose trials calibrate the scores; both are dropped
# from data/train. data/aug: real background noises (--noise-dir, when present) or coloured
# noise, simulated rooms, babble of training speech. The audio must be at the config's
# features.sample_rate.
set -euo pipefail

# Begin configuration section.
config=conf/simclr_ntxent_am.yaml     # the experiment config (its features.sample_rate)
nj=2
seed=1234
librispeech_root=../../../shared/data/LibriSpeech
eval_subset=train-clean-5             # test speakers come from here
extra_subsets=train-clean-100-sample  # more unlabelled training speech
noise_dir=../../../shared/data/noise  # real background noises, when present
trials_per_utt=50
target_fraction=0.25
# End configuration section.

help_message="Usage: $0 [options]   (see the comment at the top of $0)"

. ./path.sh
. utils/parse_options.sh
. utils/recipe.sh
[ $# -eq 0 ] || die "unexpected argument '$1'"

[ -d "$librispeech_root/$eval_subset" ] \
  || die "no LibriSpeech at '$librispeech_root/$eval_subset' (give --librispeech-root)"
log "$librispeech_root ($eval_subset + $extra_subsets), test speakers: conf/test_speakers"
prepare() {
  "$SSLSV_PYTHON" -m sslsv.bin.prepare_data librispeech "$@" --config "$config" --nj "$nj"
}
prepare "$librispeech_root/$eval_subset" data/test --speakers conf/test_speakers
# trials: all of them; trials_cross_chapter: without the same-chapter targets (recording
# sessions differ, so the channel does not give the speaker away).
"$SSLSV_PYTHON" -m sslsv.bin.make_trials data/test --num-per-utt "$trials_per_utt" \
  --target-fraction "$target_fraction" --seed "$seed" \
  --cross-session-output data/test/trials_cross_chapter
# The development set (calibration), held out like the test speakers: conf/dev_speakers
# (16 utterances each: the target trials) and the single utterances of the speakers of
# conf/dev_nontarget_speakers (more non-target voices: with four speakers alone the dev
# non-target scores are far lower than the test set's, and so is the calibration).
prepare "$librispeech_root/$eval_subset" data/dev_targets --speakers conf/dev_speakers
dev_parts=(data/dev_targets)
for subset in $extra_subsets; do
  prepare "$librispeech_root/$subset" "data/dev_$subset" --speakers conf/dev_nontarget_speakers
  dev_parts+=("data/dev_$subset")
done
utils/combine_data.sh data/dev "${dev_parts[@]}"
"$SSLSV_PYTHON" -m sslsv.bin.make_trials data/dev --num-per-utt "$trials_per_utt" \
  --target-fraction "$target_fraction" --seed "$seed"
mkdir -p data/local
cat conf/test_speakers conf/dev_speakers conf/dev_nontarget_speakers \
  > data/local/held_out_speakers
prepare "$librispeech_root/$eval_subset" data/train_main \
  --exclude-speakers data/local/held_out_speakers
parts=(data/train_main)
for subset in $extra_subsets; do
  prepare "$librispeech_root/$subset" "data/train_$subset" \
    --exclude-speakers data/local/held_out_speakers
  # Subsets can share utterances: keep only those not already in the training list.
  cat "${parts[@]/%//utt2spk}" | cut -d' ' -f1 | sort > "data/train_$subset/seen"
  cut -d' ' -f1 "data/train_$subset/utt2spk" | comm -23 - "data/train_$subset/seen" \
    > "data/train_$subset/new_utts"
  utils/subset_data_dir.sh --utt-list "data/train_$subset/new_utts" \
    "data/train_$subset" "data/train_${subset}_new"
  parts+=("data/train_${subset}_new")
done
utils/combine_data.sh data/train "${parts[@]}"
noise_opts=()
[ -d "$noise_dir" ] && noise_opts=(--noise-dir "$noise_dir")
"$SSLSV_PYTHON" -m sslsv.bin.make_aug_sets --config "$config" --out data/aug --seed "$seed" \
  --babble-from data/train ${noise_opts[@]+"${noise_opts[@]}"}
for set in train test dev; do
  utils/validate_data_dir.sh "data/$set"
done
