# The one way every script finds sslsv (sourced by each recipe's path.sh, by steps/*.sh and
# by the utils/ wrappers). Exports
#   SSLSV_ROOT    the repository (the folder above utils/, links resolved)
#   SSLSV_PYTHON  the interpreter: $SSLSV_PYTHON if already set, else the project's
#                 virtualenv (utils/install.sh makes $SSLSV_ROOT/.venv), else python3
# puts the interpreter's folder first on PATH (so python and torchrun in a shell after
# `. ./path.sh` are the project's), the repository on PYTHONPATH (so `-m sslsv...` needs no
# install), sorts in C order (Kaldi's tables) and keeps Python's output unbuffered.

SSLSV_ROOT="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../.." && pwd)"
if [ -z "${SSLSV_PYTHON:-}" ]; then
  if [ -x "$SSLSV_ROOT/.venv/bin/python" ]; then
    SSLSV_PYTHON="$SSLSV_ROOT/.venv/bin/python"
  else
    SSLSV_PYTHON=python3
  fi
fi
export SSLSV_ROOT SSLSV_PYTHON
case "$SSLSV_PYTHON" in
  /*) export PATH="$(dirname "$SSLSV_PYTHON"):$PATH" ;;
esac
export PYTHONPATH="$SSLSV_ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
export LC_ALL=C

# sslsv_datadir SUBCOMMAND ARGS...: run the data-dir CLI (the utils/ wrappers).
sslsv_datadir() {
  "$SSLSV_PYTHON" -m sslsv.bin.datadir "$@"
}
