#!/usr/bin/env python3
"""Checks libwscore.so against include/wscore.h:
- every function declared WS_EXTERN in the header is exported, and nothing else is;
- every export carries the WSCORE_* version node;
- the shared object has the soname libwscore.so.<major>.
Usage: check_symbols.py LIBWSCORE.so wscore.h
"""
import re
import subprocess
import sys


def header_functions(path):
    text = open(path, encoding="utf-8").read()
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    text = re.sub(r"^\s*#.*$", " ", text, flags=re.M)
    names = set()
    for decl in re.findall(r"WS_EXTERN\s+([^;]*?)\(", text):
        m = re.search(r"(\w+)\s*$", decl)
        if m:
            names.add(m.group(1))
    return names


def exported(lib):
    out = subprocess.run(["readelf", "--wide", "--dyn-syms", lib], check=True,
                         capture_output=True, text=True).stdout
    syms = {}
    for line in out.splitlines():
        parts = line.split()
        # Num: Value Size Type Bind Vis Ndx Name
        if len(parts) < 8 or not parts[0].rstrip(":").isdigit():
            continue
        if parts[6] == "UND" or parts[4] not in ("GLOBAL", "WEAK"):
            continue
        name = parts[7]
        base, _, version = name.partition("@")
        syms[base] = version.lstrip("@")
    return syms


def soname(lib):
    out = subprocess.run(["readelf", "-d", lib], check=True, capture_output=True, text=True).stdout
    m = re.search(r"\(SONAME\).*\[(.*)\]", out)
    return m.group(1) if m else None


def main():
    lib, header = sys.argv[1], sys.argv[2]
    want = header_functions(header)
    have = exported(lib)
    errors = []
    if len(want) < 40:
        errors.append(f"only {len(want)} functions parsed from the header: parser broken?")
    for name in sorted(want - set(have)):
        errors.append(f"declared but not exported: {name}")
    for name in sorted(set(have) - want):
        if name.startswith("WSCORE_"):  # the version node itself
            continue
        errors.append(f"exported but not declared: {name}")
    for name, ver in sorted(have.items()):
        if name in want and not ver.startswith("WSCORE_"):
            errors.append(f"{name} has no WSCORE_ version (got {ver!r})")
    so = soname(lib)
    if so != "libwscore.so.0":
        errors.append(f"soname is {so!r}, expected 'libwscore.so.0'")
    for e in errors:
        print("FAIL:", e)
    print(f"{len(want)} header functions, {len(have)} exports, soname {so}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
