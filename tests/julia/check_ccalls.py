#!/usr/bin/env python3
"""Static check of the Julia binding (Julia cannot be installed on our machines).

Every `ccall` and `@threadcall` in the Julia sources must call a function
through `wsym(:name)` (directly, or through a local `fp = wsym(:name)`), and
its return type, argument count and argument types must match the prototype in
include/wscore.h; every such symbol must be exported by libwscore.so.
Any other ccall form is an error (it could not be checked).

Usage: check_ccalls.py JULIA_SRC_DIR wscore.h [libwscore.so]
       check_ccalls.py --self-test wscore.h
"""
import os
import re
import subprocess
import sys

# C type (normalised) -> Julia types accepted for it.
C_TO_JULIA = {
    "int": {"Cint"},
    "unsigned": {"Cuint"},
    "size_t": {"Csize_t"},
    "uint64_t": {"UInt64"},
    "void": {"Cvoid"},
    "const char*": {"Cstring", "Ptr{UInt8}", "Ptr{Cchar}"},
    "char*": {"Cstring", "Ptr{UInt8}", "Ptr{Cchar}"},
    "const void*": {"Ptr{Cvoid}", "Ptr{UInt8}"},
    "void*": {"Ptr{Cvoid}", "Ptr{UInt8}"},
}
OPAQUE = {"ws_options", "ws_conn", "ws_server", "ws_message", "ws_callbacks"}
CALLBACKS = {"ws_log_cb", "ws_open_cb", "ws_message_cb", "ws_close_cb", "ws_drain_cb"}


def norm_c(t):
    t = re.sub(r"\s+", " ", t.strip())
    t = re.sub(r"\s*\*", "*", t)
    return t


def allowed(ctype):
    ctype = norm_c(ctype)
    if ctype in C_TO_JULIA:
        return C_TO_JULIA[ctype]
    base = ctype.replace("const ", "")
    if base.endswith("**") and base[:-2] in OPAQUE:
        return {"Ptr{Ptr{Cvoid}}"}
    if base.endswith("*") and base[:-1] in OPAQUE:
        return {"Ptr{Cvoid}"}
    if base in CALLBACKS:
        return {"Ptr{Cvoid}"}
    raise ValueError(f"no Julia mapping for C type {ctype!r}")


def header_prototypes(path):
    text = open(path, encoding="utf-8").read()
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"^\s*#.*$", " ", text, flags=re.M)
    protos = {}
    for m in re.finditer(r"WS_EXTERN\s+([^;]+?)\s*\(([^;]*?)\)\s*;", text):
        head, params = m.group(1), m.group(2)
        name = re.search(r"(\w+)\s*$", head).group(1)
        ret = head[: head.rfind(name)]
        args = []
        if params.strip() != "void":
            for p in params.split(","):
                p = p.strip()
                pm = re.match(r"(.*?)(\w+)\s*$", p)
                args.append(norm_c(pm.group(1)))
        protos[name] = (norm_c(ret), args)
    return protos


def split_top(s):
    """Splits s at top-level commas (outside (), {}, [], strings)."""
    parts, depth, cur, q = [], 0, "", None
    for ch in s:
        if q:
            cur += ch
            if ch == q:
                q = None
            continue
        if ch in "\"'":
            q = ch
        elif ch in "({[":
            depth += 1
        elif ch in ")}]":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur.strip())
    return parts


def balanced(text, start):
    """text[start] == '('; returns the content up to the matching ')'."""
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "(":
            depth += 1
        elif text[i] == ")":
            depth -= 1
            if depth == 0:
                return text[start + 1 : i]
    raise ValueError("unbalanced parentheses")


def find_calls(text):
    """Yields (kind, fexpr, ret, argtypes, line) for each ccall/@threadcall."""
    for m in re.finditer(r"(@threadcall|\bccall)\s*\(", text):
        inner = balanced(text, m.end() - 1)
        parts = split_top(inner)
        line = text.count("\n", 0, m.start()) + 1
        if len(parts) < 3:
            yield (m.group(1), inner, None, None, line)
            continue
        tup = parts[2].strip()
        if not (tup.startswith("(") and tup.endswith(")")):
            yield (m.group(1), parts[0], parts[1], None, line)
            continue
        types = [t for t in split_top(tup[1:-1]) if t]
        nargs = len(parts) - 3
        yield (m.group(1), parts[0], parts[1].strip(), (types, nargs), line)


def resolve_symbol(fexpr, text, pos_line):
    m = re.fullmatch(r"wsym\(:(\w+)\)", fexpr.strip())
    if m:
        return m.group(1)
    if re.fullmatch(r"\w+", fexpr.strip()):
        # A local `name = wsym(:sym)` above the call, in the same function.
        lines = text.splitlines()[: pos_line - 1]
        for l in reversed(lines):
            mm = re.search(rf"\b{re.escape(fexpr.strip())}\s*=\s*wsym\(:(\w+)\)", l)
            if mm:
                return mm.group(1)
            if re.match(r"\s*function\b", l):
                break
    return None


