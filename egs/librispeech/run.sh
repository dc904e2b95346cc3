#!/usr/bin/env bash
# LibriSpeech + speechocean762 recipe (real read speech) on a CPU: the label-free pipeline of
# the field and its honest baselines. Any LibriSpeech-layout root works
# (SPK/CHAPTER/SPK-CHAPTER-UTT.flac); by default the development copy beside the checkout
# (../shared/data/LibriSpeech: train-clean-5 with 28 speakers, train-clean-100-sample with one
# utterance of each of 251 speakers), and speechocean762 (../shared/data/speechocean762:
# train/ 125 speakers, dev/ 65 others, about 20 utterances each, one session per speaker).
#
#   ./run.sh [--config conf/simclr_ntxent_am.yaml] [--rounds 2] [--stage 0] [--stop-stage 9]
#            [--librispeech-root DIR] [--speechocean-root DIR] [--train-seed N]
#            [--train-epochs N]
#
# The stages are sv.sh's (egs/TEMPLATE/sv.sh: every recipe's pipeline), stage 0 this
# corpus's local/data.sh: 0 data (whole speakers held out of training: the test set is the
# LibriSpeech speakers of conf/test_speakers and the speechocean762 dev/ speakers of
# conf/speechocean_test_speakers, with trials per corpus (trials_librispeech,
# trials_cross_chapter, trials_speechocean; trials: all); the development set, which
# calibrates the scores and is validated on during training, the speechocean762 dev/
# speakers of conf/speechocean_dev_speakers; the training set, every other LibriSpeech
# utterance and speechocean762 train/, ~3,060 utterances), 1 log-mels, 2 first stage (SSL;
# and the training-free stats baseline), 3 embeddings of the init, stats and SSL models, 4
# their scores and calibration on the dev set, 5 RESULTS (rows init, stats, ssl; a line per
# trial list), THRESHOLDS and packaged models (model.pt): the paper's pipeline; 6 second
# stage (--rounds rounds of embed -> cluster -> AAM-softmax classifier, each seeded by the
# newest model; loss-gated with label correction, conf/classifier_pl_gate_lc_d1.yaml: the
# variant measured best here, docs/SECOND_STAGE.md; large-margin fine-tuning, which made
# things worse here, with --lmft-config conf/classifier_lmft.yaml), 7 the supervised ceiling (the classifier on the true speakers), 8
# embeddings, scores and calibration of those models, 9 RESULTS with every row, THRESHOLDS
# and every model packaged.
# Options: those of sv.sh (./sv.sh --help) and of stage 0 (local/data.sh --help).
set -euo pipefail
cd "$(dirname "$0")"

./sv.sh --nj 2 --device cpu \
  --config conf/simclr_ntxent_am.yaml --stats-config conf/stats.yaml \
  --pl-config conf/classifier_pl_gate_lc_d1.yaml --supervised-config conf/classifier_supervised.yaml \
  --rounds 2 --supervised true \
  --train-set data/train --test-set data/test --dev-set data/dev \
  "$@"
