#!/usr/bin/env python3
"""Every function or macro the Julia binding calls must exist.

Julia is not installed on our machines, so a misspelt call (`unsafe_copyto`
for `unsafe_copyto!`, `poll_fd` without its import, a helper renamed in one
place only) would only show up on a user's machine. This check lists each
name in call position (`name(`, `Mod.name(`, `@name`) in the package's
sources and in test/runtests.jl, and requires it to be:
  * defined by the package (function, short definition, struct, const,
    module), or imported by name (`using M: a, b`, `import M: a`), or a local
    (a parameter, a `do`/`->`/`for` variable, an assignment target); or
  * in KNOWN below: names of Julia 1.10's Base and of the standard libraries
    the package and its tests load, each checked by hand against the manual.
A name outside all of these fails, so a new Base name must be looked up once
and added, which is the point. A self-test first checks that misspellings are
caught.

Usage: check_names.py FILE.jl...
"""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from check_ccalls import blank_julia, close_paren, split_top, with_interpolations  # noqa: E402

# Julia 1.10: Base (and Core) functions, types used as constructors, and macros.
KNOWN = set("""
    Any Bool Cint Csize_t Cuint Cvoid Dict Int Int16 Ptr Ref Set String SubString Some Symbol
    Tuple UInt16 UInt64 UInt8 Union Vector Pair Task Timer Channel IOBuffer
    ArgumentError OutOfMemoryError ErrorException InterruptException TaskFailedException
    append! applicable ccall clamp close collect convert copy delete! empty! error errormonitor exit
    fetch filter findfirst float foreach get get! getfield haskey in isa isempty isfile isinf
    isnan isopen isready istaskdone isvalid iterate join keys length lock lowercase map match
    max merge! min minimum occursin pairs parse pointer popfirst! print println push! put! rand
    readdir readline replace repr rethrow round schedule sizeof sleep something sort sort! split
    sprint startswith endswith strip string take! throw time typemax typeof unlock
    unsafe_copyto! unsafe_string uppercase wait write read current_task catch_backtrace dirname
    joinpath isdir showerror any all finalizer identity last first abs hash getindex setindex!
    view include getproperty propertynames show eltype ReentrantLock codeunits zeros yield mktempdir run
    prevind
    @__DIR__ @async @sync @error @warn @info @debug @test @testset @test_throws @test_skip
    @threadcall @inline @ip_str
""".split())

# Qualified names: Module.name
KNOWN_QUALIFIED = set("""
    Base.close Base.getproperty Base.propertynames Base.showerror Base.show Base.isready Base.isopen
    Base.iterate Base.IteratorSize Base.SizeUnknown Base.eltype Base.wait Base.read Base.write
    Base.@lock Base.RawFD
    Libdl.dlopen_e Libdl.dlsym_e
    Threads.SpinLock Threads.@spawn Threads.Atomic Threads.atomic_add! Threads.threadid Threads.nthreads
    GC.@preserve Sys.which Sys.islinux
    LibWSCore.load!
""".split())

# Standard-library names the sources import explicitly or the tests use:
# Sockets (listen, accept, getsockname, @ip_str), SHA (sha1), Base64
# (base64encode), FileWatching (poll_fd), Test.
KNOWN |= set("listen accept getsockname sha1 base64encode poll_fd".split())

IDENT = r"[A-Za-z_][A-Za-z0-9_]*!?"
KEYWORDS = set("""if elseif else while for function return end begin let do try catch finally
    struct mutable module using import export const local global quote macro abstract primitive
    type in isa where true false nothing""".split())


def params_of(sig):
    """Parameter names of a signature's argument list text."""
    names = set()
    for part in split_top(sig.replace(";", ",")):
        part = part.strip()
        if not part:
            continue
        part = part.split("=")[0].split("::")[0].strip().rstrip(".")
        m = re.fullmatch(IDENT, part)
        if m:
            names.add(part)
    return names


def defined_and_local(text):
    names = set()
    for m in re.finditer(rf"\bfunction\s+(?:\w+\.)?({IDENT})\s*\(", text):
        names.add(m.group(1))
    for m in re.finditer(rf"^\s*(?:\w+\.)?({IDENT})\s*\(([^\n]*?)\)\s*(?:where[^=]*)?=(?!=)", text, flags=re.M):
        names.add(m.group(1))
        names |= params_of(m.group(2))
    for m in re.finditer(rf"\b(?:mutable\s+)?struct\s+({IDENT})", text):
        names.add(m.group(1))
    for m in re.finditer(rf"\b(?:const|module)\s+({IDENT})", text):
        names.add(m.group(1))
    for m in re.finditer(r"\b(?:using|import)\s+[\w.]+\s*:\s*([^\n]+(?:\n\s+[^\n]+)*)", text):
        names |= set(re.findall(rf"@?{IDENT}", m.group(1)))
    # Locals: function parameters, do/-> arguments, loop variables, assignments.
    for m in re.finditer(rf"\bfunction\s+(?:\w+\.)?{IDENT}\s*\(", text):
        start = m.end() - 1
        names |= params_of(text[start + 1: close_paren(text, start)])
    for m in re.finditer(r"\bdo\s+([\w\s,()]+?)\s*$", text, flags=re.M):
        names |= set(re.findall(IDENT, m.group(1)))
    ids = rf"{IDENT}(?:\s*,\s*{IDENT})*"
    for m in re.finditer(rf"\(?({ids})\)?\s*->", text):
        names |= set(re.findall(IDENT, m.group(1)))
    for m in re.finditer(rf"\bfor\s+\(?({ids})\)?\s+in\b", text):
        names |= set(re.findall(IDENT, m.group(1)))
    for m in re.finditer(rf"^[ \t]*(?:local\s+)?\(?({ids})\)?[ \t]*=(?!=)", text, flags=re.M):
        names |= set(re.findall(IDENT, m.group(1)))
    return names


