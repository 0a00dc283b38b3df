#!/usr/bin/env python3
"""Finds import circles between the modules of rbk's crates.

For every module, the modules directly inside it (its children) must not
import each other in a circle: a child's file and everything below it count
as that child. References are `crate::…`, `super::…` and `self::…` paths
(grouped imports `crate::{a, b::c}` are expanded). A child using its parent,
or a parent using its children, is not a circle; `#[cfg(test)]` modules at
the end of a file are left out (they are tests, not the shape of the code).

Usage: scripts/modcycles.py [CRATE_DIR ...]   (default: every crate)
Exits 1 and names the circles when there are any.
"""

import os
import re
import sys

CRATES = ["compiler", "store", "runtime", "scheduler", "cli"]


def module_of(src, path):
    rel = os.path.relpath(path, src)[:-3].split(os.sep)
    if rel[-1] in ("lib", "main") and len(rel) == 1:
        return ()
    if rel[-1] == "mod":
        rel = rel[:-1]
    return tuple(rel)


def strip(text):
    # Leave out a trailing #[cfg(test)] module and comments.
    m = re.search(r"^#\[cfg\(test\)\]\s*\n\s*mod \w+\s*\{", text, re.M)
    if m:
        text = text[: m.start()]
    text = re.sub(r"//[^\n]*", "", text)
    return text


def expand(body):
    """`a, b::{c, d}` -> ['a', 'b::c', 'b::d'] (brace groups, nested)."""
    out, depth, cur = [], 0, ""
    for ch in body:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur.strip())
    paths = []
    for item in out:
        m = re.match(r"^([\w:]*?)(?:::)?\{(.*)\}$", item, re.S)
        if m:
            prefix = m.group(1)
            for sub in expand(m.group(2)):
                paths.append(f"{prefix}::{sub}" if prefix else sub)
        else:
            paths.append(item)
    return paths


def references(text):
    """Every path that starts with crate::, super:: or self::."""
    refs = []
    i = 0
    pat = re.compile(r"\b(crate|super|self)::")
    while True:
        m = pat.search(text, i)
        if not m:
            break
        j = m.end()
        # take the path: words, ::, and one balanced brace group
        k = j
        while k < len(text) and (text[k].isalnum() or text[k] in "_:"):
            k += 1
        if k < len(text) and text[k] == "{":
            depth = 0
            e = k
            while e < len(text):
                if text[e] == "{":
                    depth += 1
                elif text[e] == "}":
                    depth -= 1
                    if depth == 0:
                        break
                e += 1
            body = text[k + 1 : e]
            head = text[j:k].rstrip(":")
            for p in expand(body):
                refs.append((m.group(1), f"{head}::{p}" if head else p))
            i = e + 1
        else:
            refs.append((m.group(1), text[j:k].rstrip(":")))
            i = k
    return refs


def resolve(kind, path, here, modules):
    parts = [p for p in path.split("::") if p and p != "self"]
    if kind == "crate":
        base = []
    elif kind == "self":
        base = list(here)
    else:
        base = list(here)
        # super:: chains
        base = base[:-1]
        while parts and parts[0] == "super":
            parts.pop(0)
            base = base[:-1]
    full = base + parts
    # the longest prefix that is a module
    for n in range(len(full), -1, -1):
        if tuple(full[:n]) in modules:
            return tuple(full[:n])
    return ()


def crate_cycles(crate):
    src = os.path.join(crate, "src")
    files = {}
    for root, _, names in os.walk(src):
        for n in names:
            if n.endswith(".rs"):
                p = os.path.join(root, n)
                files[module_of(src, p)] = p
    modules = set(files)
    # modules declared inline (`mod x {`) are not separate files; ignore them
    edges = {}
    for mod, path in files.items():
        with open(path, encoding="utf-8") as f:
            text = strip(f.read())
        for kind, ref in references(text):
            target = resolve(kind, ref, mod, modules)
            # find the common parent and the two children under it
            n = 0
            while n < min(len(mod), len(target)) and mod[n] == target[n]:
                n += 1
            if n == len(mod) or n == len(target):
                continue  # ancestor or descendant: not a sibling edge
            a, b = mod[: n + 1], target[: n + 1]
            edges.setdefault(a, set()).add(b)
    return tarjan(edges)


def tarjan(edges):
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
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
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out, edges


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    crates = sys.argv[1:] or [os.path.join(root, c) for c in CRATES]
    bad = 0
    for crate in crates:
        if not os.path.isdir(os.path.join(crate, "src")):
            continue
        cycles, edges = crate_cycles(crate)
        for comp in cycles:
            bad += 1
            names = ["::".join(m) for m in comp]
            print(f"{os.path.basename(crate)}: circle between {', '.join(names)}")
            for m in comp:
                for t in sorted(edges.get(m, ())):
                    if t in comp:
                        print(f"    {'::'.join(m)} -> {'::'.join(t)}")
    if bad:
        print(f"{bad} import circle(s)")
        return 1
    print("no import circles between sibling modules")
    return 0


if __name__ == "__main__":
    sys.exit(main())
