#!/usr/bin/env python3
"""Static check of the Julia binding (Julia itself is not installed on our
build machines, so nothing else would notice a wrong ccall before a user does).

Checks, over every .jl file of the package (comments and strings blanked out
first, so documentation cannot hide or fake a call; the code of `$(...)`
interpolations is kept, so a call inside one is checked too):
  * every `ccall(` / `@threadcall(` names its function in a checkable way:
    `wsym(:name)`, `found[:name]` / `FPTRS[:name]` (the loader), or, for
    @threadcall, one of the global `FP_NAME[]` Refs; `@ccall`, other
    spellings and a @threadcall through a local variable (which would make its
    @cfunction wrapper a closure) are errors;
  * the function is declared in wscore.h and exported (FUNC, defined) by
    libwscore.so, and is listed in lib.jl's SYMBOLS (which load! resolves);
  * return type, argument count and every argument type match the prototype
    (table C_TO_JULIA); the number of values matches the number of types;
  * an argument `pointer(x)` lies inside the extent of a `GC.@preserve`
    naming x (its begin/let block up to the matching `end`, or its call);
    other expressions around `pointer(` cannot be checked and are errors;
  * nothing parks a thread on the network: ws_receive/ws_accept are called
    with a literal 0 timeout, ws_open/ws_close only through @threadcall, and
    the send timeout is set to 0;
  * the WS_* constants of lib.jl equal the header's, and each FP_NAME Ref is
    filled from the symbol its name says.
A self-test first feeds wrong snippets the checker must reject (and right ones
it must accept), so that a checker that passes everything fails.

Usage: check_ccalls.py JULIA_SRC_DIR wscore.h [libwscore.so]
"""
import os
import re
import subprocess
import sys

# Normalised C type -> the Julia types accepted for it.
C_TO_JULIA = {
    "int": {"Cint"},
    "unsigned": {"Cuint"},
    "size_t": {"Csize_t"},
    "uint64_t": {"UInt64"},
    "void": {"Cvoid"},
    "const char*": {"Cstring", "Ptr{UInt8}", "Ptr{Cchar}"},
    "const void*": {"Ptr{Cvoid}", "Ptr{UInt8}"},
    "void*": {"Ptr{Cvoid}"},
}
OPAQUE = {"ws_options", "ws_conn", "ws_server", "ws_message", "ws_callbacks"}
CALLBACKS = {"ws_log_cb", "ws_open_cb", "ws_message_cb", "ws_close_cb", "ws_drain_cb"}

# Calls that wait on the network when given a timeout; the timeout argument
# (0-based index) must be a literal 0.
NONBLOCKING_TIMEOUT_ARG = {"ws_receive": 2, "ws_accept": 2}
# Calls that block by design; only @threadcall may make them.
THREADPOOL_ONLY = {"ws_open", "ws_close"}


def norm_c(t):
    t = re.sub(r"\s+", " ", t.strip())
    return re.sub(r"\s*\*", "*", t)


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
    raise ValueError(f"no Julia mapping for C type {ctype!r} (extend C_TO_JULIA)")


# ------------------------------------------------------------------ header

def strip_c_comments(text):
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", " ", text)


def header_prototypes(path):
    text = strip_c_comments(open(path, encoding="utf-8").read())
    text = re.sub(r"^\s*#.*?(?<!\\)$", " ", text, flags=re.M | re.S)
    protos = {}
    for m in re.finditer(r"WS_EXTERN\s+([^;]+?)\s*\(([^;]*?)\)\s*;", text):
        head, params = m.group(1), m.group(2)
        name = re.search(r"(\w+)\s*$", head).group(1)
        ret = head[: head.rfind(name)]
        args = []
        if params.strip() != "void":
            for p in params.split(","):
                pm = re.match(r"(.*?)(\w+)\s*$", p.strip())
                args.append(norm_c(pm.group(1)))
        protos[name] = (norm_c(ret), args)
    if len(protos) < 50:
        raise SystemExit(f"FAIL: only {len(protos)} prototypes parsed from {path}: header parser broken?")
    return protos


def header_constants(path):
    text = strip_c_comments(open(path, encoding="utf-8").read())
    consts = {"WS_OK": 0}
    for m in re.finditer(r"XX\((\w+),\s*(-?\d+),", text):
        consts["WS_" + m.group(1)] = int(m.group(2))
    for m in re.finditer(r"^\s*#define\s+(WS_\w+)\s+(-?\d+)\s*$", text, flags=re.M):
        consts[m.group(1)] = int(m.group(2))
    return consts


