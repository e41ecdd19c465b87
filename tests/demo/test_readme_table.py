"""The README's demo table is generated from the demo's results.json and must match the demo's latest output."""

import json
import os

import pytest

from scaling.demo.readme_table import readme_block, replace_block, table_markdown

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RESULTS = os.path.join(ROOT, "runs", "demo", "results.json")


def test_table_is_generated_from_results():
    results = {"depalm": {"caption/CIDEr": 3.8312, "caption/BLEU-4": 0.5561, "vqa/accuracy": 0.58, "audio/CIDEr": 5.07},
               "blind": {"caption/CIDEr": 1.18, "caption/BLEU-4": None, "vqa/accuracy": 0.33, "audio/CIDEr": 1.38}}
    table = table_markdown(results)
    assert "| DePALM | 3.83 | 0.56 | 0.58 | 5.07 |" in table
    assert "| blind (prompt-tuned LM) | 1.18 | n/a | 0.33 | 1.38 |" in table
    readme = "intro\n<!-- demo-table:start -->\nold\n<!-- demo-table:end -->\nrest\n"
    assert readme_block(replace_block(readme, table)) == table
    assert replace_block(readme, table).endswith("rest\n")


def _cells(table: str) -> dict[str, list[float | None]]:
    rows = {}
    for line in table.splitlines()[2:]:
        parts = [p.strip() for p in line.strip("|").split("|")]
        rows[parts[0]] = [None if p == "n/a" else float(p) for p in parts[1:]]
    return rows


@pytest.mark.skipif(not os.path.exists(RESULTS),
                    reason="no demo has run in this checkout (CI runs `scaling demo` before the tests)")
def test_readme_table_matches_the_demo_output():
    with open(RESULTS) as fh:
        results = json.load(fh)["results"]
    with open(os.path.join(ROOT, "README.md")) as fh:
        readme = _cells(readme_block(fh.read()))
    fresh = _cells(table_markdown(results))
    fix = "python -m scaling.demo.readme_table runs/demo/results.json --write README.md"
    assert readme.keys() == fresh.keys(), f"README methods {sorted(readme)} vs demo {sorted(fresh)}; fix: {fix}"
    for method, values in fresh.items():
        for got, want in zip(readme[method], values):
            # 0.02 absorbs last-digit rounding only: the drift this catches (3.73 vs 3.83) is five times larger
            assert (got is None) == (want is None) and (got is None or abs(got - want) <= 0.02), (
                f"README demo table, {method}: {readme[method]} but the demo gave {values}; fix: {fix}")
