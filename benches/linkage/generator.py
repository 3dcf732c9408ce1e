"""Persons from several naming traditions, written as two agencies would
write them: the errors of real case files, and decoys.

Traditions: Romanian, Ukrainian, Nigerian (Yoruba, Igbo, Hausa), Vietnamese,
Albanian, Arabic. Each person is written once as an "original" record and,
for most, once more as a second agency's record with some of:
- a transliteration variant (Олена / Olena / Elena / Alyona; Mohammed /
  Muhammad / Mohamed), or the name in its own script;
- diacritics dropped (Ștefan / Stefan, Nguyễn / Nguyen);
- given and family names swapped, or a multi-part name split differently
  (Nguyen Thi Lan / Lan Nguyen; Abd al-Rahman / Abdulrahman);
- a short or familiar form (Oluwaseun / Seun);
- a typo;
- a birth year off by one, a date with day and month swapped, a date of
  year only, or no date.
Decoys: siblings (same family name, other given name, birth a few years
apart) and namesakes (same given and family name, other date).

Deterministic (seeded). `generate(seed)` returns rows `(id, entity, given,
family, dob)` as side_by_side.py and linkage_csv read them.
"""

import random
import unicodedata

# (given names with their variants, family names with their variants): each
# inner tuple is one name as different writers spell it.
TRADITIONS = {
    "romanian": (
        [("Ștefan", "Stefan", "Stephan"), ("Ioana", "Joana"), ("Mihai", "Mihail"),
         ("Andreea", "Andreia"), ("Gheorghe", "George", "Gheorge"), ("Elena", "Ilinca"),
         ("Vasile", "Vasilie"), ("Cristina", "Kristina"), ("Ionuț", "Ionut"), ("Mădălina", "Madalina")],
        [("Popescu", "Popesku"), ("Ionescu", "Ionesku"), ("Dumitrescu",), ("Stănescu", "Stanescu"),
         ("Constantin", "Konstantin"), ("Gheorghiu", "Georgiu"), ("Munteanu", "Munteanu"),
         ("Rădulescu", "Radulescu")],
    ),
    "ukrainian": (
        [("Олена", "Olena", "Elena", "Alyona"), ("Микола", "Mykola", "Nikolai", "Nicolae"),
         ("Оксана", "Oksana"), ("Юлія", "Yuliia", "Yulia", "Iulia"), ("Андрій", "Andrii", "Andriy", "Andrei"),
         ("Наталія", "Nataliia", "Natalia", "Natalya"), ("Олександр", "Oleksandr", "Aleksandr", "Alexander"),
         ("Ірина", "Iryna", "Irina")],
        [("Коваленко", "Kovalenko", "Kowalenko"), ("Шевченко", "Shevchenko", "Sevcenco", "Schewtschenko"),
         ("Бондаренко", "Bondarenko"), ("Ткаченко", "Tkachenko", "Tkacenco"), ("Кравчук", "Kravchuk", "Krawczuk"),
         ("Мельник", "Melnyk", "Melnik"), ("Поліщук", "Polishchuk", "Polischuk")],
    ),
    "nigerian": (
        [("Oluwaseun", "Seun", "Oluwasegun"), ("Chukwuemeka", "Emeka"), ("Ngozi",), ("Abubakar", "Abubakr"),
         ("Adebayo", "Bayo"), ("Chiamaka", "Amaka"), ("Olumide", "Mide"), ("Aisha", "Aishat", "Ayesha"),
         ("Ifeanyi", "Ifeanyichukwu")],
        [("Adeyemi", "Adeyemmi"), ("Okafor", "Okafur"), ("Okonkwo",), ("Bello", "Belo"), ("Abubakar",),
         ("Olawale", "Olawalle"), ("Eze",), ("Ogunleye", "Ogunleyi")],
    ),
    "vietnamese": (
        [("Thị Lan", "Thi Lan", "Lan"), ("Văn Minh", "Van Minh", "Minh"), ("Thị Hương", "Thi Huong", "Huong"),
         ("Quốc Anh", "Quoc Anh"), ("Thị Mai", "Thi Mai", "Mai"), ("Đức Thắng", "Duc Thang"),
         ("Ngọc Ánh", "Ngoc Anh")],
        [("Nguyễn", "Nguyen", "Nguyin"), ("Trần", "Tran"), ("Lê", "Le"), ("Phạm", "Pham"), ("Hoàng", "Hoang", "Huynh"),
         ("Vũ", "Vu", "Vo"), ("Đặng", "Dang")],
    ),
    "albanian": (
        [("Xhoi", "Joi"), ("Erjon", "Eryon"), ("Blerta",), ("Arbër", "Arber"), ("Elira",), ("Gëzim", "Gezim"),
         ("Dritan",), ("Ëngjëll", "Engjell", "Angel")],
        [("Hoxha", "Hodja", "Hoxa"), ("Krasniqi", "Krasniči"), ("Gashi",), ("Berisha", "Berishaj"), ("Shala",),
         ("Çela", "Cela"), ("Dervishi", "Derwishi")],
    ),
    "arabic": (
        [("Mohammed", "Muhammad", "Mohamed", "Mohamad"), ("Abd al-Rahman", "Abdulrahman", "Abdel Rahman"),
         ("Fatima", "Fatimah", "Fatma"), ("Youssef", "Yusuf", "Yousef"), ("Khadija", "Khadijah", "Hadija"),
         ("Omar", "Umar"), ("Aisha", "Aischa"), ("Hussein", "Husayn", "Hossein")],
        [("Al-Hassan", "Alhassan", "Hassan"), ("Haddad", "Hadad"), ("Khalil", "Halil"), ("Mansour", "Mansur"),
         ("Saleh", "Salih"), ("Ibrahim", "Ebrahim"), ("Abdullah", "Abdallah"), ("Nasser", "Nasir")],
    ),
}


