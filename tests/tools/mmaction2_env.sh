#!/usr/bin/env bash
# A CPU-only MMAction2 1.2.0 to record tests/data/mmaction2 with (tests/tools/record_mmaction2.py); tests never need it.
#
#   bash tests/tools/mmaction2_env.sh DIR                  # installs into DIR (a plain folder, no second torch)
#   PYTHONPATH=DIR:. python tests/tools/record_mmaction2.py
#
# The packages go in with --no-deps: torch, torchvision, numpy, opencv, scipy, matplotlib, rich, pyyaml and Pillow
# come from the environment that runs curate. mmcv-lite has no compiled ops, which recognizers do not need.
# Three one-line fixes let the 1.2.0 wheel import with them (each checked after it is applied):
#   - mmaction/__init__.py asks for mmcv < 2.2.0, and 2.2.0 is the only mmcv-lite for it: allow < 2.3.0;
#   - mmaction/models/localizers/__init__.py imports .drn, which the wheel lacks: that import and its name go;
#   - mmaction/utils/dependency.py imports the importlib_metadata backport: the standard library has the same.
set -euo pipefail
DIR=${1:?usage: mmaction2_env.sh DIR}
PYTHON=${PYTHON:-python}
PACKAGES=(mmaction2==1.2.0 mmcv-lite==2.2.0 mmengine==0.10.7 addict==2.4.0 yapf==0.43.0 platformdirs==4.14.9
          termcolor==3.3.0 einops==0.8.2)

mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
if [[ "$(cat "$DIR/.packages" 2>/dev/null)" != "${PACKAGES[*]}" ]]; then
  "$PYTHON" -m pip install --quiet --disable-pip-version-check --no-deps --no-compile --upgrade --target "$DIR" \
    "${PACKAGES[@]}"
  echo "${PACKAGES[*]}" > "$DIR/.packages"
fi

# fix FILE OLD NEW: replace the whole line OLD by NEW (nothing when NEW is already there), then insist on NEW
fix() {
  local file="$DIR/$1"
  "$PYTHON" - "$file" "$2" "$3" <<'EOF'
import sys
path, old, new = sys.argv[1:]
lines = open(path).read().split("\n")
lines = [new if line == old else line for line in lines]
if new not in lines:
    sys.exit(f"{path}: neither the line to fix nor its fix is there: {old!r}")
open(path, "w").write("\n".join(lines))
EOF
}
fix mmaction/__init__.py "mmcv_maximum_version = '2.2.0'" "mmcv_maximum_version = '2.3.0'"
fix mmaction/models/localizers/__init__.py "from .drn.drn import DRN" "# DRN: its module is missing from the wheel"
fix mmaction/models/localizers/__init__.py "__all__ = ['TEM', 'PEM', 'BMN', 'TCANet', 'DRN']" \
    "__all__ = ['TEM', 'PEM', 'BMN', 'TCANet']"
fix mmaction/utils/dependency.py "from importlib_metadata import PackageNotFoundError, distribution" \
    "from importlib.metadata import PackageNotFoundError, distribution"

cd "$DIR/.." && PYTHONPATH="$DIR" "$PYTHON" -W ignore -c "
import mmaction, mmcv, mmengine
from mmaction.registry import MODELS
from mmaction.utils import register_all_modules
register_all_modules()
MODELS.build(dict(type='Recognizer3D', backbone=dict(type='X3D', gamma_w=1, gamma_b=2.25, gamma_d=2.2),
                  cls_head=dict(type='X3DHead', in_channels=432, num_classes=400)))
print(f'MMAction2 {mmaction.__version__} (mmcv {mmcv.__version__}, mmengine {mmengine.__version__}) in $DIR')
"
