"""Autobahn's case catalogue for the server role, written from the published
case descriptions (ids kept so results compare with Autobahn reports).
Each case: actions (bytes to send, with chopping and delays) and what the
server must do (echo these messages / fail with these close codes)."""
import struct

TEXT, BINARY, CLOSE, PING, PONG = 1, 2, 8, 9, 10
PROTO = {1002}
UTF8 = {1007}


class Case:
    def __init__(self, id, description, actions, expect, timeout=5.0):
        self.id = id
        self.description = description
        self.actions = actions
        self.expect = expect
        self.timeout = timeout


def _f(*a, **k):
    from fuzzingclient import frame
    return frame(*a, **k)


def _cp(*a):
    from fuzzingclient import close_payload
    return close_payload(*a)


def send(data, chop=None, delay=0.0):
    return ("send", data, chop, delay)


def all_cases():
    cases = []
    add = lambda *a, **k: cases.append(Case(*a, **k))

    # 1 Framing: text and binary of every length class, also chopped.
    lens = [0, 125, 126, 127, 128, 65535, 65536]
    for i, n in enumerate(lens, 1):
        add(f"1.1.{i}", f"text message of {n} bytes", [send(_f(TEXT, "*" * n))],
            {"messages": [(TEXT, "*" * n)]})
    add("1.1.8", "text message of 65536 bytes sent in 997-byte chops",
        [send(_f(TEXT, "*" * 65536), chop=997)], {"messages": [(TEXT, "*" * 65536)]})
    for i, n in enumerate(lens, 1):
        add(f"1.2.{i}", f"binary message of {n} bytes", [send(_f(BINARY, b"\xfe" * n))],
            {"messages": [(BINARY, b"\xfe" * n)]})
    add("1.2.8", "binary message of 65536 bytes sent in 997-byte chops",
        [send(_f(BINARY, b"\xfe" * 65536), chop=997)], {"messages": [(BINARY, b"\xfe" * 65536)]})

    # 2 Pings and pongs.
    add("2.1", "ping without payload", [send(_f(PING))], {"messages": [(PONG, b"")]})
    add("2.2", "ping with a small text payload", [send(_f(PING, "Hello, world!"))],
        {"messages": [(PONG, b"Hello, world!")]})
    add("2.3", "ping with a small binary payload", [send(_f(PING, b"\x00\xff\xfe\xfd\xfc\xfb\x00\xff"))],
        {"messages": [(PONG, b"\x00\xff\xfe\xfd\xfc\xfb\x00\xff")]})
    add("2.4", "ping with 125 bytes", [send(_f(PING, b"\xfe" * 125))], {"messages": [(PONG, b"\xfe" * 125)]})
    add("2.5", "ping with 126 bytes: protocol error", [send(_f(PING, b"\xfe" * 126))], {"fail": PROTO})
    add("2.6", "ping with 125 bytes, chopped in 1-byte pieces",
        [send(_f(PING, b"\xfe" * 125), chop=1, delay=0.001)], {"messages": [(PONG, b"\xfe" * 125)]})
    add("2.7", "unsolicited pong without payload", [send(_f(PONG))], {"messages": []})
    add("2.8", "unsolicited pong with payload", [send(_f(PONG, "unsolicited pong payload"))], {"messages": []})
    add("2.9", "unsolicited pong, then ping", [send(_f(PONG, "unsolicited")), send(_f(PING, "ping"))],
        {"messages": [(PONG, b"ping")]})
    add("2.10", "10 pings", [send(_f(PING, f"payload-{i}")) for i in range(10)],
        {"messages": [(PONG, f"payload-{i}".encode()) for i in range(10)]})
    add("2.11", "10 pings, chopped", [send(_f(PING, f"payload-{i}"), chop=1) for i in range(10)],
        {"messages": [(PONG, f"payload-{i}".encode()) for i in range(10)]})

    # 3 Reserved bits.
    add("3.1", "text with RSV1", [send(_f(TEXT, "Hello", rsv=1))], {"fail": PROTO})
    add("3.2", "text, then text with RSV2, then ping",
        [send(_f(TEXT, "Hello")), send(_f(TEXT, "Hello", rsv=2)), send(_f(PING))],
        {"fail": PROTO, "messages": [(TEXT, "Hello")]})
    add("3.3", "same as 3.2, frame by frame",
        [send(_f(TEXT, "Hello")), ("wait_frames", 1, 2), send(_f(TEXT, "Hello", rsv=3)), send(_f(PING))],
        {"fail": PROTO, "messages": [(TEXT, "Hello")]})
    add("3.4", "same as 3.2, RSV4, chopped",
        [send(_f(TEXT, "Hello"), chop=1), send(_f(TEXT, "Hello", rsv=4), chop=1), send(_f(PING), chop=1)],
        {"fail": PROTO, "messages": [(TEXT, "Hello")]})
    add("3.5", "binary with RSV5", [send(_f(BINARY, b"\x00\xff\xfe", rsv=5))], {"fail": PROTO})
    add("3.6", "ping with RSV6", [send(_f(PING, "Hello", rsv=6))], {"fail": PROTO})
    add("3.7", "close with RSV7", [send(_f(CLOSE, _cp(1000), rsv=7))], {"fail": PROTO})

    # 4 Opcodes.
    for i, op in enumerate((3, 4, 5, 6, 7), 1):
        add(f"4.1.{i}", f"reserved non-control opcode {op}",
            [send(_f(TEXT, "Hello")), send(_f(op, b"" if i in (1, 3) else b"reserved")), send(_f(PING))],
            {"fail": PROTO, "messages": [(TEXT, "Hello")]})
    for i, op in enumerate((11, 12, 13, 14, 15), 1):
        add(f"4.2.{i}", f"reserved control opcode {op}",
            [send(_f(TEXT, "Hello")), send(_f(op, b"" if i in (1, 3) else b"reserved")), send(_f(PING))],
            {"fail": PROTO, "messages": [(TEXT, "Hello")]})

    # 5 Fragmentation.
    add("5.1", "ping in 2 fragments", [send(_f(PING, "frag1", fin=False)), send(_f(0, "frag2"))], {"fail": PROTO})
    add("5.2", "pong in 2 fragments", [send(_f(PONG, "frag1", fin=False)), send(_f(0, "frag2"))], {"fail": PROTO})
    add("5.3", "text in 2 fragments", [send(_f(TEXT, "frag1", fin=False)), send(_f(0, "frag2"))],
        {"messages": [(TEXT, "frag1frag2")]})
    add("5.4", "text in 2 fragments, frame by frame",
        [send(_f(TEXT, "frag1", fin=False)), ("sleep", 0.1), send(_f(0, "frag2"))],
        {"messages": [(TEXT, "frag1frag2")]})
    add("5.5", "text in 2 fragments, 1-byte chops",
        [send(_f(TEXT, "frag1", fin=False), chop=1, delay=0.001), send(_f(0, "frag2"), chop=1, delay=0.001)],
        {"messages": [(TEXT, "frag1frag2")]})
    add("5.6", "text in 2 fragments with a ping between",
        [send(_f(TEXT, "fragment1", fin=False)), send(_f(PING, "pongme!")), send(_f(0, "fragment2"))],
        {"messages": [(PONG, b"pongme!"), (TEXT, "fragment1fragment2")]})
    add("5.7", "same as 5.6, frame by frame",
        [send(_f(TEXT, "fragment1", fin=False)), ("sleep", 0.1), send(_f(PING, "pongme!")), ("sleep", 0.1),
         send(_f(0, "fragment2"))],
        {"messages": [(PONG, b"pongme!"), (TEXT, "fragment1fragment2")]})
    add("5.8", "same as 5.6, 1-byte chops",
        [send(_f(TEXT, "fragment1", fin=False), chop=1), send(_f(PING, "pongme!"), chop=1),
         send(_f(0, "fragment2"), chop=1)],
        {"messages": [(PONG, b"pongme!"), (TEXT, "fragment1fragment2")]})
    cont_first = [send(_f(0, "fragment1", fin=False)), send(_f(TEXT, "fragment2", fin=False)), send(_f(0, "fragment3"))]
    add("5.9", "continuation without a message (fin=0 first)", cont_first, {"fail": PROTO})
    add("5.10", "same as 5.9, frame by frame", [cont_first[0], ("sleep", 0.1)] + cont_first[1:], {"fail": PROTO})
    add("5.11", "same as 5.9, 1-byte chops", [send(a[1], chop=1) for a in cont_first], {"fail": PROTO})
    cont_fin = [send(_f(0, "fragment1")), send(_f(TEXT, "fragment2", fin=False)), send(_f(0, "fragment3"))]
    add("5.12", "continuation with fin=1 without a message", cont_fin, {"fail": PROTO})
    add("5.13", "same as 5.12, frame by frame", [cont_fin[0], ("sleep", 0.1)] + cont_fin[1:], {"fail": PROTO})
    add("5.14", "same as 5.12, 1-byte chops", [send(a[1], chop=1) for a in cont_fin], {"fail": PROTO})
    add("5.15", "text fragmented, then a new text fragment mid-message",
        [send(_f(TEXT, "fragment1", fin=False)), send(_f(0, "fragment2")), send(_f(0, "fragment3", fin=False)),
         send(_f(TEXT, "fragment4"))],
        {"fail": PROTO, "messages": [(TEXT, "fragment1fragment2")]})
    add("5.16", "repeated: continuation first",
        [send(_f(0, "fragment1", fin=False)), send(_f(TEXT, "fragment2", fin=False)), send(_f(0, "fragment3"))] * 2,
        {"fail": PROTO})
    add("5.17", "repeated: continuation with fin first",
        [send(_f(0, "fragment1")), send(_f(TEXT, "fragment2", fin=False)), send(_f(0, "fragment3"))] * 2,
        {"fail": PROTO})
    add("5.18", "text fragment, then a text frame (not a continuation)",
        [send(_f(TEXT, "fragment1", fin=False)), send(_f(TEXT, "fragment2"))], {"fail": PROTO})
    pingy = [send(_f(TEXT, "fragment1", fin=False)), send(_f(0, "fragment2", fin=False)), send(_f(PING, "pongme 1!")),
             ("sleep", 0.3), send(_f(0, "fragment3", fin=False)), send(_f(PING, "pongme 2!")),
             send(_f(0, "fragment4", fin=False)), ("sleep", 0.3), send(_f(0, "fragment5"))]
    add("5.19", "5 text fragments with 2 pings and delays", pingy,
        {"messages": [(PONG, b"pongme 1!"), (PONG, b"pongme 2!"), (TEXT, "fragment1fragment2fragment3fragment4fragment5")]})
    add("5.20", "same as 5.19, 1-byte chops", [(a[0], a[1], 1, 0.0) if a[0] == "send" else a for a in pingy],
        {"messages": [(PONG, b"pongme 1!"), (PONG, b"pongme 2!"), (TEXT, "fragment1fragment2fragment3fragment4fragment5")]})

    cases += utf8_cases()
    cases += close_cases()
    cases += limit_cases()
    add("10.1.1", "text of 65536 bytes (auto-fragmentation may be used by the echo)",
        [send(_f(TEXT, "*" * 65536))], {"messages": [(TEXT, "*" * 65536)]})
    return cases


