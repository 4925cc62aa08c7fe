#!/usr/bin/env python3
"""Check the layout of the Rust sources under src/: no import cycles, no oversized files.

1. No import cycles between source files. A file depends on another when its non-test
   code names an item path (in `use` or inline, through `crate::`, `self::`, `super::`
   or a child module's name) that resolves into the other file's module. References from
   a module to its ancestors (parent, grandparent, ...) are allowed and left out.
2. No file whose non-test part (the file without `#[cfg(test)]` items) exceeds 800 lines.
   Test-module files (`#[cfg(test)] mod x;`) are skipped entirely.

Roots: src/lib.rs and every src/bin/*.rs (or src/bin/*/main.rs), each its own crate, of the
repository's package and of every package under crates/.

Run: python3 ci/check-layout.py [--root DIR] [--verbose]
Exit 0 with a one-line summary when both checks pass, 1 with the findings otherwise.
"""
import argparse
import re
import sys
from pathlib import Path

MAX_LINES = 800
CFG_TEST = re.compile(r"#\[\s*cfg\s*\(\s*test\s*\)\s*\]")
MOD_DECL = re.compile(r"((?:#\[[^\]]*\]\s*)*)(?:pub\s*(?:\([^)]*\)\s*)?)?\bmod\s+(?:r#)?(\w+)\s*([;{])")
USE_STMT = re.compile(r"\buse\s+([^;]*);")
INLINE_PATH = re.compile(r"(?<![\w$:])([A-Za-z_]\w*(?:\s*::\s*[A-Za-z_]\w*)+)")
USE_TOKEN = re.compile(r"::|[{},*]|\w+")


def blank(text):
    """The text with every character but newlines replaced by a space (keeps offsets)."""
    return re.sub(r"[^\n]", " ", text)


def strip_literals(src):
    """Source with comments and the contents of string/char literals blanked; same offsets."""
    out, i, n = [], 0, len(src)
    while i < n:
        c = src[i]
        prev_ident = i > 0 and (src[i - 1].isalnum() or src[i - 1] == "_")
        raw = None if prev_ident else re.match(r"(?:b|c)?r(#*)\"", src[i:i + 300])
        if src.startswith("//", i):
            j = src.find("\n", i)
            j = n if j < 0 else j
        elif src.startswith("/*", i):
            j, depth = i + 2, 1
            while j < n and depth:
                if src.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif src.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
        elif raw:  # r"..." or r#"..."#: no escapes, ends at the quote and as many #
            start, closing = i + raw.end(), '"' + raw.group(1)
            end = src.find(closing, start)
            end = n if end < 0 else end
            out.append(src[i:start] + blank(src[start:end]) + src[end:end + len(closing)])
            i = end + len(closing)
            continue
        elif c == '"':
            j = i + 1
            while j < n and src[j] != '"':
                j += 2 if src[j] == "\\" else 1
            out.append('"' + blank(src[i + 1:j]) + src[j:j + 1])
            i = j + 1
            continue
        elif c == "'" and (src.startswith("\\", i + 1) or src.startswith("'", i + 2)):
            j = i + 3 if src[i + 1] == "\\" else i + 2  # past the escaped or plain character
            while j < n and src[j] != "'":
                j += 1
            out.append("'" + blank(src[i + 1:j]) + src[j:j + 1])  # a char literal; 'a alone is a lifetime
            i = j + 1
            continue
        else:
            out.append(c)
            i += 1
            continue
        out.append(blank(src[i:j]))
        i = j
    return "".join(out)


def matching_close(code, i):
    """Offset just past the bracket that closes the one opened at code[i]."""
    depth = 0
    for j in range(i, len(code)):
        if code[j] in "([{":
            depth += 1
        elif code[j] in ")]}":
            depth -= 1
            if depth == 0:
                return j + 1
    return len(code)


def item_end(code, i):
    """Offset just past the item starting at i (after its attributes): `;` or a closing `}`."""
    while True:
        m = re.compile(r"\s*#\[").match(code, i)
        if not m:
            break
        i = matching_close(code, m.end() - 1)
    ends_with_semicolon = re.compile(
        r"\s*(?:pub\s*(?:\([^)]*\)\s*)?)?(?:const|static|type|let)\b(?!\s+(?:fn|unsafe|async|extern)\b)").match(code, i)
    depth = 0
    for j in range(i, len(code)):
        if code[j] in "([{":
            depth += 1
        elif code[j] in ")]}":
            depth -= 1
            if depth == 0 and code[j] == "}" and not ends_with_semicolon:
                return j + 1
        elif code[j] == ";" and depth == 0:
            return j + 1
    return len(code)


