#!/usr/bin/env bash
# The corpora of the VoxCeleb recipe on disk -> Kaldi data dirs under --data-root (run by its
# stage 0, local/data.sh).
#
#   local/prepare_data.sh --voxceleb1-root DIR [--voxceleb1-root2 DIR] [--voxceleb2-root DIR]
#       [--musan-root DIR] [--rirs-root DIR] [--wav-cache DIR] [--data-root data] [--nj 8]
#       [--trials O,E,H] [--download false|true] [--config conf/simclr_ntxent_am.yaml]
#
# Writes (each only when its corpus root is given):
#   DATA/vox1             VoxCeleb1 (dev + test when both roots are given, e.g. vox1_dev_wav
#                         and vox1_test_wav), with trials_O/E/H converted from the official
#                         cleaned lists (veri_test2.txt, list_test_all2.txt, list_test_hard2.txt:
#                         found next to the corpus or passed with --veri-test etc.; with
#                         --download true, lists found in neither place are fetched from the
#                         VoxCeleb site over HTTPS, MD5-checked, into DATA/local/voxceleb1_meta)
#   DATA/vox2_dev         VoxCeleb2 dev, m4a decoded once to WAV under --wav-cache
#   DATA/musan_{noise,speech,music}   6-second virtual chunks (segments files)
#   DATA/rirs             RIRS_NOISES simulated rooms
# The audio is imported (VoxCeleb2 decoded) at --config's features.sample_rate (without a
# config: the config's default, 16 kHz). Every corpus path may contain spaces. trials_E/H
# reference VoxCeleb1 dev and test together, so with only the test part give --trials O.
set -euo pipefail

voxceleb1_root=""
voxceleb1_root2=""
voxceleb2_root=""
musan_root=""
rirs_root=""
wav_cache=""
data_root=data
config=""   # the experiment config: the sample rate of its features section
nj=8
trials=O,E,H
veri_test=""
list_test_all=""
list_test_hard=""
download=false
help_message="Usage: $0 [options]   (see the comment at the top of $0)"

. "$(dirname "$(readlink -f "$0")")/../../../utils/parse_options.sh"
. "$(dirname "$(readlink -f "$0")")/../../../utils/lib/sslsv_env.sh"

if [ "$#" -ne 0 ]; then
  echo "$0: unexpected argument '$1'" >&2
  echo "$help_message" >&2
  exit 1
fi
if [ -z "$voxceleb1_root$voxceleb2_root$musan_root$rirs_root" ]; then
  echo "$0: give at least one of --voxceleb1-root, --voxceleb2-root, --musan-root, --rirs-root" >&2
  exit 1
fi

case "$download" in
  true|false) ;;
  *) echo "$0: --download must be true or false, got '$download'" >&2; exit 1 ;;
esac

prepare() {
  "$SSLSV_PYTHON" -m sslsv.bin.prepare_data "$@" --nj "$nj" ${config:+--config "$config"}
}

if [ -n "$voxceleb1_root" ]; then
  roots=("$voxceleb1_root")
  [ -n "$voxceleb1_root2" ] && roots+=("$voxceleb1_root2")
  lists=()
  [ -n "$veri_test" ] && lists+=(--veri-test "$veri_test")
  [ -n "$list_test_all" ] && lists+=(--list-test-all "$list_test_all")
  [ -n "$list_test_hard" ] && lists+=(--list-test-hard "$list_test_hard")
  [ "$download" = true ] && lists+=(--download --download-dir "$data_root/local/voxceleb1_meta")
  prepare voxceleb1 "${roots[@]}" "$data_root/vox1" --trials "$trials" \
    "${lists[@]+"${lists[@]}"}"
fi

if [ -n "$voxceleb2_root" ]; then
  if [ -z "$wav_cache" ]; then
    echo "$0: --voxceleb2-root needs --wav-cache DIR (where the decoded wavs go)" >&2
    exit 1
  fi
  prepare voxceleb2 "$voxceleb2_root" "$data_root/vox2_dev" --wav-cache "$wav_cache"
fi

if [ -n "$musan_root" ]; then
  prepare musan "$musan_root" "$data_root/musan" --chunk-seconds 6
fi

if [ -n "$rirs_root" ]; then
  prepare rirs "$rirs_root" "$data_root/rirs"
fi
