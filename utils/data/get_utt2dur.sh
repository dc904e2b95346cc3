#!/usr/bin/env bash
# Write DIR/utt2dur (seconds) from audio headers (segments: end - start).
# Usage: utils/data/get_utt2dur.sh [--nj N] DIR
set -euo pipefail
usage="Usage: $0 [--nj <jobs>] <data-dir>"
nj=()
positional=()
while [ "$#" -gt 0 ]; do
  case "$1" in
    --nj)
      if [ "$#" -lt 2 ] || ! [[ "$2" =~ ^[0-9]+$ ]]; then echo "$usage" >&2; exit 1; fi
      nj=(--nj "$2"); shift 2 ;;
    --nj=*) nj=(--nj "${1#--nj=}"); shift ;;
    -h|--help) echo "$usage"; exit 0 ;;
    -*) echo "$0: unknown option $1" >&2; echo "$usage" >&2; exit 1 ;;
    *) positional+=("$1"); shift ;;
  esac
done
if [ "${#positional[@]}" -ne 1 ]; then
  echo "$usage" >&2
  exit 1
fi
. "$(dirname "$(readlink -f "$0")")/../lib/sslsv_env.sh"
sslsv_datadir utt2dur "${nj[@]+"${nj[@]}"}" "${positional[0]}"