def strip_tests(code):
    """(code with every #[cfg(test)] item blanked, number of lines those items cover)."""
    test_lines = 0
    m = CFG_TEST.search(code)
    while m:
        end = item_end(code, m.end())
        test_lines += code.count("\n", m.start(), end) + 1
        code = code[:m.start()] + blank(code[m.start():end]) + code[end:]
        m = CFG_TEST.search(code, end)
    return code, test_lines


def line_of(code, pos):
    """1-based line number of an offset."""
    return code.count("\n", 0, pos) + 1


class SourceFile:
    """One module file: its stripped code, module path and inline `mod name { }` spans."""

    def __init__(self, path, name, module, child_dir, src):
        self.path, self.name, self.module, self.child_dir = path, name, module, child_dir
        self.lines = src.splitlines()
        code = strip_literals(src)
        self.is_test = bool(re.search(r"#!\[\s*cfg\s*\(\s*test\s*\)\s*\]", code))
        self.code, test_lines = strip_tests(code)
        self.non_test_lines = len(self.lines) - test_lines
        self.inline_mods = []  # (start, end, name): the body of an inline module
        for m in MOD_DECL.finditer(self.code):
            if m.group(3) == "{":
                self.inline_mods.append((m.end() - 1, matching_close(self.code, m.end() - 1), m.group(2)))

    def module_at(self, pos):
        """Module path (tuple) at an offset, counting inline modules around it."""
        return self.module + tuple(name for start, end, name in self.inline_mods if start < pos < end)

    def dir_at(self, pos):
        """Directory where `mod name;` at an offset looks for name.rs or name/mod.rs."""
        return self.child_dir.joinpath(*[name for start, end, name in self.inline_mods if start < pos < end])


def load_crate(root_file, root):
    """All non-test module files of one crate: {module path: SourceFile}, plus inline modules."""
    files, modules = {}, {}  # modules: module path -> SourceFile that holds it

    def visit(path, module, by_path_attr=False):
        mod_rs = path.name == "mod.rs" or module == () or by_path_attr  # children beside it, not in foo/
        child_dir = path.parent if mod_rs else path.parent / path.stem
        name = path.resolve().relative_to(root).as_posix()
        f = SourceFile(path, name, module, child_dir, path.read_text(encoding="utf-8"))
        if f.is_test:
            return
        files[module], modules[module] = f, f
        for m in MOD_DECL.finditer(f.code):
            child = f.module_at(m.start()) + (m.group(2),)
            if m.group(3) == "{":
                modules[child] = f
                continue
            attr = re.search(r'\bpath\s*=\s*"', m.group(1))
            if attr:
                start = m.start(1) + attr.end()
                rel = path.read_text(encoding="utf-8")[start:f.code.index('"', start)]
                base = path.parent if f.module_at(m.start()) == module else f.dir_at(m.start())
                candidates = [base / rel]
            else:
                d = f.dir_at(m.start())
                candidates = [d / (m.group(2) + ".rs"), d / m.group(2) / "mod.rs"]
            found = [c for c in candidates if c.is_file()]
            if found:
                visit(found[0], child, by_path_attr=bool(attr))
            else:
                print(f"warning: {name}: module `{m.group(2)}` has no file", file=sys.stderr)

    visit(root_file, ())
    return files, modules


def use_paths(tree):
    """Expand a use tree (`a::{b, c::{d as e, *}, self}`) into segment lists."""
    tokens = USE_TOKEN.findall(tree)
    pos = 0

    def parse(prefix):
        nonlocal pos
        paths, path = [], list(prefix)
        while pos < len(tokens):
            t = tokens[pos]
            pos += 1
            if t == "{":
                paths += parse(path)
                path = None
            elif t in ",}":
                if path and path != list(prefix):
                    paths.append(path)
                if t == "}":
                    return paths
                path = list(prefix)
            elif t == "as":
                pos += 1  # skip the alias
            elif t != "::" and path is not None:
                path.append(t)
        if path and path != list(prefix):
            paths.append(path)
        return paths

    return parse([])