def check_text(text, fname, protos, exported):
    errors, checked = [], []
    for kind, fexpr, ret, sig, line in find_calls(text):
        where = f"{fname}:{line}"
        if sig is None:
            errors.append(f"{where}: {kind} form not checkable: {fexpr!r}")
            continue
        sym = resolve_symbol(fexpr, text, line)
        if sym is None:
            errors.append(f"{where}: {kind} must call through wsym(:name), got {fexpr!r}")
            continue
        if sym not in protos:
            errors.append(f"{where}: {sym} is not declared in wscore.h")
            continue
        if exported is not None and sym not in exported:
            errors.append(f"{where}: {sym} is not exported by libwscore.so")
        cret, cargs = protos[sym]
        types, nargs = sig
        if ret not in allowed(cret):
            errors.append(f"{where}: {sym} returns {cret!r}, the ccall says {ret}")
        if len(types) != len(cargs):
            errors.append(f"{where}: {sym} takes {len(cargs)} arguments, the ccall declares {len(types)}")
        elif nargs != len(types):
            errors.append(f"{where}: {sym}: {len(types)} argument types but {nargs} values")
        else:
            for i, (jt, ct) in enumerate(zip(types, cargs)):
                if jt not in allowed(ct):
                    errors.append(f"{where}: {sym} argument {i + 1} is {ct!r}, the ccall says {jt}")
        checked.append(sym)
    return errors, checked


def exported_symbols(lib):
    out = subprocess.run(["readelf", "--wide", "--dyn-syms", lib], check=True, capture_output=True,
                         text=True).stdout
    syms = set()
    for line in out.splitlines():
        p = line.split()
        if len(p) >= 8 and p[6] != "UND" and p[4] in ("GLOBAL", "WEAK"):
            syms.add(p[7].split("@")[0])
    return syms


BAD_SNIPPETS = [
    # each must be rejected
    ("wrong arg count", "ccall(wsym(:ws_send), Cint, (Ptr{Cvoid}, Ptr{UInt8}, Csize_t), p, d, n)"),
    ("wrong arg type", "ccall(wsym(:ws_send), Cint, (Ptr{Cvoid}, Ptr{UInt8}, Cint, Cint), p, d, n, t)"),
    ("wrong return", "ccall(wsym(:ws_fileno), Csize_t, (Ptr{Cvoid},), p)"),
    ("unknown symbol", "ccall(wsym(:ws_no_such_thing), Cint, ())"),
    ("unchecked form", "ccall((:ws_version, \"libwscore\"), Cstring, ())"),
    ("values vs types", "ccall(wsym(:ws_state), Cint, (Ptr{Cvoid},), p, q)"),
    ("uint64 as size_t", "ccall(wsym(:ws_options_set_max_message_size), Cint, (Ptr{Cvoid}, Csize_t), o, n)"),
    ("threadcall unresolved", "function f()\n  @threadcall(somefp, Cint, (Cint,), 1)\nend"),
]
GOOD_SNIPPETS = [
    "ccall(wsym(:ws_send), Cint, (Ptr{Cvoid}, Ptr{UInt8}, Csize_t, Cint), p, d, n, t)",
    "function f()\n  fp = wsym(:ws_close)\n  @threadcall(fp, Cint, (Ptr{Cvoid}, Cint, Cstring), p, c, r)\nend",
    "ccall(wsym(:ws_version), Cstring, ())",
]


def self_test(protos):
    ok = True
    for what, snippet in BAD_SNIPPETS:
        errs, _ = check_text(snippet, "<bad>", protos, None)
        if not errs:
            print(f"SELF-TEST FAIL: the checker accepted a bad ccall ({what}): {snippet}")
            ok = False
    for snippet in GOOD_SNIPPETS:
        errs, checked = check_text(snippet, "<good>", protos, None)
        if errs or not checked:
            print(f"SELF-TEST FAIL: the checker rejected a good ccall: {snippet}: {errs}")
            ok = False
    return ok


def main(argv):
    if len(argv) >= 2 and argv[1] == "--self-test":
        return 0 if self_test(header_prototypes(argv[2])) else 1
    src, header = argv[1], argv[2]
    lib = argv[3] if len(argv) > 3 else None
    protos = header_prototypes(header)
    exported = exported_symbols(lib) if lib else None
    if not self_test(protos):
        return 1
    errors, checked = [], []
    for root, _, files in os.walk(src):
        for f in sorted(files):
            if f.endswith(".jl"):
                p = os.path.join(root, f)
                e, c = check_text(open(p, encoding="utf-8").read(), os.path.relpath(p, src), protos, exported)
                errors += e
                checked += c
    for e in errors:
        print("FAIL:", e)
    print(f"{len(checked)} ccalls checked ({len(set(checked))} distinct functions of {len(protos)} in the header)")
    if len(checked) < 20:
        print("FAIL: suspiciously few ccalls found")
        return 1
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
