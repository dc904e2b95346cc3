#!/usr/bin/env bash
# Copy part of a data dir: listed utterances, listed speakers, or the first N utterances.
# Usage: utils/subset_data_dir.sh (--utt-list FILE | --spk-list FILE | --first N) SRC DEST
set -euo pipefail
usage="Usage: $0 (--utt-list <file> | --spk-list <file> | --first <N>) <src-dir> <dest-dir>"
selector=()
positional=()
while [ "$#" -gt 0 ]; do
  case "$1" in
    --utt-list|--spk-list|--first)
      if [ "$#" -lt 2 ] || [ "${#selector[@]}" -gt 0 ]; then echo "$usage" >&2; exit 1; fi
      selector=("$1" "$2"); shift 2 ;;
    -h|--help) echo "$usage"; exit 0 ;;
    -*) echo "$0: unknown option $1" >&2; echo "$usage" >&2; exit 1 ;;
    *) positional+=("$1"); shift ;;
  esac
done
if [ "${#selector[@]}" -ne 2 ] || [ "${#positional[@]}" -ne 2 ]; then
  echo "$usage" >&2
  exit 1
fi
. "$(dirname "$(readlink -f "$0")")/lib/sslsv_env.sh"
sslsv_datadir subset "${selector[@]}" "${positional[@]}"