# ------------------------------------------------------------------ Julia

def blank_julia(text):
    """Comments and string/char literals replaced by spaces (newlines kept),
    so positions and line numbers stay those of the source."""
    out = list(text)
    i, n = 0, len(text)

    def blank(a, b):
        for k in range(a, b):
            if out[k] != "\n":
                out[k] = " "

    while i < n:
        c = text[i]
        if text.startswith("#=", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("#=", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("=#", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            blank(i, j)
            i = j
        elif c == "#":
            j = text.find("\n", i)
            j = n if j < 0 else j
            blank(i, j)
            i = j
        elif text.startswith('"""', i):
            j = text.find('"""', i + 3)
            j = n if j < 0 else j + 3
            blank(i + 3, j - 3)
            i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            blank(i + 1, j)
            i = j + 1
        elif c == "'" and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] in ")]}_'")):
            m = re.match(r"'(\\.[^']*|[^'\\])'", text[i:])
            if m:
                blank(i + 1, i + m.end() - 1)
                i += m.end()
            else:
                i += 1
        else:
            i += 1
    return "".join(out)


def split_top(s):
    """Splits s at top-level commas (outside (), {}, [])."""
    parts, depth, cur = [], 0, ""
    for ch in s:
        if ch in "({[":
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


def close_paren(text, start):
    """text[start] == '('; the index of the matching ')', len(text) if none."""
    depth = 0
    for i in range(start, len(text)):
        depth += text[i] == "("
        depth -= text[i] == ")"
        if depth == 0:
            return i
    return len(text)


def balanced(text, start):
    """text[start] == '('; the content up to the matching ')'."""
    end = close_paren(text, start)
    if end == len(text):
        raise ValueError("unbalanced parentheses")
    return text[start + 1: end]


def with_interpolations(raw):
    """The blanked source with the code of `$(...)` string interpolations put
    back: blanking strings must not hide the calls inside them."""
    text = list(blank_julia(raw))
    for m in re.finditer(r"\$\(", raw):
        if text[m.start()] != " ":
            continue  # not inside a string
        i = close_paren(raw, m.start() + 1)
        text[m.start() + 1: i + 1] = raw[m.start() + 1: i + 1]
    return "".join(text)


BLOCK_WORDS = r"begin|function|if|for|while|let|try|do|quote|struct|module|macro"


def block_end(text, start):
    """text[start:] starts with a block keyword (begin, let, ...): the index just
    past its matching `end`. Keywords inside brackets (comprehensions, x[end])
    do not count."""
    depth, brackets = 0, 0
    for m in re.finditer(rf"(?<![\w.:@])(?:{BLOCK_WORDS}|end)(?![\w!])|[\[\](){{}}]", text[start:]):
        w = m.group(0)
        if w in "([{":
            brackets += 1
        elif w in ")]}":
            brackets -= 1
        elif brackets == 0:
            depth += -1 if w == "end" else 1
            if depth == 0:
                return start + m.end()
    return len(text)


def preserve_spans(text):
    """(names, start, end) of each `GC.@preserve a b EXPR`: EXPR's extent is a
    begin/let block up to its `end`, or a call up to its closing parenthesis."""
    spans = []
    for m in re.finditer(r"GC\.@preserve((?:[ \t]+[A-Za-z_]\w*(?![\w.(\[=!]))+)", text):
        words = m.group(1).split()
        if words[-1] in ("begin", "let"):
            names = words[:-1]
            body = m.start(1) + m.group(1).rindex(words[-1])
            spans.append((set(names), body, block_end(text, body)))
            continue
        names = words
        c = re.compile(r"\s*((?:[A-Za-z_]\w*\.)*@?[A-Za-z_]\w*!?)\(").match(text, m.end())
        if c is None:
            continue  # preserves nothing we can see
        i = close_paren(text, c.end() - 1)
        spans.append((set(names), c.start(1), i + 1))
    return spans


def preserved_at(spans, name, pos):
    return any(name in names and a <= pos < b for names, a, b in spans)


def find_calls(text):
    """Yields (kind, pos, parts) for each call form, or (kind, pos, None) for an
    uncheckable spelling."""
    for m in re.finditer(r"@ccall\b|@threadcall\b|(?<![\w.@:])ccall\b", text):
        kind = m.group(0)
        j = m.end()
        if kind == "@ccall" or j >= len(text) or text[j] != "(":
            yield (kind, m.start(), None)
            continue
        yield (kind, m.start(), split_top(balanced(text, j)))


