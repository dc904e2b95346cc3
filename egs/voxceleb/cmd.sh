# Where the parallel jobs of stage 1 (features, "fbank") and stage 3 (embeddings, "extract")
# run; sourced by run.sh. Job J of a stage logs to <dir>/log/<stage>.J.log, and a failure is
# reported by job number with the end of that log.
#
#   local  --nj processes on this machine (the default)
#   slurm  one Slurm job array per stage and data set (sbatch --wait --array=...); the data,
#          the repository and its .venv must be on a file system that the nodes share
#   srun   one srun per job, from inside an allocation (salloc, or an sbatch script)
#
# A value already in the environment wins, so `SSLSV_LAUNCHER=slurm ./run.sh` works too.
export SSLSV_LAUNCHER=${SSLSV_LAUNCHER:-local}

# Slurm options for every job (sbatch/srun syntax), then per stage; a stage's options come
# after the common ones, so they take precedence. VoxCeleb2 dev is about 1.1 M utterances:
# with --nj 100, each job of a stage handles about 11k of them.
#   export SSLSV_LAUNCHER=slurm
#   export SSLSV_SLURM_OPTS="--partition=cpu --time=4:00:00 --mem=8G --cpus-per-task=4"
#   export SSLSV_SLURM_OPTS_EXTRACT="--partition=gpu --gpus=1 --cpus-per-task=8 --mem=32G"
export SSLSV_SLURM_OPTS=${SSLSV_SLURM_OPTS:-}
