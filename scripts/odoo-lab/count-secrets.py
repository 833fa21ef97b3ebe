#!/usr/bin/env python3
"""count-secrets.py SECRETS.tsv FILE...: how often each secret occurs in each file.

SECRETS.tsv: kind<TAB>label<TAB>value per line (live-check.sh writes it from the
lab database, Odoo's session directory and the driver's typed passwords). Files
are searched as raw bytes: the bbolt store's records are compressed, so pass a
full export of them (every op, snapshot records included) next to the store file,
whose raw bytes still cover the images and the derived state.
Besides the listed values, every `$pbkdf2-sha512$` hash (old hashes of changed
passwords are no longer in the database) and the TOTP secret in the grouped,
lower-case form the wizard shows are counted. Prints one line per
(kind, file) with a non-zero count and a total; exits 1 when the total is not 0.
"""
import re
import sys


def variants(kind, value):
    yield value
    if kind == "totp_secret":
        grouped = " ".join(value[i:i + 4] for i in range(0, len(value), 4))
        yield grouped
        yield grouped.lower()
        yield value.lower()


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    secrets = []
    for line in open(sys.argv[1], encoding="utf-8"):
        parts = line.rstrip("\n").split("\t")
        if len(parts) == 3 and parts[2]:
            secrets.append(parts)
    total = 0
    for path in sys.argv[2:]:
        data = open(path, "rb").read()
        counts = {}
        for kind, label, value in secrets:
            n = sum(data.count(v.encode()) for v in set(variants(kind, value)))
            if n:
                counts[kind] = counts.get(kind, 0) + n
        n = len(re.findall(rb"\$pbkdf2-sha512\$", data))
        if n:
            counts["any $pbkdf2-sha512$ hash"] = n
        for kind, n in sorted(counts.items()):
            print(f"{path}\t{kind}\t{n}")
            total += n
        if not counts:
            print(f"{path}\t-\t0")
    print(f"total\t{total}\t({len(secrets)} secrets)")
    sys.exit(1 if total else 0)


if __name__ == "__main__":
    main()
