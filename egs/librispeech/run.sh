#!/usr/bin/env bash
# LibriSpeech recipe (real read speech) on a CPU: the label-free pipeline of the field and its
# honest baselines. Any LibriSpeech-layout root works (SPK/CHAPTER/SPK-CHAPTER-UTT.flac); by
# default the development copy beside the checkout (../shared/data/LibriSpeech: train-clean-5
# with 28 speakers, train-clean-100-sample with one utterance of each of 251 speakers).
#
#   ./run.sh [--config conf/simclr_ntxent_am.yaml] [--rounds 2] [--stage 0] [--stop-stage 9]
#            [--librispeech-root DIR] [--train-seed N] [--train-epochs N]
#
# The stages are sv.sh's (egs/TEMPLATE/sv.sh: every recipe's pipeline), stage 0 this
# corpus's local/data.sh: 0 data (whole speakers held out: conf/test_speakers make up the
# test set, whose trials come from local session (chapter) information, and conf/dev_speakers
# the development set that calibrates the scores; both are dropped from every training list),
# 1 log-mels, 2 first stage (SSL; and the training-free stats baseline), 3 embeddings of the
# init, stats and SSL models, 4 their scores and calibration on the dev set, 5 RESULTS (rows
# init, stats, ssl; all trials and cross-chapter trials), THRESHOLDS and packaged models
# (model.pt): the paper's pipeline; 6 second stage (--rounds rounds of embed -> cluster ->
# AAM-softmax classifier, each seeded by the newest model), 7 the supervised ceiling (the
# classifier on the true speakers), 8 embeddings, scores and calibration of those models,
# 9 RESULTS with every row, THRESHOLDS and every model packaged.
# Options: those of sv.sh (./sv.sh --help) and of stage 0 (local/data.sh --help).
set -euo pipefail
cd "$(dirname "$0")"

./sv.sh --nj 2 --device cpu \
  --config conf/simclr_ntxent_am.yaml --stats-config conf/stats.yaml \
  --pl-config conf/classifier_pl.yaml --supervised-config conf/classifier_supervised.yaml \
  --rounds 2 --supervised true \
  --train-set data/train --test-set data/test --dev-set data/dev \
  "$@"
