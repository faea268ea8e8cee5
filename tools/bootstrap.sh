#!/usr/bin/env bash
# Create .venv with torch and synccp (editable, with test extras), never pulling a CUDA torch.
# - a Python that already has torch >= 2.4 (a user's GPU build, say): the venv sees it
#   (--system-site-packages) and installs nothing torch-related;
# - otherwise: `pip install torch==2.13.0`, which on our machines is the CPU wheel on disk.
set -euo pipefail
PYTHON=${PYTHON:-python3}
has_torch() {
  "$1" - <<'PY' 2>/dev/null
import sys, torch
major, minor = (int(p) for p in torch.__version__.split("+")[0].split(".")[:2])
sys.exit(0 if (major, minor) >= (2, 4) else 1)
PY
}
if [ ! -x .venv/bin/python ]; then
  if has_torch "$PYTHON"; then
    echo "bootstrap: reusing the torch of $PYTHON"
    "$PYTHON" -m venv --system-site-packages .venv
  else
    "$PYTHON" -m venv .venv
  fi
fi
if ! has_torch .venv/bin/python; then
  .venv/bin/pip install --quiet "torch==2.13.0"
fi
.venv/bin/pip install --quiet -e '.[dev]'
.venv/bin/python -c "import torch, synccp; print('bootstrap: torch', torch.__version__, '| synccp', synccp.__version__)"
