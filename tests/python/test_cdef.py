"""The binding's cdef declares every function of include/wscore.h with the
same signature, and its constants match the header's."""
import os
import re

from wscore import _lib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HEADER = os.path.join(ROOT, "include", "wscore.h")


def _norm(sig):
    return re.sub(r"\s+", " ", sig.replace("WS_EXTERN", "")).replace(" *", "*").replace("* ", "*").strip()


def header_prototypes():
    text = open(HEADER, encoding="utf-8").read()
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"^\s*#.*$", " ", text, flags=re.M)
    protos = {}
    for m in re.finditer(r"WS_EXTERN\s+([^;]+?)\s*;", text):
        decl = _norm(m.group(1))
        name = re.search(r"(\w+)\s*\(", decl).group(1)
        protos[name] = decl
    return protos


def cdef_prototypes():
    protos = {}
    for m in re.finditer(r"^([^;{}()]*?\b(ws_\w+)\s*\([^;]*\))\s*;", _lib.CDEF, flags=re.M):
        if m.group(1).lstrip().startswith("typedef"):
            continue
        protos[m.group(2)] = _norm(m.group(1))
    return protos


def test_every_header_function_is_declared_identically():
    h, c = header_prototypes(), cdef_prototypes()
    assert len(h) >= 70
    assert sorted(set(h) - set(c)) == []
    assert sorted(set(c) - set(h)) == []
    for name in h:
        assert h[name] == c[name], name


def test_constants_match_header():
    text = open(HEADER, encoding="utf-8").read()
    defines = dict(re.findall(r"#define (WS_\w+) (-?\d+)\b", text))
    errs = dict((f"WS_{n}", v) for n, v in re.findall(r"XX\((\w+), (-?\d+),", text))
    for name in ("WS_TEXT", "WS_BINARY", "WS_PING", "WS_PONG", "WS_STATE_CONNECTING", "WS_STATE_OPEN",
                 "WS_STATE_CLOSING", "WS_STATE_CLOSED"):
        assert getattr(_lib, name) == int(defines[name]), name
    for name in ("WS_EINVAL", "WS_ETIMEDOUT", "WS_EAGAIN", "WS_ECLOSED", "WS_EHANDSHAKE", "WS_ETLS",
                 "WS_ECANCELED"):
        assert getattr(_lib, name) == int(errs[name]), name
