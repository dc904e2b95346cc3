# Where the --nj jobs of stage 1 (features) and of stages 3, 6 and 8 (embeddings) run, sourced
# by sv.sh and passed to each step as --cmd (options of run.sh too: ./run.sh --extract-cmd "...").
#   local                  --nj processes on this machine
#   slurm SBATCH-OPTIONS   one Slurm job array per step and data set (sbatch --wait); the
#                          data, the repository and its .venv must be on a shared file system
#   srun SRUN-OPTIONS      one srun per job, from inside an allocation (salloc, sbatch)
# Job J of a step logs to <dir>/log/<fbank|extract>.J.log; a failure is reported by job
# number with the end of that log. For example:
#   fbank_cmd="slurm --partition=cpu --time=2:00:00 --mem=4G --cpus-per-task=2"
#   extract_cmd="slurm --partition=gpu --gpus=1"   # with ./run.sh --device cuda
fbank_cmd=local
extract_cmd=local
