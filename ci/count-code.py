#!/usr/bin/env python3
"""Count the job's code: the non-blank lines of src/ (the api-consumer package)
once comments, string contents and #[cfg(test)] items are blanked and test-module
files left out, as ci/check-layout.py reads them.

Run: python3 ci/count-code.py [--verbose]
Prints the total, and with --verbose the count of every file.
"""
import importlib.util
import sys
from pathlib import Path

root = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("layout", root / "ci" / "check-layout.py")
layout = importlib.util.module_from_spec(spec)
spec.loader.exec_module(layout)

counts = {}
for root_file in layout.crate_roots(root / "src"):
    files, _ = layout.load_crate(root_file, root)
    for f in files.values():
        counts[f.name] = sum(1 for line in f.code.splitlines() if line.strip())
if "--verbose" in sys.argv:
    for name, n in sorted(counts.items(), key=lambda item: item[1]):
        print(f"{n:6} {name}")
print(sum(counts.values()))