def resolve_symbol(kind, fexpr):
    fexpr = fexpr.strip()
    if kind == "@threadcall":
        m = re.fullmatch(r"(?:LibWSCore\.)?FP_(\w+)\[\]", fexpr)
        return (m.group(1).lower(), None) if m else (None, (
            "@threadcall must call through a global FP_NAME[] Ref: its function expression is pasted "
            f"into a @cfunction wrapper, where a local or a call ({fexpr!r}) would be a closure or run "
            "Julia code on a libuv thread"))
    m = re.fullmatch(r"wsym\(:(\w+)\)", fexpr) or re.fullmatch(r"(?:found|FPTRS)\[:(\w+)\]", fexpr)
    if m:
        return m.group(1), None
    return None, f"{kind} must call through wsym(:name), got {fexpr!r}"


def check_text(raw, fname, protos, exported, symbols):
    """Returns (errors, checked symbols) for one Julia source."""
    text = with_interpolations(raw)
    spans = preserve_spans(text)
    errors, checked = [], []
    for kind, pos, parts in find_calls(text):
        where = f"{fname}:{text.count(chr(10), 0, pos) + 1}"
        if parts is None:
            errors.append(f"{where}: {kind} form cannot be checked: write ccall(wsym(:name), R, (T...,), args...)")
            continue
        if len(parts) < 3 or not (parts[2].startswith("(") and parts[2].endswith(")")):
            errors.append(f"{where}: {kind}: expected (function, return type, (argument types...), values...)")
            continue
        sym, why = resolve_symbol(kind, parts[0])
        if sym is None:
            errors.append(f"{where}: {why}")
            continue
        if sym not in protos:
            errors.append(f"{where}: {sym} is not declared in wscore.h")
            continue
        if exported is not None and sym not in exported:
            errors.append(f"{where}: {sym} is not exported by libwscore.so")
        if symbols is not None and sym not in symbols:
            errors.append(f"{where}: {sym} is missing from SYMBOLS in lib.jl (load! would not resolve it)")
        ret = parts[1].strip()
        types = [t.strip() for t in split_top(parts[2][1:-1])]
        values = parts[3:]
        cret, cargs = protos[sym]
        if ret not in allowed(cret):
            errors.append(f"{where}: {sym} returns {cret!r}, the {kind} says {ret}")
        if len(types) != len(cargs):
            errors.append(f"{where}: {sym} takes {len(cargs)} arguments, the {kind} declares {len(types)}")
        elif len(values) != len(types):
            errors.append(f"{where}: {sym}: {len(types)} argument types but {len(values)} values")
        else:
            for i, (jt, ct) in enumerate(zip(types, cargs)):
                if jt not in allowed(ct):
                    errors.append(f"{where}: {sym} argument {i + 1} is {ct!r}, the {kind} says {jt}")
            for i, v in enumerate(values):
                pm = re.fullmatch(r"pointer\((\w+)\)", v.strip())
                if pm is None and re.search(r"\bpointer\(", v):
                    errors.append(f"{where}: {sym} argument {i + 1} ({v.strip()}) cannot be checked for "
                                  "GC.@preserve: pass pointer(x) of a preserved x")
                if pm:
                    if not preserved_at(spans, pm.group(1), pos):
                        errors.append(f"{where}: {sym} argument {i + 1} is pointer({pm.group(1)}) "
                                      f"outside a GC.@preserve {pm.group(1)}")
            if sym in NONBLOCKING_TIMEOUT_ARG:
                v = values[NONBLOCKING_TIMEOUT_ARG[sym]].strip()
                if v not in ("0", "Cint(0)"):
                    errors.append(f"{where}: {sym} must be called with timeout 0 (then wait in poll_fd), got {v}")
            if sym == "ws_options_set_send_timeout" and values[1].strip() not in ("0", "Cint(0)"):
                errors.append(f"{where}: the send timeout must be 0 (a full queue must not park the thread)")
        if sym in THREADPOOL_ONLY and kind != "@threadcall":
            errors.append(f"{where}: {sym} blocks: call it with @threadcall, not {kind}")
        checked.append(sym)
    return errors, checked


def parse_symbols(raw):
    m = re.search(r"const\s+SYMBOLS\s*=\s*\((.*?)\n\)", raw, flags=re.S)
    return None if m is None else re.findall(r":(\w+)", m.group(1))


