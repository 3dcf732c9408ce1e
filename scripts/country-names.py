#!/usr/bin/env python3
"""Writes locales/intake/countries/<lang>.ftl: one Fluent message a country,
`country-XX = <name>`, for every ISO 3166-1 alpha-2 code of the `isocountry`
crate, with names from the npm package `i18n-iso-countries` (MIT).

Usage:
    python3 scripts/country-names.py PACKAGE_DIR ISOCOUNTRY_SRC_DIR [OUT_DIR]

PACKAGE_DIR         the unpacked npm package (holds package.json and langs/)
ISOCOUNTRY_SRC_DIR  the crate's src/ (holds alpha2.rs, full.rs, lib.rs)
OUT_DIR             default: locales/intake/countries next to this script's repo

Standard library only. Refuses (exits non-zero) rather than write a value
Fluent would misread.
"""

import json
import os
import re
import sys

LANGUAGES = [
    ("en", "English"),
    ("ro", "Romanian"),
    ("uk", "Ukrainian"),
    ("es", "Spanish"),
    ("tl", "Tagalog"),
]
# Other names the package might file a language under.
ALIASES = {"tl": ["fil"]}

# A Fluent value must not start with these (they would be read as syntax).
BAD_START = ("{", "[", "*", ".")


def die(msg):
    sys.exit(f"country-names.py: {msg}")


def read_isocountry(src):
    """The crate's alpha-2 codes, sorted, with its English name for each."""

    def consts(path, prefix):
        text = open(os.path.join(src, path), encoding="utf-8").read()
        pairs = re.findall(
            r'pub const ' + prefix + r'([A-Z]{3}): &str = "([^"\\]*)";', text
        )
        if "\\" in "".join(v for _, v in pairs) or text.count(prefix) != len(pairs):
            die(f"{path}: a {prefix} constant this script cannot read")
        return dict(pairs)

    alpha2 = consts("alpha2.rs", "ISO_A2_")
    full = consts("full.rs", "ISO_FULL_")
    lib = open(os.path.join(src, "lib.rs"), encoding="utf-8").read()
    m = re.search(r"const NUM_COUNTRY_CODES: usize = (\d+);", lib)
    if not m or int(m.group(1)) != len(alpha2):
        die(f"alpha2.rs has {len(alpha2)} codes, lib.rs says {m and m.group(1)}")
    names = {}
    for a3, a2 in alpha2.items():
        if not re.fullmatch(r"[A-Z]{2}", a2) or a2 in names:
            die(f"alpha2.rs: bad or repeated code {a2!r}")
        names[a2] = full.get(a3)
    return sorted(names), names


# Names a person reporting would look for, where the package gives a
# formal name first and the everyday one after it ("Russian Federation",
# "Russia"): the index of the everyday one in the package's list, any
# language that gives a list.
EVERYDAY = {"CN": 1, "CZ": 1, "IR": 1, "MK": 1, "PS": 1, "RU": 1, "TW": 1, "TZ": 1, "US": 1}
# Names in one language the package gives in a form that takes a side in
# a dispute, where the everyday name does not.
LOCAL = {"uk": {"TW": "Тайвань"}}
# Inverted English names ("Moldova, Republic of") as people say them.
ENGLISH = {"MD": "Moldova", "FM": "Micronesia", "TW": "Taiwan"}


def first(value, code=None):
    if not isinstance(value, list):
        return value
    at = EVERYDAY.get(code, 0)
    return value[at] if at < len(value) else value[0]


def clean(code, lang, value):
    if not isinstance(value, str):
        die(f"{lang} {code}: not a string: {value!r}")
    value = value.strip()
    if not value:
        die(f"{lang} {code}: empty name")
    if "\n" in value or "\r" in value:
        die(f"{lang} {code}: name spans lines: {value!r}")
    if value.startswith(BAD_START):
        die(f"{lang} {code}: name starts with a Fluent syntax character: {value!r}")
    if "{" in value or "}" in value:
        die(f"{lang} {code}: name holds a brace (a Fluent placeable): {value!r}")
    return value


def main():
    if len(sys.argv) not in (3, 4):
        die("usage: country-names.py PACKAGE_DIR ISOCOUNTRY_SRC_DIR [OUT_DIR]")
    pkg, src = sys.argv[1], sys.argv[2]
    out = sys.argv[3] if len(sys.argv) == 4 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "locales", "intake", "countries"
    )
    version = json.load(open(os.path.join(pkg, "package.json"), encoding="utf-8"))["version"]
    codes, crate_names = read_isocountry(src)

    def load(lang):
        for name in [lang] + ALIASES.get(lang, []):
            path = os.path.join(pkg, "langs", f"{name}.json")
            if os.path.exists(path):
                return name, json.load(open(path, encoding="utf-8"))["countries"]
        return None, None

    _, english = load("en")
    if english is None:
        die("the package has no langs/en.json")

    os.makedirs(out, exist_ok=True)
    for lang, language in LANGUAGES:
        source, names = load(lang)
        lines, fell_back = [], []
        for code in codes:
            if names is not None and code in names:
                value = first(names[code], code)
                if source == "en":
                    value = ENGLISH.get(code, value)
            elif code in english:
                value = ENGLISH.get(code, first(english[code], code))
                fell_back.append(code)
            elif crate_names.get(code):
                value, _ = crate_names[code], fell_back.append(code + " (isocountry)")
            else:
                die(f"{code}: no name anywhere")
            value = LOCAL.get(lang, {}).get(code, value)
            lines.append(f"country-{code} = {clean(code, lang, value)}")

        header = [
            f"Country names in {language} ({lang}), one message per ISO 3166-1 alpha-2 code",
            f"of the isocountry crate ({len(codes)} codes, sorted by code).",
            f"Generated from i18n-iso-countries {version} (MIT licence, (c) widdix GmbH)",
            "by scripts/country-names.py; see README.md here. Regenerate rather than edit.",
        ]
        if names is None:
            tried = " or ".join(f"langs/{n}.json" for n in [lang] + ALIASES.get(lang, []))
            header += [
                f"NOTE: these names are ENGLISH. i18n-iso-countries {version} has no {language}",
                f"list (no {tried}),",
                "so every name is the English one from its langs/en.json. Replace them with",
                "reviewed translations when there is a source for them.",
            ]
        elif source != lang:
            header.append(f"Names from the package's langs/{source}.json.")
        if names is not None and fell_back:
            header.append(
                "Not in this language's list, so in English: " + ", ".join(fell_back) + "."
            )
        header += [
            "Every line must keep its message id (country-XX) unchanged; change only the",
            "name after `=`. Fluent syntax: a value is one line and must not start with",
            "{ [ * or . (and holds no braces); nothing else needs escaping.",
        ]
        text = "".join(f"# {h}\n" for h in header) + "\n" + "\n".join(lines) + "\n"
        with open(os.path.join(out, f"{lang}.ftl"), "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        print(f"{lang}.ftl: {len(lines)} names"
              + (" (all English: no language file)" if names is None else "")
              + (f", {len(fell_back)} in English" if names is not None and fell_back else ""))


if __name__ == "__main__":
    main()
