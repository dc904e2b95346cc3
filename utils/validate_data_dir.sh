#!/usr/bin/env bash
# Check a Kaldi data dir: sorted unique ids, files consistent with utt2spk, spk2utt, utt2dur,
# feats.scp, segments, trials; errors name the file, line and id.
# Usage: utils/validate_data_dir.sh [--no-wav-check] DIR
set -euo pipefail
usage="Usage: $0 [--no-wav-check] <data-dir>"
flags=()
positional=()
for arg in "$@"; do
  case "$arg" in
    --no-wav-check) flags+=(--no-wav-check) ;;
    -h|--help) echo "$usage"; exit 0 ;;
    -*) echo "$0: unknown option $arg" >&2; echo "$usage" >&2; exit 1 ;;
    *) positional+=("$arg") ;;
  esac
done
if [ "${#positional[@]}" -ne 1 ]; then
  echo "$usage" >&2
  exit 1
fi
. "$(dirname "$(readlink -f "$0")")/lib/sslsv_env.sh"
sslsv_datadir validate "${flags[@]+"${flags[@]}"}" "${positional[0]}"
