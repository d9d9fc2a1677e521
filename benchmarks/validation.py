"""Validation benchmark: how long Galley's checks take per Istio document.

    python -m benchmarks.validation --json

Validates every document of the project's own Istio config, the golden cases'
inputs (`tests/pilot/golden/*/input.yaml`, every kind), and of Istio's example
corpus when it is kept beside the checkout (`../shared/corpus/istio`, or
`--corpus DIR`; when it is absent the run says so and goes on without it).
Each round times `check_document` on every document ("validate": schema and
semantic rules, what Galley runs per document once parsed) and `check_text` on
every file ("parse_and_validate", as `meshctl validate` and Galley take a body,
shared out among the file's documents); the first round only warms up. Prints
one JSON line with per-document median, p99, mean and max; it does not pass or
fail.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from api.documents import parse_yaml
from api.resources import check_document, check_text

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "pilot" / "golden"
CORPUS = ROOT.parent / "shared" / "corpus" / "istio"


def _documents(paths: list[Path]) -> list[tuple[str, str, list[dict[str, Any]]]]:
    """(name, text, documents) per file; corpus documents lose their `_err` expectation."""
    files = []
    for path in paths:
        text = path.read_text()
        docs = [d for d in parse_yaml(text) if isinstance(d, dict)]
        for doc in docs:
            doc.pop("_err", None)
        files.append((str(path.relative_to(path.parents[1])), text, docs))
    return files


def _summary(samples_ns: list[int]) -> dict[str, float]:
    """Median, p99, mean and max of per-document times, in milliseconds."""
    ordered = sorted(samples_ns)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return {
        "median_ms": round(statistics.median(ordered) / 1e6, 3),
        "p99_ms": round(p99 / 1e6, 3),
        "mean_ms": round(statistics.fmean(ordered) / 1e6, 3),
        "max_ms": round(ordered[-1] / 1e6, 3),
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.validation",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rounds", type=int, default=20, help="timed rounds over every document")
    parser.add_argument(
        "--corpus", type=Path, default=CORPUS, help="Istio's example YAML (skipped when absent)"
    )
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    log = (lambda *a: None) if args.json else (lambda *a: print(*a, file=sys.stderr, flush=True))
    sets = {"golden": sorted(GOLDEN.glob("*/input.yaml"))}
    if args.corpus.is_dir():
        sets["corpus"] = sorted(args.corpus.rglob("*.yaml"))
    else:
        print(
            f"benchmarks.validation: no Istio corpus at {args.corpus}; "
            "timing the golden cases' documents only",
            file=sys.stderr,
            flush=True,
        )
    files = [f for paths in sets.values() for f in _documents(paths)]
    documents = [(name, doc) for name, _, docs in files for doc in docs]
    if not documents:
        print("benchmarks.validation: no documents found", file=sys.stderr)
        return 1
    log(f"{len(documents)} documents in {len(files)} files, {args.rounds} rounds")

    validate_ns: list[int] = []
    text_ns: list[int] = []  # parse and validate, per file, shared by its documents
    refused = 0
    for round_ in range(args.rounds + 1):  # round 0 warms up (imports, caches)
        for name, doc in documents:
            began = time.perf_counter_ns()
            checked = check_document(doc, name)
            spent = time.perf_counter_ns() - began
            if round_:
                validate_ns.append(spent)
            elif not checked.ok:
                refused += 1
        for name, text, docs in files:
            began = time.perf_counter_ns()
            check_text(text, name)
            spent = time.perf_counter_ns() - began
            if round_ and docs:
                text_ns += [spent // len(docs)] * len(docs)

    result = {
        "documents": len(documents),
        "files": len(files),
        "sets": {name: len(paths) for name, paths in sets.items()},
        "refused": refused,
        "rounds": args.rounds,
        "validate": _summary(validate_ns),
        "parse_and_validate": _summary(text_ns),
    }
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
