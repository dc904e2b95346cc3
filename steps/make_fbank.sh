#!/usr/bin/env bash
# Features: log-mel filterbanks of a data dir, as Kaldi ark/scp, in --nj jobs.
#
# The front end is the features: section of the experiment config, so the features are the
# model's own; extraction reads them when they match its model, and computes log-mels from
# the audio otherwise. Training never reads them (it computes features of augmented crops on
# the device), so recipes make them only for the sets that are embedded.
set -euo pipefail

# Begin configuration section.
config=        # experiment config (its features: section); required
nj=4           # parallel jobs
cmd=local      # where the jobs run: local, "slurm SBATCH-OPTIONS", "srun SRUN-OPTIONS"
# End configuration section.

help_message="Usage: $0 [options] --config <config> <data-dir> <feats-dir>
 e.g.: $0 --nj 8 --config conf/simclr_ntxent_am.yaml data/test feats/test
Reads <data-dir>/wav.scp (and segments, when present). Writes <feats-dir>/fbank_<name>.JOB.ark
and .scp, then <data-dir>/feats.scp, utt2num_frames and fbank.yaml (the settings used); job
logs in <data-dir>/log/fbank.JOB.log. A finished data dir is left as it is."

. "$(dirname "$(readlink -f "$0")")/../utils/lib/sslsv_env.sh"
. "$SSLSV_ROOT/utils/parse_options.sh"

if [ $# -ne 2 ] || [ -z "$config" ]; then
  echo "$help_message" >&2
  exit 1
fi
data=$1
feats_dir=$2
for f in "$config" "$data/wav.scp"; do
  [ -f "$f" ] || { echo "$0: no such file $f" >&2; exit 1; }
done

"$SSLSV_PYTHON" -m sslsv.bin.compute_features --config "$config" --data "$data" \
  --feats-dir "$feats_dir" --nj "$nj" --cmd "$cmd"
