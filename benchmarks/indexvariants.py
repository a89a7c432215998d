"""
Variants of the spool index's FTS5 text table, measured on the token text of
an index search.py built (issue 21's phrase goal): the rowid spacing, and
"common grams" for two-word phrases.

Reads the C{text} rows (and arrival times) of an existing index, writes them
into a fresh database as the variant says, and shows the insert CPU per
message (FTS5's own; and the making of the gram text, in Python), the index
size after C{optimize}, and the CPU medians of a few counts:

  --rowid-bits N   rowids as the index makes them (arrival second shifted by
                   N bits; schema 6: 24, schema 7: 16)
  --body-last      the columns in schema 6's order (body fifth), not first
  --grams column   the pairs of adjacent words of which at least one is among
                   the --common most frequent English words, each pair once
                   a message, as one token C{a_b}, in a column of C{text}
  --grams table    the same in a contentless C{detail=none} FTS5 table

    python benchmarks/search.py --messages 20000 --keep
    python benchmarks/indexvariants.py /tmp/simplemail-search-XXXX/spool20000/.bob.index \\
        --rowid-bits 16 --grams table --common 10
"""

import argparse
import os
import re
import sqlite3
import statistics
import tempfile
import time

#: The most frequent words of English, most frequent first.
COMMON = ("the of and to a in is it you that he was for on are with as i his they "
          "be at one have this from or had by").split()

COLUMNS = "body, from_, to_, cc, subject, attachment"

QUERIES = ('"the project"', "the AND project", "project", "meeting",
           '({from_} : "plri") AND "project"', '"of the"')


def gramMaker(common):
    """
    A function from a message's field texts to its gram text: each adjacent
    pair with a word of C{common}, once.
    """
    words = "|".join(map(re.escape, common))
    pair = re.compile(r"(?:^|(?<= ))(?=((?:{0}) [^ ]+|[^ ]+ (?:{0})(?![^ ])))".format(words))

    def grams(fields):
        found = set()
        for text in fields:
            found.update(pair.findall(text))
        return " ".join(g.replace(" ", "_") for g in found)
    return grams


def cpuMedian(db, sql, params, runs=21):
    times = []
    for _ in range(runs):
        started = time.thread_time()
        db.execute(sql, params).fetchall()
        times.append(time.thread_time() - started)
    return statistics.median(times) * 1000


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("index", help="an index file search.py --keep left")
    parser.add_argument("--rowid-bits", type=int, default=16)
    parser.add_argument("--body-last", action="store_true")
    parser.add_argument("--grams", choices=("none", "column", "table"), default="none")
    parser.add_argument("--common", type=int, default=10,
                        help="how many of the most frequent words make grams")
    args = parser.parse_args(argv)

    columns = "from_, to_, cc, subject, body, attachment" if args.body_last else COLUMNS
    source = sqlite3.connect(args.index)
    rows = source.execute(
        "SELECT msg.arrived, " + columns + " FROM text JOIN msg ON msg.rowid = text.rowid"
        " ORDER BY msg.arrived DESC").fetchall()
    limit = 2 ** 37
    bits = args.rowid_bits
    rows = [(((limit - 1 - arrived) << bits) + (1 << bits) - 1,) + tuple(fields)
            for arrived, *fields in rows]
    rows.sort()

    made = 0.0
    grams = [""] * len(rows)
    if args.grams != "none":
        maker = gramMaker(COMMON[:args.common])
        started = time.process_time()
        grams = [maker(row[1:]) for row in rows]
        made = time.process_time() - started

    workdir = tempfile.mkdtemp(prefix="simplemail-variants-")
    path = os.path.join(workdir, "variant.index")
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    tokenizer = "tokenize = \"unicode61 remove_diacritics 0 tokenchars '_'\""
    extra = ", grams" if args.grams == "column" else ""
    db.execute("CREATE VIRTUAL TABLE text USING fts5({}{}, {}, detail = full)".format(
        columns, extra, tokenizer))
    if args.grams == "table":
        db.execute("CREATE VIRTUAL TABLE pairs USING fts5(gram, content = '',"
                   " detail = none, {})".format(tokenizer))
    marks = ",".join("?" * (7 + bool(extra)))
    started = time.process_time()
    for i in range(0, len(rows), 200):
        chunk = rows[i:i + 200]
        db.execute("BEGIN")
        if args.grams == "column":
            db.executemany("INSERT INTO text(rowid, {}, grams) VALUES({})".format(columns, marks),
                           [row + (g,) for row, g in zip(chunk, grams[i:i + 200])])
        else:
            db.executemany("INSERT INTO text(rowid, {}) VALUES({})".format(columns, marks),
                           chunk)
        if args.grams == "table":
            db.executemany("INSERT INTO pairs(rowid, gram) VALUES(?, ?)",
                           [(row[0], g) for row, g in zip(chunk, grams[i:i + 200])])
        db.execute("COMMIT")
    inserted = time.process_time() - started
    started = time.process_time()
    db.execute("INSERT INTO text(text) VALUES('optimize')")
    if args.grams == "table":
        db.execute("INSERT INTO pairs(pairs) VALUES('optimize')")
    optimized = time.process_time() - started
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    count = len(rows)
    print("load average {:.2f}; {} messages, rowid bits {}, body {}, grams {} (--common {})"
          .format(os.getloadavg()[0], count, bits, "last" if args.body_last else "first",
                  args.grams, args.common))
    print("  insert {:.1f} us/message of CPU, optimize {:.1f}, making grams {:.1f};"
          " {:.1f} grams a message; index {:.1f} MB".format(
              inserted / count * 1e6, optimized / count * 1e6, made / count * 1e6,
              sum(len(g.split()) for g in grams) / count, os.path.getsize(path) / 1e6))
    counting = "SELECT count(*) FROM text WHERE text MATCH ?"
    for query in QUERIES:
        print("  {:<36} {:>6} matches  {:.3f} ms CPU".format(
            query, db.execute(counting, (query,)).fetchone()[0], cpuMedian(db, counting, (query,))))
    if args.grams != "none":
        table = "pairs" if args.grams == "table" else "text"
        gram = '"the_project"'
        sql = "SELECT count(*) FROM {0} WHERE {0} MATCH ?".format(table)
        print("  {:<36} {:>6} matches  {:.3f} ms CPU".format(
            "gram " + gram, db.execute(sql, (gram,)).fetchone()[0], cpuMedian(db, sql, (gram,))))
    db.close()
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.unlink(path + suffix)
    os.rmdir(workdir)


if __name__ == "__main__":
    main()
