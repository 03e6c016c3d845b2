"""Branch coverage alone, per package and per module of ``src/runner``: ``python -m tests.coverage_branches``.

``coverage report`` gives one percentage that mixes lines and branches; the engine's target is stated in
branches (taken / possible), which this prints from the combined data file, least covered modules first.
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import coverage

#: modules listed one by one (the rest are summed per package)
DETAIL = "src/runner/"


def _percent(covered: int, total: int) -> str:
    return f"{100 * covered / total:5.1f} %" if total else "    - "


def main() -> None:
    cov = coverage.Coverage()
    cov.load()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "coverage.json"
        cov.json_report(outfile=str(out))
        files = json.loads(out.read_text())["files"]
    packages: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    modules = []
    for path, data in files.items():
        summary = data["summary"]
        covered, total = summary["covered_branches"], summary["num_branches"]
        package = str(Path(path).parent) + "/"
        packages[package][0] += covered
        packages[package][1] += total
        packages["total"][0] += covered
        packages["total"][1] += total
        if path.startswith(DETAIL) and "/" not in path.removeprefix(DETAIL):
            modules.append((covered / total if total else 1.0, path, covered, total))
    write = sys.stdout.write
    write("\nbranch coverage (branches taken / branches)\n")
    for package, (covered, total) in sorted(packages.items(), key=lambda p: (p[0] == "total", p[0])):
        write(f"  {package:<34} {covered:5d} / {total:5d}  {_percent(covered, total)}\n")
    write(f"\n{DETAIL} by module, least covered first\n")
    for _, path, covered, total in sorted(modules):
        write(f"  {path:<34} {covered:5d} / {total:5d}  {_percent(covered, total)}\n")


if __name__ == "__main__":
    main()
