#!/usr/bin/env bash
# Install the newest release of every dependency, without constraints.txt, in a fresh venv and run the test
# suite: finds the next upstream break (a new OpenCV, transformers, NumPy ...) before a user does. .ci/run
# does not call this; it installs the lock.
#
#   scripts/test-newest.sh [--venv DIR] [--keep-torch] [-- PYTEST_ARGS...]
#
#   --venv DIR     where to build the venv (default ${TMPDIR:-/tmp}/grounded-newest; rebuilt on every run)
#   --keep-torch   reuse this Python's torch and torchvision (the venv sees its site-packages and holds them at
#                  their installed versions) instead of downloading the newest pair (GBs); everything else
#                  is still the newest release
#   PYTEST_ARGS    passed to pytest (default: the whole suite, as the README's test command runs it)
#
# It prints `grounded doctor` and what moved against constraints.txt, then runs pytest and exits with its
# status. Where the suite passes and the move is wanted, `DIR/bin/python scripts/lock.py` rewrites the lock.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${TMPDIR:-/tmp}/grounded-newest"
keep_torch=""
while [ $# -gt 0 ]; do
  case "$1" in
    --venv) venv="$2"; shift 2 ;;
    --keep-torch) keep_torch=1; shift ;;
    --) shift; break ;;
    -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

if [ -e "$venv" ]; then  # rebuilt every run, but only ever a venv this script could have made
  [ -f "$venv/pyvenv.cfg" ] || { echo "$venv exists and is not a venv; choose another --venv" >&2; exit 2; }
  rm -rf "$venv"
fi

python="${PYTHON:-python3}"
pip_args=(--upgrade --upgrade-strategy eager)
if [ -n "$keep_torch" ]; then
  "$python" -c "import torch, torchvision" || { echo "--keep-torch: $python has no working torch + torchvision" >&2; exit 2; }
  "$python" -m venv --system-site-packages "$venv"
  "$python" -c "import importlib.metadata as m; print(*(f'{n}=={m.version(n)}' for n in ('torch', 'torchvision')), sep='\n')" \
    > "$venv/hold-torch.txt"
  pip_args+=(-c "$venv/hold-torch.txt")
else
  "$python" -m venv "$venv"
fi

echo "+ newest releases into $venv"
"$venv/bin/python" -m pip install --upgrade pip
"$venv/bin/python" -m pip install "${pip_args[@]}" torch torchvision -e ".[dev]"

"$venv/bin/python" -m grounded.doctor
echo "+ moved against constraints.txt (- lock, + newest):"
"$venv/bin/python" scripts/lock.py --check || true

echo "+ python -m pytest -q $*"
"$venv/bin/python" -m pytest -q "$@"
