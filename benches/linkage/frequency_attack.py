"""A frequency attack on person encodings, as a compromised peer could run it.

The attacker sees what a node shares of persons: per record, its blocks and
filters. It knows the public frequency of names (census lists) but not the
key. Within each block it groups identical filters, ranks the groups by
size, and guesses that the largest group is the most frequent name, the
next the next, and so on (frequency alignment, the first step of the
attacks of Kuzu et al. and Christen et al. on Bloom-filter encodings). A
record is re-identified when its group's guess is its true name.

Population: persons drawn by frequency from clkhash's bundled US name lists
(given names with their counts, the 2,000 most frequent family names), dates
of birth uniform over 1950-2005. Schemes, from `linkage_csv`:
- `year`: what nodes share today (record-level filter: name and birthday,
  salted by year of birth);
- `year+sound`: that plus the name-sound encodings (name and full date);
- `fields`: per-field evidence, of which the attacker sees the name filters.

    benches/linkage/side_by_side.sh --attack
"""

import collections
import csv
import os
import random
import subprocess
import sys
import tempfile

import clkhash

N = 20000


def names():
    data = os.path.join(os.path.dirname(clkhash.__file__), "data")
    given = []
    for f in ("male-first-names.csv", "female-first-names.csv"):
        with open(os.path.join(data, f)) as fh:
            for row in csv.reader(fh):
                if row[0] == "Name":
                    continue
                given.append((row[0].strip(), int(row[1])))
    family = []
    with open(os.path.join(data, "last-names.csv")) as fh:
        for row in csv.reader(fh):
            if row[0] == "Name":
                continue
            family.append((row[0].strip().title(), int(row[1])))
    family = family[:2000]
    return given, family


def population(rng):
    given, family = names()
    g_names, g_w = zip(*given)
    f_names, f_w = zip(*family)
    people = []
    for i in range(N):
        g = rng.choices(g_names, g_w)[0]
        f = rng.choices(f_names, f_w)[0]
        y, m, d = rng.randint(1950, 2005), rng.randint(1, 12), rng.randint(1, 28)
        people.append((f"p{i}", f"p{i}", g, f, f"{y:04d}{m:02d}{d:02d}"))
    return people


def dump(binary, rows, scheme):
    with tempfile.NamedTemporaryFile("w", suffix=".tsv", delete=False) as f:
        f.write("id\tentity\tgiven\tfamily\tdob\n")
        for r in rows:
            f.write("\t".join(r) + "\n")
        path = f.name
    env = dict(os.environ, LINKAGE_BLOCKS=scheme, LINKAGE_DUMP="1")
    try:
        out = subprocess.run([binary, path], check=True, capture_output=True, text=True, env=env).stdout
    finally:
        os.unlink(path)
    return [line.split("\t") for line in out.splitlines()]


def attack(rows, encodings):
    """Fraction of records re-identified by frequency alignment."""
    true_name = {i: (r[2], r[3]) for i, r in enumerate(rows)}
    # The attacker's prior: names ranked by how often the population has them.
    freq = collections.Counter(true_name.values())
    ranked = [n for n, _ in freq.most_common()]
    blocks = collections.defaultdict(lambda: collections.defaultdict(set))
    for rec, block, filt in encodings:
        blocks[block][filt].add(int(rec))
    identified = set()
    for groups in blocks.values():
        by_size = sorted(groups.values(), key=len, reverse=True)
        for guess, members in zip(ranked, by_size):
            if len(members) < 2:
                break  # singletons carry no frequency signal
            for m in members:
                if true_name[m] == guess:
                    identified.add(m)
    return len(identified) / len(rows)


def main():
    binary = sys.argv[1]
    rng = random.Random(20261202)
    rows = population(rng)
    print(f"frequency attack: {len(rows)} persons drawn by US name frequency, dates 1950-2005")
    for scheme, label in [
        ("year", "today: name + birthday, salted by year"),
        ("year+sound", "plus name-sound blocks (name + full date)"),
        ("fields", "per-field: name filters alone, year and name-sound blocks"),
    ]:
        enc = dump(binary, rows, scheme)
        groups = collections.Counter((b, f) for _, b, f in enc)
        shared = sum(1 for c in groups.values() if c > 1)
        print(
            f"  {label:<60} re-identified {attack(rows, enc):6.2%}  "
            f"({len(enc)} encodings, {shared} filters seen more than once)"
        )


if __name__ == "__main__":
    main()
