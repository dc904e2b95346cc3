# Where the --nj jobs of stage 1 (features) and of stages 3, 6 and 8 (embeddings) run, sourced
# by sv.sh and passed to each step as --cmd (options of run.sh too: ./run.sh --extract-cmd "...").
#   local                  --nj processes on this machine
#   slurm SBATCH-OPTIONS   one Slurm job array per step and data set (sbatch --wait)
#   srun SRUN-OPTIONS      one srun per job, from inside an allocation (salloc, sbatch)
# A few hundred utterances per set: local jobs are the right size here.
fbank_cmd=local
extract_cmd=local
