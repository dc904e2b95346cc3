#!/usr/bin/env bash
# Mini recipe: a synthetic multi-speaker corpus built offline (eSpeak NG voices), SimCLR with
# the symmetric NT-Xent-AM loss, the label-free second stage, and the baselines, with cosine
# scoring. Runs end to end on a 2-core CPU; --stop-stage 5 in minutes.
#
#   ./run.sh [--stage 0] [--stop-stage 9] [--nj 2] [--config conf/simclr_ntxent_am.yaml]
#            [--num-speakers 100 ...]
#
# The stages are sv.sh's (egs/TEMPLATE/sv.sh: every recipe's pipeline), stage 0 this
# corpus's local/data.sh: 0 synthetic corpus (training, test and development voices) and data
# dirs, 1 log-mels, 2 first stage (SSL; and the training-free stats baseline), 3 embeddings
# of the init, stats and SSL models, 4 their scores, calibrated on a development set of other
# voices, 5 RESULTS (rows init, stats, ssl), THRESHOLDS and packaged models (model.pt:
# sslsv.load_model, python -m sslsv.bin.verify / embed / export): the paper's pipeline;
# 6 second stage (--rounds rounds of embed -> cluster -> AAM-softmax classifier, then
# large-margin fine-tuning: --lmft-config, '' for none; --pl-config
# conf/classifier_pl_gate_lc.yaml adds the loss gate and label correction), 7 the
# supervised ceiling (the classifier on the true speakers), 8 embeddings, scores and
# calibration of those models, 9 RESULTS with every row, THRESHOLDS and every model packaged.
# Options: those of sv.sh (./sv.sh --help) and of stage 0 (local/data.sh --help).
set -euo pipefail
cd "$(dirname "$0")"

./sv.sh --nj 2 --device cpu \
  --config conf/simclr_ntxent_am.yaml --stats-config conf/stats.yaml \
  --pl-config conf/classifier_pl.yaml --lmft-config conf/classifier_lmft.yaml \
  --supervised-config conf/classifier_supervised.yaml \
  --rounds 2 --supervised true \
  --train-set data/train --test-set data/test --dev-set data/dev \
  "$@"
