#!/usr/bin/env python3
"""Refuses an import circle between the source files of a crate.

A file depends on another when its non-test code names an item (or module) defined there:
`crate::…`, `super::…` and `self::…` paths, in `use` trees and inline. A path is followed
through `pub use` re-exports to the file that defines the item, so a parent module that
re-exports its children is no hub; declaring a module (`mod x;`) is not a dependency.
Test code (`#[cfg(test)]` items and the files they declare) is left out: a file and its own
test module may meet.

Usage: check-imports.py CRATE_SRC_DIR...   (exit 1 and the circles printed, if any)
"""

import os
import re
import sys

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def strip_comments_and_strings(text):
    """Comments, string and char literals blanked out (lengths kept), so braces and paths
    inside them are not read as code."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == "r" and re.match(r'r#*"', text[i:i + 10]) and (i == 0 or not re.match(r"\w", text[i - 1])):
            m = re.match(r'r(#*)"', text[i:])
            end = '"' + m.group(1)
            j = text.find(end, i + len(m.group(0)))
            j = n if j < 0 else j + len(end)
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(re.sub(r"[^\n]", " ", text[i:j + 1]))
            i = j + 1
        elif c == "'" and re.match(r"'(\\.|[^\\'])'|'\\u\{[0-9a-fA-F]+\}'|'\\x[0-9a-fA-F]{2}'", text[i:i + 12]):
            m = re.match(r"'(\\.|[^\\'])'|'\\u\{[0-9a-fA-F]+\}'|'\\x[0-9a-fA-F]{2}'", text[i:i + 12])
            out.append(" " * len(m.group(0)))
            i += len(m.group(0))
        else:
            out.append(c)
            i += 1
    return "".join(out)


def matching_brace(text, open_at):
    depth = 0
    for j in range(open_at, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return j
    return len(text) - 1


def item_end(text, start):
    """End of the item starting at `start`: its `;` or its closing brace, whichever first."""
    j = start
    while j < len(text):
        if text[j] == ";":
            return j
        if text[j] == "{":
            return matching_brace(text, j)
        j += 1
    return len(text) - 1


def remove_test_code(text):
    """Blanks every item under `#[cfg(test)]`; returns the text and the test modules declared
    with `mod name;`."""
    test_mods = set()
    pattern = re.compile(r"#\[cfg\(\s*test\s*\)\]")
    while True:
        m = pattern.search(text)
        if not m:
            return text, test_mods
        k = m.end()
        # Further attributes on the same item.
        while True:
            a = re.match(r"\s*#\[", text[k:])
            if not a:
                break
            k = text.index("]", k + a.end()) + 1
        decl = re.match(r"\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(" + IDENT + r")\s*;", text[k:])
        if decl:
            test_mods.add(decl.group(1))
        end = item_end(text, k)
        text = text[:m.start()] + re.sub(r"[^\n]", " ", text[m.start():end + 1]) + text[end + 1:]


def expand_use_tree(tree):
    """`a::{b, c::{d, e as f}, self}` → [[a, b], [a, c, d], [a, c, e], [a]]."""
    tree = re.sub(r"\s+", "", tree)
    results = []

    def walk(prefix, s):
        depth, start, parts = 0, 0, []
        for i, c in enumerate(s):
            if c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
            elif c == "," and depth == 0:
                parts.append(s[start:i])
                start = i + 1
        parts.append(s[start:])
        for part in parts:
            if not part:
                continue
            part = re.sub(r"as" + IDENT + r"$", "", part) if re.search(r"[A-Za-z0-9_]as[A-Za-z_]", part) else part
            brace = part.find("{")
            if brace >= 0:
                head = [p for p in part[:brace].split("::") if p]
                walk(prefix + head, part[brace + 1:part.rindex("}")])
            else:
                segs = [p for p in part.split("::") if p]
                if segs == ["self"]:
                    results.append(prefix)
                else:
                    results.append(prefix + segs)

    walk([], tree)
    return results


class Crate:
    def __init__(self, src):
        self.src = src
        self.modules = {}  # module path tuple -> file
        self.files = {}    # file -> module path tuple
        self.test_files = set()
        roots = [os.path.join(src, f) for f in ("lib.rs", "main.rs") if os.path.exists(os.path.join(src, f))]
        if not roots:
            raise SystemExit(f"check-imports: {src} holds no lib.rs or main.rs: give a crate's source "
                             f"directory (shared/src, not shared)")
        root = roots[0]
        self._load(root, ())
        self.code = {f: self._code(f) for f in self.files}
        self.reexports = {f: self._reexports(f) for f in self.files}
        self.defined = {f: self._defined(f) for f in self.files}

    def _load(self, path, module):
        self.modules[module] = path
        self.files[path] = module
        raw = strip_comments_and_strings(open(path, encoding="utf-8").read())
        _, test_mods = remove_test_code(raw)
        base = os.path.dirname(path) if os.path.basename(path) in ("lib.rs", "main.rs", "mod.rs") \
            else os.path.splitext(path)[0]
        for m in re.finditer(r"(#\[path\s*=\s*\"([^\"]+)\"\]\s*)?(?:pub(?:\([^)]*\))?\s+)?mod\s+(" + IDENT + r")\s*;",
                             open(path, encoding="utf-8").read()):
            name = m.group(3)
            if m.group(2):
                child = os.path.join(os.path.dirname(path), m.group(2))
            else:
                child = os.path.join(base, name + ".rs")
                if not os.path.exists(child):
                    child = os.path.join(base, name, "mod.rs")
            if not os.path.exists(child):
                continue
            if name in test_mods:
                self._mark_test(child, module + (name,))
                continue
            self._load(child, module + (name,))

    def _mark_test(self, path, module):
        self.test_files.add(path)

    def _code(self, path):
        text, _ = remove_test_code(strip_comments_and_strings(open(path, encoding="utf-8").read()))
        return text

    def _reexports(self, path):
        """name -> absolute path (list of segments) for every `pub use` of this file."""
        out = {}
        for m in re.finditer(r"\bpub(?:\([^)]*\))?\s+use\s+([^;]+);", self.code[path]):
            tree = m.group(1)
            for segs, alias in self._use_leaves(tree):
                absolute = self.absolute(path, segs)
                if absolute is not None and alias != "*":
                    out[alias] = absolute
        return out

    def _use_leaves(self, tree):
        tree_ns = re.sub(r"\s+", " ", tree)
        leaves = []
        for segs in expand_use_tree(tree_ns.replace(" as ", "as")):
            leaves.append((segs, segs[-1] if segs else ""))
        # Recover aliases (`x as y`).
        for m in re.finditer(r"(" + IDENT + r")\s+as\s+(" + IDENT + r")", tree):
            for i, (segs, alias) in enumerate(leaves):
                if segs and segs[-1] == m.group(1):
                    leaves[i] = (segs, m.group(2))
        return leaves

    def _defined(self, path):
        names = set()
        for m in re.finditer(r"\b(?:fn|struct|enum|trait|type|const|static|union|macro_rules!)\s+(" + IDENT + ")",
                             self.code[path]):
            names.add(m.group(1))
        return names

    def absolute(self, path, segs):
        """A path as written in `path`'s module, made absolute (a tuple from the crate root);
        None for paths into other crates or std."""
        if not segs:
            return None
        module = self.files[path]
        if segs[0] == "crate":
            return list(segs[1:])
        if segs[0] == "self":
            return list(module) + list(segs[1:])
        if segs[0] == "super":
            base = list(module)
            rest = list(segs)
            while rest and rest[0] == "super":
                base = base[:-1]
                rest = rest[1:]
            return base + rest
        if tuple(module) + (segs[0],) in self.modules:
            # A child module named directly (2018 paths: `pub use format::X` in `snapshot`).
            return list(module) + list(segs)
        return None

    def resolve(self, segs, seen=None):
        """The file defining what the absolute path `segs` names (following re-exports)."""
        seen = seen or set()
        key = tuple(segs)
        if key in seen:
            return None
        seen.add(key)
        # Deepest module prefix.
        k = len(segs)
        while k > 0 and tuple(segs[:k]) not in self.modules:
            k -= 1
        module_file = self.modules.get(tuple(segs[:k]))
        if module_file is None:
            return None
        if k == len(segs):
            return module_file
        name = segs[k]
        if name in self.defined[module_file]:
            return module_file
        target = self.reexports[module_file].get(name)
        if target is not None:
            return self.resolve(list(target) + list(segs[k + 1:]), seen)
        return module_file

    def edges(self):
        graph = {f: set() for f in self.files if f not in self.test_files}
        path_re = re.compile(r"\b(crate|super|self)((?:\s*::\s*" + IDENT + r")*)(\s*::\s*\{)?")
        for f in graph:
            code = self.code[f]
            uses = set()
            # `use` trees (braces expanded), then inline paths.
            for m in re.finditer(r"\b(?:pub(?:\([^)]*\))?\s+)?use\s+([^;]+);", code):
                is_pub = m.group(0).lstrip().startswith("pub")
                for segs, _ in self._use_leaves(m.group(1)):
                    if is_pub:
                        continue  # a re-export is an alias, not a use
                    uses.add(tuple(segs))
            no_use = re.sub(r"\b(?:pub(?:\([^)]*\))?\s+)?use\s+[^;]+;", " ", code)
            # `pub(super)`, `pub(crate)`, `pub(in path)` are visibilities, not uses.
            no_use = re.sub(r"\bpub\s*\([^)]*\)", "pub", no_use)
            for m in path_re.finditer(no_use):
                segs = [m.group(1)] + [s.strip() for s in m.group(2).split("::") if s.strip()]
                uses.add(tuple(segs))
            for segs in uses:
                if segs and segs[-1] == "*":
                    segs = segs[:-1]
                absolute = self.absolute(f, list(segs))
                if absolute is None:
                    continue
                target = self.resolve(absolute)
                if target and target != f and target not in self.test_files:
                    graph[f].add(target)
        return graph


def circles(graph):
    """Strongly connected components of more than one file (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def main(argv):
    if not argv:
        raise SystemExit(__doc__)
    failed = False
    for src in argv:
        crate = Crate(src)
        graph = crate.edges()
        for comp in circles(graph):
            failed = True
            members = set(comp)
            print(f"import circle in {src}:")
            for f in comp:
                inside = sorted(t for t in graph[f] if t in members)
                print(f"  {f} -> {', '.join(inside)}")
    if failed:
        return 1
    print(f"check-imports: no import circle in {len(argv)} crates")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