# ---- 6: UTF-8 handling ----

VALID = [
    b"", "κόσμε".encode(), b"\xc2\x80", b"\xe0\xa0\x80", b"\xf0\x90\x80\x80", b"\x7f", b"\xdf\xbf", b"\xef\xbf\xbf",
    b"\xf4\x8f\xbf\xbf", b"\xed\x9f\xbf", b"\xee\x80\x80", b"\xef\xbf\xbd", b"\xef\xbf\xbe", b"\xef\xbf\xbf",
    "Hello-µ@ßöäüàá-UTF-8!!".encode(), b"\xf0\x9f\x98\x80",
]
INVALID = [
    b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64\x69\x74\x65\x64",  # surrogate
    b"\xf8\x88\x80\x80\x80", b"\xfc\x84\x80\x80\x80\x80", b"\xf4\x90\x80\x80", b"\x80", b"\xbf", b"\x80\xbf",
    b"\xc0\x20", b"\xe0\x80\x20", b"\xf0\x80\x80\x20", b"\xc0", b"\xe0\x80", b"\xfe", b"\xff", b"\xfe\xfe\xff\xff",
    b"\xc0\xaf", b"\xe0\x80\xaf", b"\xf0\x80\x80\xaf", b"\xc1\xbf", b"\xe0\x9f\xbf", b"\xf0\x8f\xbf\xbf",
    b"\xed\xa0\x80", b"\xed\xad\xbf", b"\xed\xae\x80", b"\xed\xaf\xbf", b"\xed\xb0\x80", b"\xed\xbe\x80",
    b"\xed\xbf\xbf", b"\xed\xa0\x80\xed\xb0\x80", b"\xed\xaf\xbf\xed\xbf\xbf",
    b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80\x65\x64\x69\x74\x65\x64",
]


