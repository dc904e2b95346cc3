#!/usr/bin/env bash
# Create (or update) the project's virtualenv at <repo>/.venv with sslsv and its test tools.
# Idempotent: does nothing when setup.py has not changed since the last successful install.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="$root/.venv"
python=${PYTHON:-python3}
stamp="$venv/.sslsv-installed"
want=$(cat "$root/setup.py" | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$venv/bin/python" -c "import sslsv, torch, torchaudio" 2>/dev/null; then
  exit 0
fi
echo "utils/install.sh: installing sslsv into $venv (torch 2.11 is a large download the first time)" >&2
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet -e "$root[test]"
echo "$want" > "$stamp"