def check_constants(raw, fname, consts):
    errors = []
    text = blank_julia(raw)
    for m in re.finditer(r"^const\s+(WS_\w+)\s*=\s*Cint\((-?\d+)\)", text, flags=re.M):
        name, val = m.group(1), int(m.group(2))
        if name not in consts:
            errors.append(f"{fname}: {name} is not a constant of wscore.h")
        elif consts[name] != val:
            errors.append(f"{fname}: {name} = {val}, wscore.h says {consts[name]}")
    for m in re.finditer(r"FP_(\w+)\[\]\s*=\s*\w+\[:(\w+)\]", text):
        if m.group(1).lower() != m.group(2):
            errors.append(f"{fname}: FP_{m.group(1)} is filled from {m.group(2)}")
    return errors


def exported_symbols(lib):
    out = subprocess.run(["readelf", "--wide", "--dyn-syms", lib], check=True, capture_output=True,
                         text=True).stdout
    syms = set()
    for line in out.splitlines():
        p = line.split()
        # Num: Value Size Type Bind Vis Ndx Name
        if len(p) >= 8 and p[3] == "FUNC" and p[6] != "UND" and p[4] in ("GLOBAL", "WEAK"):
            syms.add(p[7].split("@")[0])
    return syms


# ------------------------------------------------------------------ self-test