def utf8_cases():
    out = []
    add = lambda *a, **k: out.append(Case(*a, **k))
    add("6.1.1", "empty text message", [send(_f(TEXT, b""))], {"messages": [(TEXT, b"")]})
    add("6.1.2", "empty text in 3 empty fragments",
        [send(_f(TEXT, b"", fin=False)), send(_f(0, b"", fin=False)), send(_f(0, b""))], {"messages": [(TEXT, b"")]})
    add("6.1.3", "empty fragments around text",
        [send(_f(TEXT, b"", fin=False)), send(_f(0, b"middle", fin=False)), send(_f(0, b""))],
        {"messages": [(TEXT, b"middle")]})
    hello = "Hello-µ@ßöäüàá-UTF-8!!".encode()
    add("6.2.1", "valid UTF-8 in one fragment", [send(_f(TEXT, hello))], {"messages": [(TEXT, hello)]})
    add("6.2.2", "valid UTF-8 in 2 fragments at a code point boundary",
        [send(_f(TEXT, hello[:12], fin=False)), send(_f(0, hello[12:]))], {"messages": [(TEXT, hello)]})
    add("6.2.3", "valid UTF-8 sent one byte per fragment",
        [send(_f(TEXT if i == 0 else 0, hello[i:i + 1], fin=i == len(hello) - 1)) for i in range(len(hello))],
        {"messages": [(TEXT, hello)]})
    k = "κόσμε".encode()
    add("6.2.4", "valid UTF-8 one byte per fragment, inside code points",
        [send(_f(TEXT if i == 0 else 0, k[i:i + 1], fin=i == len(k) - 1)) for i in range(len(k))],
        {"messages": [(TEXT, k)]})
    for i, v in enumerate(VALID, 1):
        add(f"6.5.{i}", f"valid sequence {v[:12]!r}", [send(_f(TEXT, v))], {"messages": [(TEXT, v)]})
    for i, v in enumerate(INVALID, 1):
        add(f"6.3.{i}", f"invalid sequence {v[:12]!r} in one frame", [send(_f(TEXT, v))], {"fail": UTF8})
        add(f"6.21.{i}", f"invalid sequence {v[:12]!r} one byte per fragment",
            [send(_f(TEXT if j == 0 else 0, v[j:j + 1], fin=j == len(v) - 1)) for j in range(len(v))], {"fail": UTF8})
    # 6.4 fail fast: the invalid part goes out, then the rest after a pause; the
    # server must fail before the rest arrives.
    bad = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"
    add("6.4.1", "fail fast on an invalid fragment (3 fragments)",
        [send(_f(TEXT, bad, fin=False)), send(_f(0, b"\xf4\x90\x80\x80", fin=False)), ("sleep", 1.0), ("mark", "rest"),
         send(_f(0, b"\x65\x64\x69\x74\x65\x64"))],
        {"fail": UTF8, "fail_fast_mark": "rest"}, timeout=5)
    add("6.4.2", "fail fast on an invalid byte inside a fragment",
        [send(_f(TEXT, bad + b"\xf4", fin=False)), send(_f(0, b"\x90", fin=False)), ("sleep", 1.0), ("mark", "rest"),
         send(_f(0, b"\x80\x80\x65\x64\x69\x74\x65\x64"))],
        {"fail": UTF8, "fail_fast_mark": "rest"}, timeout=5)
    whole = bad + b"\xf4\x90\x80\x80\x65\x64\x69\x74\x65\x64"
    hdr = _f(TEXT, whole)  # one frame, sent in two parts with a pause
    cut = len(hdr) - len(whole) + len(bad) + 1  # up to and including \xf4
    add("6.4.3", "fail fast inside one frame (chopped)",
        [send(hdr[:cut + 1]), ("sleep", 1.0), ("mark", "rest"), send(hdr[cut + 1:])],
        {"fail": UTF8, "fail_fast_mark": "rest"}, timeout=5)
    return out