def strip_accents(s):
    return "".join(c for c in unicodedata.normalize("NFKD", s) if not unicodedata.combining(c))


def typo(rng, s):
    if len(s) < 4:
        return s
    i = rng.randrange(1, len(s) - 1)
    op = rng.choice(("swap", "drop", "double", "replace"))
    if op == "swap":
        return s[:i] + s[i + 1] + s[i] + s[i + 2:]
    if op == "drop":
        return s[:i] + s[i + 1:]
    if op == "double":
        return s[:i] + s[i] + s[i:]
    return s[:i] + rng.choice("aeiournlst") + s[i + 1:]


def date(y, m, d):
    return f"{y:04d}{m:02d}{d:02d}"


def person(rng):
    tradition = rng.choice(list(TRADITIONS))
    given, family = TRADITIONS[tradition]
    g, f = rng.choice(given), rng.choice(family)
    return tradition, g, f, (rng.randint(1960, 2008), rng.randint(1, 12), rng.randint(1, 28))


def second_record(rng, g, f, ymd):
    """How another agency writes the same person."""
    gv, fv = rng.choice(g), rng.choice(f)
    if rng.random() < 0.3:
        gv, fv = strip_accents(gv), strip_accents(fv)
    if rng.random() < 0.15:
        gv = typo(rng, gv)
    if rng.random() < 0.1:
        fv = typo(rng, fv)
    if rng.random() < 0.2:
        gv, fv = fv, gv  # written family name first
    if rng.random() < 0.1 and " " in gv:
        first, rest = gv.split(" ", 1)
        gv, fv = rest, f"{first} {fv}"  # a name part moved across the fields
    y, m, d = ymd
    r = rng.random()
    if r < 0.08:
        dob = date(y + rng.choice((-1, 1)), m, d)
    elif r < 0.13 and d <= 12:
        dob = date(y, d, m)
    elif r < 0.20:
        dob = f"{y:04d}"
    elif r < 0.28:
        dob = ""
    else:
        dob = date(y, m, d)
    return gv, fv, dob


def generate(seed=20261202, persons=3000):
    rng = random.Random(seed)
    rows = []
    for i in range(persons):
        _, g, f, (y, m, d) = person(rng)
        rows.append((f"p{i}-a", f"p{i}", g[0], f[0], date(y, m, d)))
        if rng.random() < 0.7:
            gv, fv, dob = second_record(rng, g, f, (y, m, d))
            rows.append((f"p{i}-b", f"p{i}", gv, fv, dob))
        if rng.random() < 0.1:
            # A sibling: same family, another given name, a few years apart.
            tradition_given = next(t[0] for t in TRADITIONS.values() if g in t[0])
            sg = rng.choice([x for x in tradition_given if x != g])
            rows.append((f"s{i}", f"s{i}", rng.choice(sg), f[0], date(y + rng.randint(1, 6), rng.randint(1, 12), rng.randint(1, 28))))
        if rng.random() < 0.05:
            # A namesake: same name, another person.
            rows.append((f"n{i}", f"n{i}", g[0], f[0], date(rng.randint(1960, 2008), rng.randint(1, 12), rng.randint(1, 28))))
    return rows