BAD_SNIPPETS = [  # (what, snippet, a word the error must contain)
    ("wrong argument count", "ccall(wsym(:ws_send), Cint, (Ptr{Cvoid}, Ptr{UInt8}, Csize_t), p, d, n)", "arguments"),
    ("int for size_t", "ccall(wsym(:ws_send), Cint, (Ptr{Cvoid}, Ptr{UInt8}, Cint, Cint), p, d, n, t)", "argument 3"),
    ("wrong return type", "ccall(wsym(:ws_fileno), Csize_t, (Ptr{Cvoid},), p)", "returns"),
    ("Cstring return for void", "ccall(wsym(:ws_free), Cstring, (Ptr{Cvoid},), p)", "returns"),
    ("unknown symbol", "ccall(wsym(:ws_no_such_thing), Cint, ())", "not declared"),
    ("library tuple", "ccall((:ws_version, \"libwscore\"), Cstring, ())", "wsym"),
    ("@ccall macro", "@ccall libwscore.ws_version()::Cstring", "cannot be checked"),
    ("values vs types", "ccall(wsym(:ws_state), Cint, (Ptr{Cvoid},), p, q)", "values"),
    ("size_t for uint64_t", "ccall(wsym(:ws_options_set_max_message_size), Cint, (Ptr{Cvoid}, Csize_t), o, n)",
     "argument 2"),
    ("Ptr{Cvoid} for T**", "ccall(wsym(:ws_receive), Cint, (Ptr{Cvoid}, Ptr{Cvoid}, Cint), p, out, Cint(0))",
     "argument 2"),
    ("threadcall through a local", "function f()\n  fp = wsym(:ws_close)\n"
     "  @threadcall(fp, Cint, (Ptr{Cvoid}, Cint, Cstring), p, c, r)\nend", "closure"),
    ("blocking receive", "ccall(wsym(:ws_receive), Cint, (Ptr{Cvoid}, Ptr{Ptr{Cvoid}}, Cint), p, out, Cint(-1))",
     "timeout 0"),
    ("blocking accept", "ccall(wsym(:ws_accept), Cint, (Ptr{Cvoid}, Ptr{Ptr{Cvoid}}, Cint), s, out, t)", "timeout 0"),
    ("ws_open on the thread", "ccall(wsym(:ws_open), Cint, (Cstring, Ptr{Cvoid}, Ptr{Ptr{Cvoid}}), u, o, out)",
     "@threadcall"),
    ("blocking send timeout", "ccall(wsym(:ws_options_set_send_timeout), Cint, (Ptr{Cvoid}, Cint), o, Cint(-1))",
     "send timeout"),
    ("pointer without preserve",
     "function f(p, d)\n  ccall(wsym(:ws_send), Cint, (Ptr{Cvoid}, Ptr{UInt8}, Csize_t, Cint), p, pointer(d), n, t)\nend",
     "GC.@preserve"),
    ("preserve of another object",
     "function f(p, d, e)\n  GC.@preserve e ccall(wsym(:ws_ping), Cint, (Ptr{Cvoid}, Ptr{UInt8}, Csize_t), "
     "p, pointer(d), n)\nend", "GC.@preserve"),
    ("ccall after a comment mentioning ccall", "# ccall is fine here\nccall(wsym(:ws_state), Cvoid, (Ptr{Cvoid},), p)",
     "returns"),
    ("Int (64-bit) for int", "ccall(wsym(:ws_state), Int, (Ptr{Cvoid},), p)", "returns"),
    ("Int for an int argument", "ccall(wsym(:ws_server_close), Cint, (Int,), s)", "argument 1"),
    ("Cuint for int", "ccall(wsym(:ws_options_set_close_timeout), Cint, (Ptr{Cvoid}, Cuint), o, t)", "argument 2"),
    ("Cint return for size_t", "ccall(wsym(:ws_buffered_amount), Cint, (Ptr{Cvoid},), p)", "returns"),
    ("Cvoid return for int", "ccall(wsym(:ws_close_code), Cvoid, (Ptr{Cvoid},), p)", "returns"),
    ("Ptr{Cvoid} return for size_t", "ccall(wsym(:ws_message_size), Ptr{Cvoid}, (Ptr{Cvoid},), m)", "returns"),
    ("UInt32 for uint64_t",
     "ccall(wsym(:ws_options_set_max_message_size), Cint, (Ptr{Cvoid}, UInt32), o, n)", "argument 2"),
    ("Ptr{UInt8} for an opaque handle", "ccall(wsym(:ws_state), Cint, (Ptr{UInt8},), p)", "argument 1"),
    ("Cstring for binary data (const void *)",
     "ccall(wsym(:ws_send), Cint, (Ptr{Cvoid}, Cstring, Csize_t, Cint), p, d, n, t)", "argument 2"),
    ("Cint for a handle", "ccall(wsym(:ws_free), Cvoid, (Cint,), p)", "argument 1"),
    ("wrong type in a @threadcall",
     "@threadcall(FP_WS_CLOSE[], Cint, (Ptr{Cvoid}, Csize_t, Cstring), p, c, r)", "argument 2"),
    ("bad ccall hidden in a string interpolation",
     'f(p) = "state $(ccall(wsym(:ws_state), Csize_t, (Ptr{Cvoid},), p))"', "returns"),
    ("preserve that ended before the call",
     "function f(p, d)\n  GC.@preserve d begin\n    x = 1\n  end\n"
     "  ccall(wsym(:ws_ping), Cint, (Ptr{Cvoid}, Ptr{UInt8}, Csize_t), p, pointer(d), n)\nend", "GC.@preserve"),
    ("preserve in an earlier function",
     "function f(p, d)\n  GC.@preserve d ccall(wsym(:ws_ping), Cint, (Ptr{Cvoid}, Ptr{UInt8}, Csize_t), "
     "p, pointer(d), n)\nend\ng(p, d) = ccall(wsym(:ws_pong), Cint, (Ptr{Cvoid}, Ptr{UInt8}, Csize_t), "
     "p, pointer(d), n)", "GC.@preserve"),
    ("pointer arithmetic the check cannot follow",
     "GC.@preserve d ccall(wsym(:ws_ping), Cint, (Ptr{Cvoid}, Ptr{UInt8}, Csize_t), p, pointer(d) + 1, n)",
     "cannot be checked"),
]
GOOD_SNIPPETS = [
    "ccall(wsym(:ws_state), Cint, (Ptr{Cvoid},), p)",
    "function f()\n  GC.@preserve data begin\n    ccall(wsym(:ws_send), Cint, (Ptr{Cvoid}, Ptr{UInt8}, Csize_t, Cint), "
    "p, pointer(data), n, t)\n  end\nend",
    "@threadcall(FP_WS_CLOSE[], Cint, (Ptr{Cvoid}, Cint, Cstring), p, c, r)",
    "ccall(wsym(:ws_receive), Cint, (Ptr{Cvoid}, Ptr{Ptr{Cvoid}}, Cint), p, out, Cint(0))",
    "ccall(wsym(:ws_version), Ptr{UInt8}, ())",
    "ccall(wsym(:ws_options_set_max_message_size), Cint, (Ptr{Cvoid}, UInt64), o, n)",
    "ccall(wsym(:ws_buffered_amount), Csize_t, (Ptr{Cvoid},), p)",
    "ccall(wsym(:ws_version_number), Cuint, ())",
    "function f(p, d)\n  GC.@preserve d begin\n    if x\n      y = d[end]\n    end\n"
    "    for i in 1:2\n    end\n    ccall(wsym(:ws_ping), Cint, (Ptr{Cvoid}, Ptr{UInt8}, Csize_t), p, pointer(d), n)\n"
    "  end\nend",
    "f(p, b) = GC.@preserve b ccall(wsym(:ws_pong), Cint, (Ptr{Cvoid}, Ptr{UInt8}, Csize_t), p, pointer(b), n)",
    'f(p) = "state $(ccall(wsym(:ws_state), Cint, (Ptr{Cvoid},), p))"',
    '"""\nDocs may say ccall(anything) or @ccall freely.\n"""\nf() = 1',
]
BAD_CONSTANTS = [
    ("wrong error value", "const WS_EAGAIN = Cint(-5)"),
    ("unknown constant", "const WS_ENOPE = Cint(-99)"),
    ("FP filled from another symbol", "FP_WS_OPEN[] = found[:ws_close]"),
]