def resolve(segments, here, modules):
    """Module path that `segments` (seen in module `here`) points into, or None if not local."""
    segs = [s.strip() for s in segments]
    if segs[0] == "crate":
        base, rest = (), segs[1:]
    elif segs[0] in ("self", "super"):
        base, rest = here, segs
        while rest and rest[0] in ("self", "super"):
            if rest[0] == "super":
                if not base:
                    return None
                base = base[:-1]
            rest = rest[1:]
    elif here + (segs[0],) in modules:
        base, rest = here, segs  # a child module named without `self::`
    else:
        return None
    for seg in rest:
        if base + (seg,) not in modules:
            break
        base += (seg,)
    return base


def references(f):
    """Every (offset, segments, example text) in a file's non-test code."""
    refs, code = [], f.code
    for m in USE_STMT.finditer(code):
        text = " ".join(f.lines[line_of(code, m.start()) - 1 + k].strip()
                        for k in range(code.count("\n", m.start(), m.end()) + 1))
        for segs in use_paths(m.group(1)):
            refs.append((m.start(), segs, text if len(text) <= 140 else text[:137] + "..."))
    code = USE_STMT.sub(lambda m: blank(m.group(0)), code)
    for m in INLINE_PATH.finditer(code):
        refs.append((m.start(), m.group(1).split("::"), f.lines[line_of(code, m.start()) - 1].strip()))
    return refs


def dependency_edges(files, modules):
    """{(from file, to file): example "file:line: text"}, child->ancestor edges left out."""
    edges = {}
    for f in files.values():
        for pos, segs, text in references(f):
            target = resolve(segs, f.module_at(pos), modules)
            if target is None:
                continue
            g = modules[target]
            if g is f or f.module[:len(g.module)] == g.module:
                continue  # its own items, or an ancestor's
            edges.setdefault((f.name, g.name), f"{f.name}:{line_of(f.code, pos)}: {text}")
    return edges


def strongly_connected(nodes, edges):
    """Tarjan's algorithm: the components with more than one node."""
    succ = {n: [b for (a, b) in edges if a == n] for n in nodes}
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in succ[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for n in sorted(nodes):
        if n not in index:
            visit(n)
    return found


def crate_roots(src):
    """src/lib.rs and every binary root under src/bin/."""
    roots = [src / "lib.rs"] if (src / "lib.rs").is_file() else []
    roots += sorted((src / "bin").glob("*.rs")) + sorted((src / "bin").glob("*/main.rs"))
    return roots


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent,
                        help="directory holding src/ (default: the repository root)")
    parser.add_argument("--verbose", "-v", action="store_true", help="list the largest files even on success")
    args = parser.parse_args()
    root = args.root.resolve()

    all_files, cycles = [], []
    packages = [root] + sorted(p for p in (root / "crates").glob("*") if (p / "src").is_dir())
    for root_file in [f for package in packages for f in crate_roots(package / "src")]:
        files, modules = load_crate(root_file, root)
        edges = dependency_edges(files, modules)
        for component in strongly_connected([f.name for f in files.values()], edges):
            inside = sorted((a, b, ex) for (a, b), ex in edges.items() if a in component and b in component)
            cycles.append((component, inside))
        all_files += files.values()

    by_size = sorted(all_files, key=lambda f: (-f.non_test_lines, f.name))
    too_big = [f for f in by_size if f.non_test_lines > MAX_LINES]
    for component, inside in cycles:
        print(f"import cycle: {', '.join(component)}")
        for a, b, example in inside:
            print(f"  {a} -> {b}: {example}")
    for f in too_big:
        print(f"too large: {f.name}: {f.non_test_lines} non-test lines (limit {MAX_LINES})")
    if cycles or too_big or args.verbose:
        print("largest non-test parts:")
        for f in by_size[:5]:
            print(f"  {f.non_test_lines:5} {f.name}")
    largest = f"{by_size[0].non_test_lines} lines ({by_size[0].name})" if by_size else "none"
    print(f"layout: {len(all_files)} files, {len(cycles) or 'no'} import cycle{'' if len(cycles) == 1 else 's'}, "
          f"{len(too_big) or 'no'} file{'' if len(too_big) == 1 else 's'} over {MAX_LINES} lines, "
          f"largest non-test part {largest}")
    return 1 if cycles or too_big else 0


if __name__ == "__main__":
    sys.exit(main())
