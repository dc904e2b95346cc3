#!/usr/bin/env bash
# Keep only the utterances present in every per-utterance file of a data dir, re-sort, rebuild
# spk2utt, filter trials. Originals go to DIR/.backup/, dropped ids (with reasons) to
# DIR/.backup/dropped.
# Usage: utils/fix_data_dir.sh DIR
set -euo pipefail
if [ "$#" -ne 1 ] || [[ "$1" == -* ]]; then
  echo "Usage: $0 <data-dir>" >&2
  exit 1
fi
. "$(dirname "$(readlink -f "$0")")/lib/sslsv_env.sh"
sslsv_datadir fix "$1"
