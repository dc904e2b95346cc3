# Sourced by the utils/ wrappers: finds the repository and the Python that runs sslsv.
#   SSLSV_ROOT    repository root (the folder above utils/, symlinks resolved)
#   SSLSV_PYTHON  the interpreter: $SSLSV_PYTHON if set, else $SSLSV_ROOT/.venv/bin/python
#                 when it exists, else python3 from PATH
# and puts the repository on PYTHONPATH so `-m sslsv...` works without installing it.

SSLSV_ROOT="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../.." && pwd)"
if [ -z "${SSLSV_PYTHON:-}" ]; then
  if [ -x "$SSLSV_ROOT/.venv/bin/python" ]; then
    SSLSV_PYTHON="$SSLSV_ROOT/.venv/bin/python"
  else
    SSLSV_PYTHON=python3
  fi
fi
export PYTHONPATH="$SSLSV_ROOT${PYTHONPATH:+:$PYTHONPATH}"

# sslsv_datadir SUBCOMMAND ARGS...: run the data-dir CLI.
sslsv_datadir() {
  "$SSLSV_PYTHON" -m sslsv.bin.datadir "$@"
}
