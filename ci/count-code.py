#!/usr/bin/env python3
"""Count the job's code: the non-blank lines of src/ (the api-consumer package)
once comments, string contents, `use` declarations and #[cfg(test)] items are
blanked and test-module files left out, as ci/check-layout.py reads them.

Run: python3 ci/count-code.py [--verbose] [--root DIR]
Prints the total, and with --verbose the count of every file. With --root, counts
another checkout (an older one's src/sim and src/bin/node-sim.rs, the simulator
before it became crates/node-sim, are left out).
"""
import importlib.util
import re
import sys
from pathlib import Path

here = Path(__file__).resolve().parent.parent
root = Path(sys.argv[sys.argv.index("--root") + 1]).resolve() if "--root" in sys.argv else here
spec = importlib.util.spec_from_file_location("layout", here / "ci" / "check-layout.py")
layout = importlib.util.module_from_spec(spec)
spec.loader.exec_module(layout)

USE = re.compile(r"(?m)^\s*(pub(\([^)]*\))?\s+)?use [^;]*;")
counts = {}
for root_file in layout.crate_roots(root / "src"):
    files, _ = layout.load_crate(root_file, root)
    for f in files.values():
        if f.name.startswith("src/sim/") or f.name == "src/bin/node-sim.rs":
            continue
        code = USE.sub("", f.code)
        counts[f.name] = sum(1 for line in code.splitlines() if line.strip())
if "--verbose" in sys.argv:
    for name, n in sorted(counts.items(), key=lambda item: item[1]):
        print(f"{n:6} {name}")
print(sum(counts.values()))
