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
of birth uniform over 1950-2005. Schemes, from `linkage_csv`: scheme 1 (one
record-level filter of name and birthday, blocked by year of birth), and
scheme 2 as a peer granted `fuzzy` (birth-year blocks) or `fuzzy_wide`
(also name-sound blocks) receives it, of which the attacker sees the name
filters. Against name-sound blocks the attacker also aligns the blocks
themselves with the population's name sounds (Soundex is public), then
each block's groups with the names that sound so.

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


def dump(binary, rows, scheme, blocks):
    with tempfile.NamedTemporaryFile("w", suffix=".tsv", delete=False) as f:
        f.write("id\tentity\tgiven\tfamily\tdob\n")
        for r in rows:
            f.write("\t".join(r) + "\n")
        path = f.name
    env = dict(os.environ, LINKAGE_SCHEME=scheme, LINKAGE_BLOCKS=blocks, LINKAGE_DUMP="1")
    try:
        out = subprocess.run([binary, path], check=True, capture_output=True, text=True, env=env).stdout
    finally:
        os.unlink(path)
    return [line.split("\t") for line in out.splitlines()]


def align(blocks, priors, true_name):
    """Within each block, the largest group of equal filters is guessed to
    be the block's most likely name, the next the next, and so on; a guess
    counts when it is the record's true name. `priors(block)` ranks the
    names the attacker expects in that block."""
    identified = set()
    for block, groups in blocks.items():
        by_size = sorted(groups.values(), key=len, reverse=True)
        for guess, members in zip(priors(block), by_size):
            if len(members) < 2:
                break  # singletons carry no frequency signal
            for m in members:
                if true_name[m] == guess:
                    identified.add(m)
    return identified


def soundex(word):
    """American Soundex with the leading vowel folded to `*`, as
    `pseudo::clk::sound_keys` makes block keys (public knowledge: the
    attacker can compute it for any name)."""
    codes = {c: d for d, letters in enumerate(["aeiouyhw", "bfpv", "cgjkqsxz", "dt", "l", "mn", "r"]) for c in letters}
    w = [c for c in word.lower() if c.isascii() and c.isalpha()]
    if len(w) < 3:
        return None
    out, last = w[0].upper(), codes.get(w[0])
    for c in w[1:]:
        d = codes.get(c)
        if d and d != last:
            out += str(d)
        if c not in "hw":
            last = d
    out = (out + "000")[:4]
    return ("*" + out[1:]) if out[0] in "AEIOUY" else out


def attack(rows, encodings, wide):
    """Fraction of records re-identified by frequency alignment: within a
    block by name frequency; for name-sound blocks also the block itself
    first (the largest block is guessed to be the most frequent name
    sound), then its groups against the names that sound so."""
    true_name = {i: (r[2], r[3]) for i, r in enumerate(rows)}
    freq = collections.Counter(true_name.values())
    ranked = [n for n, _ in freq.most_common()]
    blocks = collections.defaultdict(lambda: collections.defaultdict(set))
    for rec, block, filt in encodings:
        blocks[block][filt].add(int(rec))
    plain = align(blocks, lambda _: ranked, true_name)
    if not wide:
        return len(plain) / len(rows)
    # Block-aware: rank the population's name sounds, rank the blocks by
    # how many records they hold, and pair them; a year block is told
    # apart from a sound block by size (the attacker need not: wrong
    # pairings only cost it guesses).
    sound_freq = collections.Counter()
    by_sound = collections.defaultdict(collections.Counter)
    for name, n in freq.items():
        for word in {soundex(w) for w in (name[0] + " " + name[1]).split()} - {None}:
            sound_freq[word] += n
            by_sound[word][name] += n
    sounds = [s for s, _ in sound_freq.most_common()]
    sizes = sorted(blocks, key=lambda b: -sum(len(g) for g in blocks[b].values()))
    block_sound = dict(zip(sizes, sounds))
    aware = align(
        blocks,
        lambda b: [n for n, _ in by_sound[block_sound[b]].most_common()] if b in block_sound else ranked,
        true_name,
    )
    return len(plain | aware) / len(rows)


def main():
    binary = sys.argv[1]
    rng = random.Random(20261202)
    rows = population(rng)
    print(f"frequency attack: {len(rows)} persons drawn by US name frequency, dates 1950-2005")
    for scheme, blocks, label in [
        ("1", "year", "scheme 1: name + birthday in one filter, year blocks"),
        ("2", "year", "scheme 2, fuzzy: name filter, year blocks"),
        ("2", "wide", "scheme 2, fuzzy_wide: plus name-sound blocks"),
    ]:
        enc = dump(binary, rows, scheme, blocks)
        groups = collections.Counter((b, f) for _, b, f in enc)
        shared = sum(1 for c in groups.values() if c > 1)
        # Blocked comparisons when two agencies of 1,000,000 persons each
        # are drawn from this population: each block holds its share of
        # both, and every pair within a block is compared once.
        per_block = collections.Counter(b for _, b, _ in enc)
        million = sum((1e6 * n / len(rows)) ** 2 for n in per_block.values())
        print(
            f"  {label:<55} re-identified {attack(rows, enc, blocks == 'wide'):6.2%}  "
            f"({len(enc)} encodings, {len(per_block)} blocks, "
            f"{shared} filters seen more than once); 10^6 x 10^6 persons: "
            f"{million:.3g} blocked comparisons"
        )


if __name__ == "__main__":
    main()
