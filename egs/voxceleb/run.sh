#!/usr/bin/env bash
# VoxCeleb recipe: train on VoxCeleb2 dev without labels, evaluate on VoxCeleb1-O/E/H.
#
#   ./run.sh --voxceleb1-root /data/VoxCeleb1 --voxceleb2-root /data/VoxCeleb2 \
#            --wav-cache /data/vox2_wav [--musan-root /data/musan --rirs-root /data/RIRS_NOISES] \
#            [--config conf/simclr_ntxent_am.yaml] [--rounds 2] [--stage 0] [--stop-stage 9]
#
# The stages are sv.sh's (egs/TEMPLATE/sv.sh: every recipe's pipeline), stage 0 this
# corpus's local/data.sh: 0 data, 1 log-mels (of the sets that are embedded: not VoxCeleb2
# dev, whose training crops get theirs on the device), 2 first stage (SSL; and the
# training-free stats baseline), 3 embeddings of the init, stats and SSL models, 4 their
# scores and calibration on VoxCeleb1 dev speakers, 5 RESULTS (rows init, stats, ssl),
# THRESHOLDS and packaged models (model.pt): the paper's pipeline; 6 second stage (--rounds
# rounds: embed VoxCeleb2 dev with the newest model, cluster it into pseudo-speakers, train an
# AAM-softmax classifier on them; conf/classifier_pl_*.yaml), 7 the supervised ceiling (off
# by default: --supervised true; a long run that uses the VoxCeleb2 speaker labels),
# 8 embeddings, scores and calibration of those models, 9 RESULTS with every row, THRESHOLDS
# and every model packaged.
# Options: those of sv.sh (./sv.sh --help: --extract-nj, --train-opts for several nodes, ...)
# and of stage 0 (local/data.sh --help).
#
# Each row of the paper's study is one config in conf/ (--config conf/<row>.yaml); the
# experiment directory is exp/<experiment name in the config>.
set -euo pipefail
cd "$(dirname "$0")"

# data/vox2_dev_mean: the back end's training set (its mean embedding is subtracted) and the
# stats baseline's; data/vox1_dev: the development set (calibration), when stage 0 found
# VoxCeleb1 speakers outside VoxCeleb1-O.
./sv.sh --nj 16 --device cuda \
  --config conf/simclr_ntxent_am.yaml --stats-config conf/stats.yaml \
  --pl-config conf/classifier_pl_resnet34.yaml \
  --supervised-config conf/classifier_supervised_resnet34.yaml \
  --rounds 2 --supervised false \
  --train-set data/vox2_dev --backend-set data/vox2_dev_mean --test-set data/vox1 \
  --dev-set data/vox1_dev --fbank-sets "data/vox2_dev_mean data/vox1" \
  "$@"
