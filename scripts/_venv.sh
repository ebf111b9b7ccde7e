# Sourced by scripts/demo and scripts/test: make ./.venv and install errmesh into it.
# Idempotent and quiet; a fresh clone needs only python3 (>= 3.10) with venv.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${ERRMESH_VENV:-$root/.venv}"
extras="${1:-}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
stamp="$venv/.errmesh-installed${extras:+-$extras}"
if [ ! -f "$stamp" ] || [ "$root/pyproject.toml" -nt "$stamp" ]; then
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    -e "$root${extras:+[$extras]}" 2>&1 | grep -v "is ignored: it is neither" || true
  "$venv/bin/python" -c "import mesh, node, github_sink" 
  touch "$stamp"
fi
py="$venv/bin/python"
