#!/usr/bin/env bash
# Extraction: one embedding per utterance of a data dir with a trained (or any) model, as
# Kaldi ark/scp, in --nj jobs.
#
# The protocol (whole utterances, or the mean of evenly spaced crops) is the extract: section
# of --config, by default the checkpoint's own config. Features come from <data-dir>/feats.scp
# when steps/make_fbank.sh made them with the model's front end, otherwise from the audio.
set -euo pipefail

# Begin configuration section.
config=        # experiment config whose extract: section to use (default: the checkpoint's)
nj=            # parallel jobs; empty: one per visible GPU with --device cuda, 4 on CPU
cmd=local      # where the jobs run: local, "slurm SBATCH-OPTIONS", "srun SRUN-OPTIONS"
device=cpu     # cpu or cuda (job J on visible GPU (J-1) mod <number of GPUs>)
# End configuration section.

help_message="Usage: $0 [options] <model.pt> <data-dir> <embedding-dir>
 e.g.: $0 --nj 8 --config conf/x.yaml exp/x/final.pt data/test exp/x/embeddings_final/test
Reads the model, <data-dir>/wav.scp (and segments) or feats.scp. Writes
<embedding-dir>/embeddings.scp (and embeddings.JOB.ark/.scp); job logs in
<embedding-dir>/log/extract.JOB.log. Finished jobs are not redone."

. "$(dirname "$(readlink -f "$0")")/../utils/lib/sslsv_env.sh"
. "$SSLSV_ROOT/utils/parse_options.sh"

if [ $# -ne 3 ]; then
  echo "$help_message" >&2
  exit 1
fi
model=$1
data=$2
dir=$3
for f in "$model" "$data/wav.scp" ${config:+"$config"}; do
  [ -f "$f" ] || { echo "$0: no such file $f" >&2; exit 1; }
done

if [ -z "$nj" ] && [ "$device" != cuda ]; then
  nj=4
fi
# Without --nj, sslsv.bin.extract starts one job per GPU that CUDA_VISIBLE_DEVICES leaves visible.
"$SSLSV_PYTHON" -m sslsv.bin.extract --checkpoint "$model" --data "$data" --output "$dir" \
  ${nj:+--nj "$nj"} --cmd "$cmd" --device "$device" ${config:+--config "$config"}