# ---- 7: close handling ----

def close_cases():
    out = []
    add = lambda *a, **k: out.append(Case(*a, **k))
    add("7.1.1", "echo, then close", [send(_f(TEXT, "Hello World!"))], {"messages": [(TEXT, "Hello World!")]})
    add("7.1.2", "close, then close again", [send(_f(CLOSE, _cp(1000))), send(_f(CLOSE, _cp(1000)))],
        {"messages": [], "no_client_close": True})
    add("7.1.3", "close, then ping: no pong", [send(_f(CLOSE, _cp(1000))), send(_f(PING, "after close"))],
        {"messages": [], "no_client_close": True})
    add("7.1.4", "close, then text: no echo", [send(_f(CLOSE, _cp(1000))), send(_f(TEXT, "after close"))],
        {"messages": [], "no_client_close": True})
    add("7.1.5", "fragment, close, fragment",
        [send(_f(TEXT, "fragment1", fin=False)), send(_f(CLOSE, _cp(1000))), send(_f(0, "fragment2"))],
        {"messages": [], "no_client_close": True})
    add("7.1.6", "large message, then close", [send(_f(TEXT, "BAsd7&jh23" * 26214)), send(_f(TEXT, "Hello World!"))],
        {"messages": [(TEXT, "BAsd7&jh23" * 26214), (TEXT, "Hello World!")]})
    add("7.3.1", "close with an empty payload", [send(_f(CLOSE, b""))],
        {"messages": [], "no_client_close": True, "close_code": "empty"})
    add("7.3.2", "close with a 1-byte payload", [send(_f(CLOSE, b"a"))], {"fail": PROTO})
    add("7.3.3", "close with a code only", [send(_f(CLOSE, _cp(1000)))], {"messages": [], "no_client_close": True})
    add("7.3.4", "close with a code and a reason", [send(_f(CLOSE, _cp(1000, "Hello World!")))],
        {"messages": [], "no_client_close": True})
    add("7.3.5", "close with a 123-byte reason", [send(_f(CLOSE, _cp(1000, "*" * 123)))],
        {"messages": [], "no_client_close": True})
    add("7.3.6", "close with a 124-byte reason (payload 126)", [send(_f(CLOSE, _cp(1000, "*" * 124)))],
        {"fail": PROTO})
    add("7.5.1", "close reason not UTF-8", [send(_f(CLOSE, _cp(1000, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64\x69\x74\x65\x64")))],
        {"fail": UTF8})
    for i, code in enumerate([1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999], 1):
        add(f"7.7.{i}", f"valid close code {code}", [send(_f(CLOSE, _cp(code)))],
            {"messages": [], "no_client_close": True, "close_code": code})
    for i, code in enumerate([0, 999, 1004, 1005, 1006, 1016, 1100, 2000, 2999], 1):
        add(f"7.9.{i}", f"invalid close code {code}", [send(_f(CLOSE, _cp(code)))], {"fail": PROTO})
    add("7.13.1", "close code 5000", [send(_f(CLOSE, _cp(5000)))], {"fail": PROTO})
    add("7.13.2", "close code 65535", [send(_f(CLOSE, _cp(65535)))], {"fail": PROTO})
    return out


# ---- 9: limits and performance (sizes up to 16 MiB) ----

def limit_cases():
    out = []
    sizes = [64 << 10, 256 << 10, 1 << 20, 4 << 20, 8 << 20, 16 << 20]
    for i, n in enumerate(sizes, 1):
        out.append(Case(f"9.1.{i}", f"text message of {n} bytes", [send(_f(TEXT, "*" * n))],
                        {"messages": [(TEXT, "*" * n)]}, timeout=60))
        out.append(Case(f"9.2.{i}", f"binary message of {n} bytes", [send(_f(BINARY, b"\xfe" * n))],
                        {"messages": [(BINARY, b"\xfe" * n)]}, timeout=60))
    for i, frag in enumerate([64, 256, 1 << 10, 4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20], 1):
        n = 4 << 20
        parts = [send(_f(TEXT if j == 0 else 0, b"*" * frag, fin=j + frag >= n)) for j in range(0, n, frag)]
        out.append(Case(f"9.3.{i}", f"4 MiB text in {frag}-byte fragments", parts,
                        {"messages": [(TEXT, b"*" * n)]}, timeout=60))
    for i, chop in enumerate([64, 128, 256, 512, 1024, 2048], 1):
        n = 1 << 20
        out.append(Case(f"9.5.{i}", f"1 MiB text in {chop}-byte chops", [send(_f(TEXT, "*" * n), chop=chop)],
                        {"messages": [(TEXT, "*" * n)]}, timeout=60))
    return out
