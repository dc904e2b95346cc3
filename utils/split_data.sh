#!/usr/bin/env bash
# Split a data dir into N parts: DIR/split{N}/{1..N} (balanced contiguous blocks of sorted
# utterances) or, with --per-spk, DIR/split{N}spk/{1..N} (each speaker in one part).
# An existing split made from the same files is reused. Prints the part folders.
# Usage: utils/split_data.sh [--per-spk] DIR N
set -euo pipefail
usage="Usage: $0 [--per-spk] <data-dir> <num-parts>"
flags=()
positional=()
for arg in "$@"; do
  case "$arg" in
    --per-spk) flags+=(--per-spk) ;;
    -h|--help) echo "$usage"; exit 0 ;;
    -*) echo "$0: unknown option $arg" >&2; echo "$usage" >&2; exit 1 ;;
    *) positional+=("$arg") ;;
  esac
done
if [ "${#positional[@]}" -ne 2 ] || ! [[ "${positional[1]}" =~ ^[0-9]+$ ]]; then
  echo "$usage" >&2
  exit 1
fi
. "$(dirname "$(readlink -f "$0")")/lib/sslsv_env.sh"
sslsv_datadir split "${flags[@]+"${flags[@]}"}" "${positional[@]}"
