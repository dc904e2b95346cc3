#!/usr/bin/env bash
# Stage 0 of the LibriSpeech recipe (sv.sh runs it; its options are options of run.sh too):
# data dirs of any LibriSpeech-layout root (SPK/CHAPTER/SPK-CHAPTER-UTT.flac) and of
# speechocean762 (SPEAKER/UTT.ogg: read English of Mandarin L1 children and adults, one
# recording session per speaker).
#
#   local/data.sh [--librispeech-root DIR] [--eval-subset train-clean-5] \
#     [--extra-subsets train-clean-100-sample] [--speechocean-root DIR] \
#     [--config conf/simclr_ntxent_am.yaml] [--nj 2]
#
# Whole speakers are held out of every training list:
#   data/test  one data dir: the LibriSpeech speakers of conf/test_speakers and the
#              speechocean762 dev/ speakers of conf/speechocean_test_speakers, with a trial
#              list per corpus (no trial pairs the two): trials_librispeech (targets across
#              chapters where a speaker has several), trials_cross_chapter (those without
#              same-chapter targets), trials_speechocean (every target shares a session),
#              and trials, all of them;
#   data/dev   the speechocean762 dev/ speakers of conf/speechocean_dev_speakers (chosen
#              balanced by age group and gender): its trials calibrate the scores, and
#              training validates on it;
#   data/train every other LibriSpeech utterance (eval subset and extra subsets, each
#              utterance once) and all of speechocean762 train/, unlabelled.
# data/aug: real background noises (--noise-dir, when present) or coloured noise, simulated
# rooms, babble of training speech. The audio must be at the config's features.sample_rate.
set -euo pipefail

# Begin configuration section.
config=conf/simclr_ntxent_am.yaml     # the experiment config (its features.sample_rate)
nj=2
seed=1234
librispeech_root=../../../shared/data/LibriSpeech
eval_subset=train-clean-5             # LibriSpeech test speakers come from here
extra_subsets=train-clean-100-sample  # more unlabelled training speech
speechocean_root=../../../shared/data/speechocean762  # train/ (training), dev/ (dev, test)
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
for part in train dev; do
  [ -d "$speechocean_root/$part" ] \
    || die "no speechocean762 at '$speechocean_root/$part' (give --speechocean-root)"
done
log "$librispeech_root ($eval_subset + $extra_subsets) and $speechocean_root (train, dev);" \
  "test speakers: conf/test_speakers, conf/speechocean_test_speakers;" \
  "dev speakers: conf/speechocean_dev_speakers"
prepare() {
  local kind=$1
  shift
  "$SSLSV_PYTHON" -m sslsv.bin.prepare_data "$kind" "$@" --config "$config" --nj "$nj"
}
trials() {
  "$SSLSV_PYTHON" -m sslsv.bin.make_trials "$@" --num-per-utt "$trials_per_utt" \
    --target-fraction "$target_fraction" --seed "$seed"
}

# The test set: each corpus's part with its own trials, then one data dir.
prepare librispeech "$librispeech_root/$eval_subset" data/test_librispeech \
  --speakers conf/test_speakers
# trials: all of them; trials_cross_chapter: without the same-chapter targets (recording
# sessions differ, so the channel does not give the speaker away).
trials data/test_librispeech --cross-session-output data/test_librispeech/trials_cross_chapter
prepare folder "$speechocean_root/dev" data/test_speechocean \
  --speakers conf/speechocean_test_speakers
# speechocean762 has one recording session per speaker: every target trial here is
# same-session (the channel helps), so these trials measure less than the cross-chapter ones.
trials data/test_speechocean
utils/combine_data.sh data/test data/test_librispeech data/test_speechocean
cp data/test_librispeech/trials data/test/trials_librispeech
cp data/test_librispeech/trials_cross_chapter data/test/trials_cross_chapter
cp data/test_speechocean/trials data/test/trials_speechocean
cat data/test/trials_librispeech data/test/trials_speechocean > data/test/trials

# The development set (calibration; validation during training), whole speakers of neither
# the training nor the test set. Same-session targets too.
prepare folder "$speechocean_root/dev" data/dev --speakers conf/speechocean_dev_speakers
trials data/dev

# The training set: every LibriSpeech speaker but the test speakers, and speechocean762
# train/ (other speakers than its dev/: ids so<NNNN>, never LibriSpeech's numbers).
prepare librispeech "$librispeech_root/$eval_subset" data/train_main \
  --exclude-speakers conf/test_speakers
parts=(data/train_main)
for subset in $extra_subsets; do
  prepare librispeech "$librispeech_root/$subset" "data/train_$subset" \
    --exclude-speakers conf/test_speakers
  # Subsets can share utterances: keep only those not already in the training list.
  cat "${parts[@]/%//utt2spk}" | cut -d' ' -f1 | sort > "data/train_$subset/seen"
  cut -d' ' -f1 "data/train_$subset/utt2spk" | comm -23 - "data/train_$subset/seen" \
    > "data/train_$subset/new_utts"
  utils/subset_data_dir.sh --utt-list "data/train_$subset/new_utts" \
    "data/train_$subset" "data/train_${subset}_new"
  parts+=("data/train_${subset}_new")
done
prepare folder "$speechocean_root/train" data/train_speechocean
parts+=(data/train_speechocean)
utils/combine_data.sh data/train "${parts[@]}"
noise_opts=()
[ -d "$noise_dir" ] && noise_opts=(--noise-dir "$noise_dir")
"$SSLSV_PYTHON" -m sslsv.bin.make_aug_sets --config "$config" --out data/aug --seed "$seed" \
  --babble-from data/train ${noise_opts[@]+"${noise_opts[@]}"}
for set in train test dev; do
  utils/validate_data_dir.sh "data/$set"
done
