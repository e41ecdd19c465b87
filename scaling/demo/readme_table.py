"""The README's demo results table, generated from a recorded demo result (so the two cannot drift).

    python -m scaling.demo.readme_table runs/demo/results.json --record docs/demo_results.json --write README.md

``--record`` copies a fresh demo's ``results.json`` table to ``docs/demo_results.json`` (the committed
record); ``--write`` replaces the table between ``<!-- demo-table:start -->`` and ``<!-- demo-table:end -->``
in the README with the one generated from the record. ``tests/demo/test_readme_table.py`` checks that the
README equals the record, and that a demo run in the checkout (CI runs one) stays within the run-to-run
spread of the record (different CPUs round differently: e.g. caption CIDEr 3.73 / 3.74 / 3.83 in three runs).
"""

from __future__ import annotations

import argparse
import json
import sys

START, END = "<!-- demo-table:start -->", "<!-- demo-table:end -->"
COLUMNS = (("caption CIDEr", "caption/CIDEr"), ("caption BLEU-4", "caption/BLEU-4"),
           ("VQA accuracy", "vqa/accuracy"), ("audio CIDEr", "audio/CIDEr"))
NAMES = {"depalm": "DePALM", "blind": "blind (prompt-tuned LM)"}
RECORD = "docs/demo_results.json"


def table_markdown(results: dict) -> str:
    """``results``: method → {"task/metric": value} (``results.json``'s ``results``)."""
    rows = ["| method | " + " | ".join(title for title, _ in COLUMNS) + " |",
            "|---" * (len(COLUMNS) + 1) + "|"]
    for method, row in results.items():
        cells = ["n/a" if row.get(key) is None else f"{row[key]:.2f}" for _, key in COLUMNS]
        rows.append(f"| {NAMES.get(method, method)} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def readme_block(readme: str) -> str:
    """The table currently between the README's markers."""
    if START not in readme or END not in readme:
        raise ValueError(f"README.md lacks the {START} ... {END} markers around the demo table")
    return readme.split(START, 1)[1].split(END, 1)[0].strip()


def replace_block(readme: str, table: str) -> str:
    head, rest = readme.split(START, 1)
    return head + START + "\n" + table + "\n" + END + rest.split(END, 1)[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("results", nargs="?", default=RECORD,
                   help=f"a demo's results.json, or the record (default {RECORD})")
    p.add_argument("--record", metavar="JSON", help=f"store the results' table as the committed record (e.g. {RECORD})")
    p.add_argument("--source", default="scaling demo (seed 0)", help="with --record: where the results come from")
    p.add_argument("--write", metavar="README", help="replace the table between the markers in this file")
    args = p.parse_args(argv)
    with open(args.results) as fh:
        results = json.load(fh)["results"]
    if args.record:
        with open(args.record, "w") as fh:
            json.dump({"source": args.source, "results": results}, fh, indent=2)
            fh.write("\n")
        print(f"{args.record}: recorded from {args.results}")
    table = table_markdown(results)
    if args.write:
        with open(args.write) as fh:
            text = fh.read()
        readme_block(text)  # the markers must be there
        with open(args.write, "w") as fh:
            fh.write(replace_block(text, table))
        print(f"{args.write}: demo table updated from {args.results}")
    if not (args.record or args.write):
        print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
