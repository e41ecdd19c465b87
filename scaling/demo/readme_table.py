"""The README's demo results table, generated from the demo's ``results.json`` (so the two cannot drift).

    python -m scaling.demo.readme_table runs/demo/results.json              # print the table
    python -m scaling.demo.readme_table runs/demo/results.json --write README.md   # replace it in the README

The table lives between ``<!-- demo-table:start -->`` and ``<!-- demo-table:end -->`` in the README;
``tests/demo/test_readme_table.py`` compares it with the demo's output whenever a demo has run in the checkout
(CI runs ``scaling demo`` before the tests).
"""

from __future__ import annotations

import argparse
import json
import sys

START, END = "<!-- demo-table:start -->", "<!-- demo-table:end -->"
COLUMNS = (("caption CIDEr", "caption/CIDEr"), ("caption BLEU-4", "caption/BLEU-4"),
           ("VQA accuracy", "vqa/accuracy"), ("audio CIDEr", "audio/CIDEr"))
NAMES = {"depalm": "DePALM", "blind": "blind (prompt-tuned LM)"}


def table_markdown(results: dict) -> str:
    """``results``: the ``results`` mapping of ``results.json`` (method → {"task/metric": value})."""
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
    p.add_argument("results", help="the demo's results.json (default output: runs/demo/results.json)")
    p.add_argument("--write", metavar="README", help="replace the table between the markers in this file")
    args = p.parse_args(argv)
    with open(args.results) as fh:
        table = table_markdown(json.load(fh)["results"])
    if args.write:
        with open(args.write) as fh:
            text = fh.read()
        readme_block(text)  # the markers must be there
        with open(args.write, "w") as fh:
            fh.write(replace_block(text, table))
        print(f"{args.write}: demo table updated from {args.results}")
    else:
        print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
