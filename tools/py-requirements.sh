#!/usr/bin/env bash
# Prints the Python distributions of tests/requirements.txt that are not
# installed (by distribution name, so that PyYAML counts although its module
# is yaml), one per line; exits 1 when one is missing.
set -u
cd "$(dirname "$0")/.."
exec "${1:-python3}" - tests/requirements.txt <<'PY'
import re, sys
from importlib import metadata
missing = []
for line in open(sys.argv[1]):
    line = line.split("#", 1)[0].strip()
    if not line:
        continue
    name = re.split(r"[<>=!~;\[ ]", line, 1)[0]
    try:
        metadata.version(name)
    except metadata.PackageNotFoundError:
        missing.append(name)
print("\n".join(missing))
sys.exit(1 if missing else 0)
PY
