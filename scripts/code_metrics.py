#!/usr/bin/env python3
"""Size measures of the source tree, for docs/architecture.md.

    scripts/code_metrics.py [--top N] [--root DIR]

Prints (1) the N longest functions of src/ (default 10), lambdas counted inside the
function that holds them, (2) files and lines per area of src/, (3) the same for tests/.
Function extents come from Universal Ctags (`ctags --fields=+ne`, Debian's
universal-ctags); a line is any line of the file, blank and comment lines included, so
the numbers are the extent a reader scrolls through.
"""
import argparse
import json
import os
import subprocess
import sys


def longest_functions(root, top):
    src = os.path.join(root, "src")
    files = []
    for dirpath, _, names in os.walk(src):
        for n in names:
            if n.endswith((".cpp", ".h")):
                files.append(os.path.relpath(os.path.join(dirpath, n), root))
    try:
        out = subprocess.run(
            ["ctags", "--languages=C++", "--language-force=C++", "--kinds-C++=f",
             "--fields=+ne", "--output-format=json", "-o", "-"] + sorted(files),
            cwd=root, check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        sys.exit(f"code_metrics: error: ctags failed ({e}); install universal-ctags")
    funcs = []
    for line in out.splitlines():
        tag = json.loads(line)
        if tag.get("kind") != "function" or "end" not in tag:
            continue
        if tag["name"].startswith("__anon"):  # a lambda: counted in its enclosing function
            continue
        scope = tag.get("scope", "")
        name = tag["name"]
        # Qualify members (Class::name); drop the namespaces and anonymous scopes.
        if tag.get("scopeKind") in ("class", "struct"):
            owner = [p for p in scope.split("::") if not p.startswith("__anon")]
            if owner and owner[-1] != "attnsparse":
                name = owner[-1] + "::" + name
        funcs.append((tag["end"] - tag["line"] + 1, name, tag["path"], tag["line"]))
    funcs.sort(key=lambda f: (-f[0], f[2], f[3]))
    return funcs[:top]


def lines_per_area(root, folder):
    base = os.path.join(root, folder)
    rows = []
    for area in sorted(os.listdir(base)):
        path = os.path.join(base, area)
        if not os.path.isdir(path):
            continue
        n_files = n_lines = 0
        for dirpath, _, names in os.walk(path):
            for n in names:
                if n.endswith((".cpp", ".h", ".py")):
                    n_files += 1
                    with open(os.path.join(dirpath, n), encoding="utf-8", errors="replace") as f:
                        n_lines += sum(1 for _ in f)
        rows.append((area, n_files, n_lines))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--top", type=int, default=10)
    ap.add_argument("--root", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    args = ap.parse_args()
    root = os.path.abspath(args.root)

    print(f"## The {args.top} longest functions in src/ (lines, lambdas included)\n")
    print("| lines | function | file:line |\n| ---: | --- | --- |")
    for n, name, path, line in longest_functions(root, args.top):
        print(f"| {n} | `{name}` | {path}:{line} |")
    for folder in ("src", "tests"):
        rows = lines_per_area(root, folder)
        print(f"\n## Files and lines per area of {folder}/ (.cpp, .h, .py)\n")
        print("| area | files | lines |\n| --- | ---: | ---: |")
        for area, f, l in rows:
            print(f"| {area} | {f} | {l} |")
        print(f"| total | {sum(r[1] for r in rows)} | {sum(r[2] for r in rows)} |")


if __name__ == "__main__":
    main()
