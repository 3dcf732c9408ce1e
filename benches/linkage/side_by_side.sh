#!/usr/bin/env bash
# Person linkage, CaseBridge side by side with clkhash + anonlink on FEBRL 1-3
# (no argument), or the frequency attack on its encodings (--attack).
# Makes a virtualenv (target/linkage-venv) with pinned versions from PyPI,
# builds the CaseBridge side (benches/linkage_csv.rs) and runs both on the
# same records in one run.
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=target/linkage-venv
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q recordlinkage==0.16 clkhash==0.18.3 anonlink==0.15.3
fi
bin=$(cargo bench --bench linkage_csv --no-run --message-format=json 2>/dev/null \
    | "$venv/bin/python" -c 'import json,sys
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m["target"]["name"]=="linkage_csv" and m.get("executable"):
        print(m["executable"])')
if [ "${1:-}" = "--attack" ]; then
    "$venv/bin/python" benches/linkage/frequency_attack.py "$bin"
else
    "$venv/bin/python" benches/linkage/side_by_side.py "$bin"
fi
