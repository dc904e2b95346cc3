# Environment for the recipes: the project's virtualenv (made by utils/install.sh) if present.
# Resolves links, so a directory of links to a recipe's files works as a recipe too.
SSLSV_ROOT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../.." && pwd)
if [ -x "$SSLSV_ROOT/.venv/bin/python" ]; then
  export PATH="$SSLSV_ROOT/.venv/bin:$PATH"
fi
export PYTHONPATH="$SSLSV_ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
export LC_ALL=C