def calls(text):
    """(name, line) for each name in call position."""
    out = []
    for m in re.finditer(rf"(@?(?:{IDENT}\.)*@?{IDENT})(\(|\s*\bdo\b)", text):
        full = m.group(1)
        start = m.start(1)
        if start > 0 and (text[start - 1] in ".:" or text[start - 1].isalnum()):
            continue
        before = text[max(0, start - 40): start]
        if re.search(r"\b(function|struct|macro)\s+$", before):
            continue  # a definition, not a call
        out.append((full, text.count("\n", 0, start) + 1))
    for m in re.finditer(rf"(?<![\w.])(@(?:{IDENT}\.)*{IDENT}|(?:{IDENT}\.)+@{IDENT})", text):
        out.append((m.group(1), text.count("\n", 0, m.start()) + 1))
    return out


def unknown_calls(raw, extra_defined=(), qualified_defs=None):
    text = with_interpolations(raw)
    known_here = defined_and_local(text) | set(extra_defined)
    qualified_defs = known_here if qualified_defs is None else set(qualified_defs) | known_here
    bad = []
    for name, line in calls(text):
        base = name.split(".")[-1]
        if name in KEYWORDS or base in KEYWORDS:
            continue
        if "." in name:
            mod = name.split(".")[0]
            if name in KNOWN_QUALIFIED or mod in ("WS", "WebSockets", "WSCore") and base.lstrip("@") in qualified_defs:
                continue
            if mod in known_here and mod not in ("Base", "Threads", "Libdl", "GC"):
                continue  # a field call such as obj.f(...) on a local or a module of ours
            bad.append((name, line))
            continue
        if name in KNOWN or name.lstrip("@") in known_here or name in known_here:
            continue
        bad.append((name, line))
    return bad


SELF_TEST_BAD = [
    ("misspelt Base function", "f(p, d, n) = unsafe_copyto(p, d, n)", "unsafe_copyto"),
    ("undefined helper", "function g(x)\n    helper_that_is_not_there(x)\nend", "helper_that_is_not_there"),
    ("wrong module", "h() = Threads.spinlock()", "Threads.spinlock"),
    ("unknown macro", "@lockk l begin\nend", "@lockk"),
    ("misspelt call inside an interpolation", 'f(x) = "value $(reprr(x))"', "reprr"),
    ("Base name that Base does not export", "f(T) = IteratorSize(T)", "IteratorSize"),
    ("Threads macro without its module", "g() = @spawn 1", "@spawn"),
]
SELF_TEST_GOOD = [
    "function g(f, x)\n    f(x)\n    push!(Int[], 1)\nend",
    "helper(x) = x\nk(y) = helper(y)",
    "m(xs) = map(x -> x + 1, xs)",
]


def self_test():
    ok = True
    for what, src, name in SELF_TEST_BAD:
        if name not in [n for n, _ in unknown_calls(src)]:
            print(f"SELF-TEST FAIL: {what} not caught: {src!r}")
            ok = False
    for src in SELF_TEST_GOOD:
        bad = unknown_calls(src)
        if bad:
            print(f"SELF-TEST FAIL: good snippet flagged {bad}: {src!r}")
            ok = False
    return ok


def main(argv):
    if len(argv) < 2:
        print(__doc__)
        return 2
    if not self_test():
        return 1
    # Names defined anywhere in the package are visible to its tests (through WS.).
    sources = {p: open(p, encoding="utf-8").read() for p in argv[1:]}
    # The package's own files see each other's names; the tests see only what
    # the package exports unqualified, and the rest through `WS.`/`WebSockets.`.
    package_defs, exported = set(), set()
    for p, raw in sources.items():
        if os.sep + "src" + os.sep in p:
            text = blank_julia(raw)
            package_defs |= defined_and_local(text)
            for m in re.finditer(r"^export\s+([^\n]+(?:\n\s+[^\n]+)*)", text, flags=re.M):
                exported |= set(re.findall(IDENT, m.group(1)))
    failures = 0
    for p, raw in sources.items():
        in_package = os.sep + "src" + os.sep in p
        bad = unknown_calls(raw, package_defs if in_package else exported, package_defs)
        for name, line in bad:
            print(f"FAIL: {p}:{line}: {name} is not defined, imported, local, or a known Julia name")
        failures += len(bad)
        print(f"{os.path.basename(p)}: {len(calls(with_interpolations(raw)))} calls, {len(bad)} unknown")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