def self_test(protos, consts):
    ok = True
    for what, snippet, word in BAD_SNIPPETS:
        errs, _ = check_text(snippet, "<bad>", protos, None, None)
        if not any(word in e for e in errs):
            print(f"SELF-TEST FAIL: a bad call ({what}) was not rejected with {word!r}: {snippet!r} -> {errs}")
            ok = False
    for snippet in GOOD_SNIPPETS:
        errs, checked = check_text(snippet, "<good>", protos, None, None)
        expect_call = "ccall(w" in snippet or "@threadcall(" in snippet
        if errs or (expect_call and not checked) or (not expect_call and checked):
            print(f"SELF-TEST FAIL: a good snippet was misjudged: {snippet!r}: {errs} {checked}")
            ok = False
    for what, snippet in BAD_CONSTANTS:
        if not check_constants(snippet + "\n", "<bad>", consts):
            print(f"SELF-TEST FAIL: a bad constant ({what}) was accepted: {snippet}")
            ok = False
    if check_constants("const WS_EAGAIN = Cint(-4)\nFP_WS_OPEN[] = found[:ws_open]\n", "<good>", consts):
        print("SELF-TEST FAIL: a right constant was rejected")
        ok = False
    if ok:
        print(f"self-test: {len(BAD_SNIPPETS) + len(BAD_CONSTANTS)} bad snippets rejected, "
              f"{len(GOOD_SNIPPETS) + 1} good ones accepted")
    return ok


# ------------------------------------------------------------------ main

def main(argv):
    if len(argv) < 3:
        print(__doc__)
        return 2
    src, header = argv[1], argv[2]
    lib = argv[3] if len(argv) > 3 else None
    protos = header_prototypes(header)
    consts = header_constants(header)
    if not self_test(protos, consts):
        return 1
    exported = exported_symbols(lib) if lib else None
    if exported is not None and len(exported) < 50:
        print(f"FAIL: only {len(exported)} functions exported by {lib}")
        return 1
    files = sorted(os.path.join(r, f) for r, _, fs in os.walk(src) for f in fs if f.endswith(".jl"))
    sources = {os.path.relpath(p, src): open(p, encoding="utf-8").read() for p in files}
    errors, checked = [], []
    symbols = parse_symbols(sources.get("lib.jl", ""))
    if symbols is None:
        errors.append("lib.jl: no `const SYMBOLS = (...)` list found")
    else:
        for s in symbols:
            if s not in protos:
                errors.append(f"lib.jl: SYMBOLS lists {s}, which wscore.h does not declare")
            elif exported is not None and s not in exported:
                errors.append(f"lib.jl: SYMBOLS lists {s}, which libwscore.so does not export")
    for name, raw in sources.items():
        e, c = check_text(raw, name, protos, exported, set(symbols or ()))
        errors += e + check_constants(raw, name, consts)
        checked += c
    for s in set(symbols or ()) - set(checked):
        errors.append(f"lib.jl: SYMBOLS lists {s}, which no ccall uses (stale entry)")
    if not any(s == "ws_options_set_send_timeout" for s in checked):
        errors.append("no ccall sets the send timeout (to 0): sends would park the thread when the queue is full")
    for e in errors:
        print("FAIL:", e)
    print(f"{len(checked)} calls checked ({len(set(checked))} distinct functions of {len(protos)} in the header)"
          + (f", against {len(exported)} exported functions" if exported is not None else ", header only"))
    if len(checked) < 40:
        print("FAIL: suspiciously few calls found")
        return 1
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
