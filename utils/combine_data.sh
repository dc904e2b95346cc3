#!/usr/bin/env bash
# Concatenate data dirs; a duplicate utterance id is an error.
# Usage: utils/combine_data.sh DEST SRC1 [SRC2 ...]
set -euo pipefail
if [ "$#" -lt 2 ] || [[ "$1" == -* ]]; then
  echo "Usage: $0 <dest-data-dir> <src-data-dir1> [<src-data-dir2> ...]" >&2
  exit 1
fi
. "$(dirname "$(readlink -f "$0")")/lib/sslsv_env.sh"
sslsv_datadir combine "$@"
