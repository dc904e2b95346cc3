# Where the --nj jobs of stage 1 (features) and of stages 3, 6 and 8 (embeddings) run, sourced
# by sv.sh and passed to each step as --cmd (options of run.sh too: ./run.sh --extract-cmd "...").
#   local                  --nj processes on this machine
#   slurm SBATCH-OPTIONS   one Slurm job array per step and data set (sbatch --wait); the
#                          data, the repository and its .venv must be on a shared file system
#   srun SRUN-OPTIONS      one srun per job, from inside an allocation (salloc, sbatch)
# Job J of a step logs to <dir>/log/<fbank|extract>.J.log; a failure is reported by job
# number with the end of that log. VoxCeleb1 is 153k utterances: with --nj 100, each job
# of a step handles about 1.5k of them. For example:
#   fbank_cmd="slurm --partition=cpu --time=4:00:00 --mem=8G --cpus-per-task=4"
#   extract_cmd="slurm --partition=gpu --gpus=1 --cpus-per-task=8 --mem=32G"
fbank_cmd=local
extract_cmd=local
