#!/usr/bin/env bash
# Print spk2utt for a utt2spk file (or stdin), both levels in LC_ALL=C order.
# Usage: utils/utt2spk_to_spk2utt.sh [UTT2SPK] > spk2utt
set -euo pipefail
if [ "$#" -gt 1 ] || [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
  echo "Usage: $0 [utt2spk] > spk2utt   (reads stdin without an argument)" >&2
  exit 1
fi
. "$(dirname "$(readlink -f "$0")")/lib/sslsv_env.sh"
sslsv_datadir spk2utt "${1:--}"
