"""Autobahn's case catalogue (sections 1-7, 9, 10), written by us from the
testsuite's published case definitions: for each case, what the fuzzer sends
(frames, chops, pauses, timers), the events it expects back for each
behaviour, and the closing behaviour it expects. Case ids are Autobahn's, so
results compare with published Autobahn reports. The same case runs in both
roles: the fuzzer masks its frames when it is the client, not when it is the
server. Sections 12/13 (permessage-deflate) are not carried yet."""
import fuzzer
from fuzzer import FAILED, INFORMATIONAL, NON_STRICT, OK, WRONG_CODE

NORMAL = {"closedByMe": True, "closeCode": [1000], "requireClean": True}
PROTO = {"closedByMe": False, "closeCode": [1002], "requireClean": False}
BAD_UTF8 = {"closedByMe": False, "closeCode": [1007], "requireClean": False, "closedByWrongEndpointIsFatal": True}


def msg(payload, binary=False):
    return ("message", payload.encode() if isinstance(payload, str) else payload, binary)


def pong(payload):
    return ("pong", payload.encode() if isinstance(payload, str) else payload)


class Case:
    """One run of one case. `script(p, case)` plays the case on the fuzzer
    connection p; expected maps a behaviour to the event list that earns it."""

    def __init__(self, id, description, script, expected, close, timeout=1, *, suppress_close=False,
                 wrong_code_fails=False, informational=False, on_message=None, slow=False):
        self.id = id
        self.description = description
        self.script = script
        self.expected = expected
        self.expected_close = close
        self.suppress_close = suppress_close
        self.wrong_code_fails = wrong_code_fails
        self.informational = informational
        self.custom_message = on_message
        self.slow = slow
        self.received = []
        self.behavior = FAILED
        self.result = "the peer's events differ from every expected list"
        # Long after the case's own timers: only a hung peer meets it.
        self.watchdog = timeout + 15

    def fresh(self):
        c = Case.__new__(Case)
        c.__dict__.update(self.__dict__)
        c.received = []
        c.state = {}
        return c

    def on_open(self, p):
        self.script(p, self)

    def record_message(self, p, data, binary):
        if self.custom_message:
            return self.custom_message(p, self, data, binary)
        self.received.append(("message", data, binary))
        self.finish_when_done(p)

    def record_pong(self, p, payload):
        self.received.append(("pong", payload))
        self.finish_when_done(p)

    def finish_when_done(self, p):
        # As Autobahn: once the events match (every) expected list, a case that
        # expects us to close starts the closing handshake.
        if not self.expected or any(self.received != v for v in self.expected.values()):
            return
        if self.expected_close["closedByMe"] and not self.suppress_close:
            p.send_close(self.expected_close["closeCode"][0])

    def behavior_of(self, p):
        if self.custom_message:
            if self.behavior == FAILED and p.close_received and not p.closed_by_me:
                code = p.remote_close_code
                reason = (p.remote_close_reason or b"").decode("utf-8", "replace")
                return FAILED, f"the peer closed the connection ({code} {reason!r}) instead of echoing"
            return self.behavior, self.result
        for b, events in self.expected.items():
            if self.received == events:
                return b, "the peer's events match an expected list"
        return FAILED, self.result

    def post_judge(self, p, behavior, bc, result, rc):
        if self.wrong_code_fails and bc == WRONG_CODE:
            behavior, result = FAILED, rc
        if self.informational:
            behavior = bc = INFORMATIONAL
        return behavior, bc, result


CASES = []


def case(*a, **k):
    CASES.append(Case(*a, **k))


# ---------------------------------------------------------------- 1 framing

def _one_frame(opcode, payload, kill, chop=None):
    def s(p, c):
        p.send_frame(opcode, payload, chopsize=chop)
        p.kill_after(kill)
    return s


for i, n in enumerate([0, 125, 126, 127, 128, 65535, 65536], 1):
    case(f"1.1.{i}", f"text message, payload of {n} bytes", _one_frame(1, b"*" * n, 10 if n >= 65535 else 1),
         {OK: [msg(b"*" * n)]}, NORMAL, 10 if n >= 65535 else 1)
case("1.1.8", "text message of 65536 bytes, written in chops of 997 bytes", _one_frame(1, b"*" * 65536, 10, 997),
     {OK: [msg(b"*" * 65536)]}, NORMAL, 10)
for i, n in enumerate([0, 125, 126, 127, 128, 65535, 65536], 1):
    case(f"1.2.{i}", f"binary message, payload of {n} bytes", _one_frame(2, b"\xfe" * n, 10 if n >= 65535 else 1),
         {OK: [msg(b"\xfe" * n, True)]}, NORMAL, 10 if n >= 65535 else 1)
case("1.2.8", "binary message of 65536 bytes, written in chops of 997 bytes", _one_frame(2, b"\xfe" * 65536, 10, 997),
     {OK: [msg(b"\xfe" * 65536, True)]}, NORMAL, 10)


# ---------------------------------------------------------------- 2 pings/pongs

def _frames(frames, after, delay):
    """frames: (opcode, payload, kwargs) written in order; then kill_after or close_after."""
    def s(p, c):
        for op, pl, kw in frames:
            p.send_frame(op, pl, **kw)
        getattr(p, after)(delay)
    return s


case("2.1", "ping without payload", _frames([(9, b"", {})], "close_after", 1), {OK: [pong(b"")]}, NORMAL, 1)
case("2.2", "ping with a small text payload", _frames([(9, b"Hello, world!", {})], "close_after", 1),
     {OK: [pong(b"Hello, world!")]}, NORMAL, 1)
_bin8 = b"\x00\xff\xfe\xfd\xfc\xfb\x00\xff"
case("2.3", "ping with a small binary payload", _frames([(9, _bin8, {})], "close_after", 1), {OK: [pong(_bin8)]}, NORMAL, 1)
case("2.4", "ping with a binary payload of 125 bytes", _frames([(9, b"\xfe" * 125, {})], "close_after", 1),
     {OK: [pong(b"\xfe" * 125)]}, NORMAL, 1)
case("2.5", "ping with a binary payload of 126 bytes (too long for a control frame)",
     _frames([(9, b"\xfe" * 126, {})], "kill_after", 1), {OK: []}, PROTO, 1)
case("2.6", "ping with 125 bytes, written one byte at a time", _frames([(9, b"\xfe" * 125, {"chopsize": 1})], "close_after", 2),
     {OK: [pong(b"\xfe" * 125)]}, NORMAL, 2)
case("2.7", "unsolicited pong without payload", _frames([(10, b"", {})], "close_after", 1), {OK: []}, NORMAL, 1)
case("2.8", "unsolicited pong with payload", _frames([(10, b"unsolicited pong payload", {})], "close_after", 1),
     {OK: []}, NORMAL, 1)
case("2.9", "unsolicited pong, then ping: only the ping is answered",
     _frames([(10, b"unsolicited pong payload", {}), (9, b"ping payload", {})], "close_after", 1),
     {OK: [pong(b"ping payload")]}, NORMAL, 1)
case("2.10", "10 pings with payload", _frames([(9, f"payload-{i}".encode(), {}) for i in range(10)], "close_after", 3),
     {OK: [pong(f"payload-{i}") for i in range(10)]}, NORMAL, 3)
case("2.11", "10 pings with payload, written one byte at a time",
     _frames([(9, f"payload-{i}".encode(), {"chopsize": 1}) for i in range(10)], "close_after", 3),
     {OK: [pong(f"payload-{i}") for i in range(10)]}, NORMAL, 3)


# ---------------------------------------------------------------- 3 reserved bits

_hw = b"Hello, world!"
case("3.1", "text message with RSV = 1", _frames([(1, _hw, {"rsv": 1})], "kill_after", 1), {OK: []}, PROTO, 1)
for cid, rsv, kw in (("3.2", 2, {}), ("3.3", 3, {"sync": True}), ("3.4", 4, {"chopsize": 1})):
    how = {"3.2": "", "3.3": ", frame by frame", "3.4": ", written one byte at a time"}[cid]
    case(cid, f"text message, then a text message with RSV = {rsv}, then a ping{how}",
         _frames([(1, _hw, kw), (1, _hw, dict(kw, rsv=rsv)), (9, b"", kw)], "kill_after", 1),
         {OK: [msg(_hw)], NON_STRICT: []}, PROTO, 1)
case("3.5", "binary message with RSV = 5", _frames([(2, _bin8, {"rsv": 5})], "kill_after", 1), {OK: []}, PROTO, 1)
# Autobahn's 3.6 is described as a ping but its code writes a binary frame; we send the same bytes.
case("3.6", "frame with RSV = 6 (a binary frame, as Autobahn writes it)", _frames([(2, _hw, {"rsv": 6})], "kill_after", 1),
     {OK: []}, PROTO, 1)
case("3.7", "close frame with RSV = 7", _frames([(8, b"", {"rsv": 7})], "kill_after", 1), {OK: []}, PROTO, 1)


# ---------------------------------------------------------------- 4 opcodes

for sec, ops in (("4.1", (3, 4, 5, 6, 7)), ("4.2", (11, 12, 13, 14, 15))):
    kind = "non-control" if sec == "4.1" else "control"
    a, b, c3, d, e = ops
    case(f"{sec}.1", f"frame with reserved {kind} opcode {a}", _frames([(a, b"", {})], "kill_after", 1), {OK: []}, PROTO, 1)
    case(f"{sec}.2", f"frame with reserved {kind} opcode {b} and a payload",
         _frames([(b, b"reserved opcode payload", {})], "kill_after", 1), {OK: []}, PROTO, 1)
    case(f"{sec}.3", f"text message, then reserved {kind} opcode {c3}, then a ping",
         _frames([(1, _hw, {}), (c3, b"", {}), (9, b"", {})], "kill_after", 1), {OK: [msg(_hw)], NON_STRICT: []}, PROTO, 1)
    case(f"{sec}.4", f"text message, then reserved {kind} opcode {d} with a payload, then a ping",
         _frames([(1, _hw, {}), (d, _hw, {}), (9, b"", {})], "kill_after", 1), {OK: [msg(_hw)], NON_STRICT: []}, PROTO, 1)
    case(f"{sec}.5", f"as {sec}.4 with opcode {e}, written one byte at a time",
         _frames([(1, _hw, {"chopsize": 1}), (e, _hw, {"chopsize": 1}), (9, b"", {"chopsize": 1})], "kill_after", 1),
         {OK: [msg(_hw)], NON_STRICT: []}, PROTO, 1)


# ---------------------------------------------------------------- 5 fragmentation

case("5.1", "ping in 2 fragments", _frames([(9, b"fragment1", {"fin": False}), (0, b"fragment2", {})], "kill_after", 1),
     {OK: []}, PROTO, 1)
case("5.2", "pong in 2 fragments", _frames([(10, b"fragment1", {"fin": False}), (0, b"fragment2", {})], "kill_after", 1),
     {OK: []}, PROTO, 1)
for cid, kw, how in (("5.3", {}, ""), ("5.4", {"sync": True}, ", frame by frame"), ("5.5", {"chopsize": 1}, ", one byte at a time")):
    case(cid, f"text message in 2 fragments{how}",
         _frames([(1, b"fragment1", dict(kw, fin=False)), (0, b"fragment2", kw)], "close_after", 1),
         {OK: [msg(b"fragment1fragment2")]}, NORMAL, 1)
for cid, kw, how in (("5.6", {}, ""), ("5.7", {"sync": True}, ", frame by frame"), ("5.8", {"chopsize": 1}, ", one byte at a time")):
    case(cid, f"text message in 2 fragments with a ping between them{how}",
         _frames([(1, b"fragment1", dict(kw, fin=False)), (9, b"ping payload", kw), (0, b"fragment2", kw)], "close_after", 1),
         {OK: [pong(b"ping payload"), msg(b"fragment1fragment2")]}, NORMAL, 1)
for cid, fin, kw, how in (("5.9", True, {}, ""), ("5.10", True, {"sync": True}, ", frame by frame"),
                          ("5.11", True, {"chopsize": 1}, ", one byte at a time"), ("5.12", False, {}, ""),
                          ("5.13", False, {"sync": True}, ", frame by frame"), ("5.14", False, {"chopsize": 1}, ", one byte at a time")):
    case(cid, f"continuation frame (FIN = {int(fin)}) outside a message, then a text message{how}",
         _frames([(0, b"non-continuation payload", dict(kw, fin=fin)), (1, _hw, kw)], "kill_after", 1), {OK: []}, PROTO, 1)
case("5.15", "text message in 2 fragments, then continuation FIN = 0 and a text frame FIN = 1",
     _frames([(1, b"fragment1", {"fin": False}), (0, b"fragment2", {}), (0, b"fragment3", {"fin": False}), (1, b"fragment4", {})],
             "kill_after", 1), {OK: [msg(b"fragment1fragment2")], NON_STRICT: []}, PROTO, 1)
case("5.16", "twice: continuation FIN = 0, text FIN = 0, continuation FIN = 1",
     _frames([(0, b"fragment1", {"fin": False}), (1, b"fragment2", {"fin": False}), (0, b"fragment3", {})] * 2, "kill_after", 1),
     {OK: []}, PROTO, 1)
case("5.17", "twice: continuation FIN = 1, text FIN = 0, continuation FIN = 1",
     _frames([(0, b"fragment1", {}), (1, b"fragment2", {"fin": False}), (0, b"fragment3", {})] * 2, "kill_after", 1),
     {OK: []}, PROTO, 1)
case("5.18", "text FIN = 0, then text FIN = 1 (not a continuation)",
     _frames([(1, b"fragment1", {"fin": False}), (1, b"fragment2", {})], "kill_after", 1), {OK: []}, PROTO, 1)


def _five_fragments(sync):
    def s(p, c):
        kw = {"sync": sync}
        p.send_frame(1, b"fragment1", fin=False, **kw)
        p.send_frame(0, b"fragment2", fin=False, **kw)
        p.send_frame(9, b"pongme 1!", **kw)

        def part2():
            p.send_frame(0, b"fragment3", fin=False, **kw)
            p.send_frame(0, b"fragment4", fin=False, **kw)
            p.send_frame(9, b"pongme 2!", **kw)
            p.send_frame(0, b"fragment5", **kw)
            p.close_after(1)
        p.later(1, part2, "A")
    return s


_five = {OK: [pong(b"pongme 1!"), pong(b"pongme 2!"), msg(b"fragment1fragment2fragment3fragment4fragment5")]}
case("5.19", "text message in 5 fragments with 2 pings among them and a 1 s pause", _five_fragments(False), _five, NORMAL, 2)
case("5.20", "as 5.19, frame by frame", _five_fragments(True), _five, NORMAL, 2)


# ---------------------------------------------------------------- 6 UTF-8

def _msg_then(payload, frag=None, after="close_after", delay=1):
    def s(p, c):
        p.send_message(payload, False, frag)
        getattr(p, after)(delay)
    return s


case("6.1.1", "empty text message", _frames([(1, b"", {})], "close_after", 1), {OK: [msg(b"")]}, NORMAL, 1)
case("6.1.2", "empty text message in 3 empty fragments",
     _frames([(1, b"", {"fin": False}), (0, b"", {"fin": False}), (0, b"", {})], "close_after", 1), {OK: [msg(b"")]}, NORMAL, 1)
case("6.1.3", "text message in 3 fragments, the first and last empty",
     _frames([(1, b"", {"fin": False}), (0, b"middle frame payload", {"fin": False}), (0, b"", {})], "close_after", 1),
     {OK: [msg(b"middle frame payload")]}, NORMAL, 1)
_hello = "Hello-\u00b5@\u00df\u00f6\u00e4\u00fc\u00e0\u00e1-UTF-8!!".encode()
_kosme = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"
case("6.2.1", "valid UTF-8 text message in one fragment", _msg_then(_hello), {OK: [msg(_hello)]}, NORMAL, 1)
_h1 = "Hello-\u00b5@\u00df\u00f6\u00e4".encode()
case("6.2.2", "valid UTF-8 text message in 2 fragments split at a code point",
     _frames([(1, _h1, {"fin": False}), (0, _hello[len(_h1):], {})], "close_after", 1), {OK: [msg(_hello)]}, NORMAL, 1)
case("6.2.3", "valid UTF-8 text message, one byte per fragment", _msg_then(_hello, 1), {OK: [msg(_hello)]}, NORMAL, 1)
case("6.2.4", "valid UTF-8 text message, one byte per fragment (splitting code points)", _msg_then(_kosme, 1),
     {OK: [msg(_kosme)]}, NORMAL, 1)
_surr = _kosme + b"\xed\xa0\x80" + b"edited"
case("6.3.1", "invalid UTF-8 (a surrogate) in one text message", _msg_then(_surr, None, "kill_after", 1), {OK: []}, BAD_UTF8, 1)
case("6.3.2", "as 6.3.1, one byte per fragment", _msg_then(_surr, 1, "kill_after", 1), {OK: []}, BAD_UTF8, 1)

_ff = _kosme + b"\xf4\x90\x80\x80" + b"edited"   # invalid at byte 12 (\x90: beyond U+10FFFF)


def _fail_fast(parts, one_frame):
    """Three parts with 1 s pauses; the peer must fail after part 2 (which
    makes the text invalid) and before part 3: the 'timeout A' marker only."""
    def s(p, c):
        if one_frame:
            p.begin_message_frame(1, len(_ff))
            p.send_frame_data(parts[0])
        else:
            p.send_frame(1, parts[0], fin=False)

        def part(i, tag):
            if p.state != fuzzer.OPEN:
                return
            c.received.append(("timeout", tag))
            if one_frame:
                p.send_frame_data(parts[i])
            else:
                p.send_frame(0, parts[i], fin=i == 2)
            if i == 1:
                p.later(1, lambda: part(2, "B"), "B")
            else:
                p.kill_after(1)
        p.later(1, lambda: part(1, "A"), "A")
    return s


_ff_exp = {OK: [("timeout", "A")], NON_STRICT: [("timeout", "A"), ("timeout", "B")]}
case("6.4.1", "fail fast: 3 fragments, the 2nd makes the text invalid",
     _fail_fast([_kosme, b"\xf4\x90\x80\x80", b"edited"], False), _ff_exp, BAD_UTF8, 3)
case("6.4.2", "fail fast: 3 fragments, the invalid byte alone in the 2nd",
     _fail_fast([_ff[:12], _ff[12:13], _ff[13:]], False), _ff_exp, BAD_UTF8, 3)
case("6.4.3", "fail fast: one frame written in 3 parts, the 2nd makes it invalid",
     _fail_fast([_kosme, b"\xf4\x90\x80\x80", b"edited"], True), _ff_exp, BAD_UTF8, 3)
case("6.4.4", "fail fast: one frame written in 3 parts, the invalid byte alone in the 2nd",
     _fail_fast([_ff[:12], _ff[12:13], _ff[13:]], True), _ff_exp, BAD_UTF8, 3)


def utf8_sequences():
    """The UTF-8 decoder test vectors Autobahn uses (6.5 onwards), from Markus
    Kuhn's UTF-8-test.txt: (title, [(valid, bytes)]). Validity of the prefix
    list is computed with Python's strict decoder (complete text only)."""
    def valid(b):
        return fuzzer.valid_utf8(b)
    seqs = []
    seqs.append(("Some valid UTF-8 sequences", [(True, b"hello$world"), (True, b"hello\xc2\xa2world"),
                 (True, b"hello\xe2\x82\xacworld"), (True, b"hello\xf0\xa4\xad\xa2world"), (True, _kosme)]))
    seqs.append(("All prefixes of a valid UTF-8 string that contains multi-byte code points",
                 [(valid(_kosme[:i]), _kosme[:i]) for i in range(1, len(_kosme) + 1)]))
    seqs.append(("First possible sequence of a certain length",
                 [(True, b"\x00"), (True, b"\xc2\x80"), (True, b"\xe0\xa0\x80"), (True, b"\xf0\x90\x80\x80")]))
    seqs.append(("First possible sequence length 5/6 (invalid codepoints)",
                 [(False, b"\xf8\x88\x80\x80\x80"), (False, b"\xfc\x84\x80\x80\x80\x80")]))
    seqs.append(("Last possible sequence of a certain length",
                 [(True, b"\x7f"), (True, b"\xdf\xbf"), (True, b"\xef\xbf\xbf"), (True, b"\xf4\x8f\xbf\xbf")]))
    seqs.append(("Last possible sequence length 4/5/6 (invalid codepoints)",
                 [(False, b"\xf7\xbf\xbf\xbf"), (False, b"\xfb\xbf\xbf\xbf\xbf"), (False, b"\xfd\xbf\xbf\xbf\xbf\xbf")]))
    seqs.append(("Other boundary conditions", [(True, b"\xed\x9f\xbf"), (True, b"\xee\x80\x80"), (True, b"\xef\xbf\xbd"),
                 (True, b"\xf4\x8f\xbf\xbf"), (False, b"\xf4\x90\x80\x80")]))
    cont = [b"\x80", b"\xbf", b"\x80\xbf", b"\x80\xbf\x80", b"\x80\xbf\x80\xbf", b"\x80\xbf\x80\xbf\x80",
            b"\x80\xbf\x80\xbf\x80\xbf", bytes(range(0x80, 0xbf))]
    seqs.append(("Unexpected continuation bytes", [(False, x) for x in cont]))
    seqs.append(("Lonely start characters",
                 [(False, b"".join(bytes([i, 0x20]) for i in range(lo, hi)))
                  for lo, hi in ((0xc0, 0xdf), (0xe0, 0xef), (0xf0, 0xf7), (0xf8, 0xfb), (0xfc, 0xfd))]))
    missing = [b"\xc0", b"\xe0\x80", b"\xf0\x80\x80", b"\xf8\x80\x80\x80", b"\xfc\x80\x80\x80\x80",
               b"\xdf", b"\xef\xbf", b"\xf7\xbf\xbf", b"\xfb\xbf\xbf\xbf", b"\xfd\xbf\xbf\xbf\xbf"]
    seqs.append(("Sequences with last continuation byte missing", [(False, x) for x in missing]))
    seqs.append(("Concatenation of incomplete sequences", [(False, b"".join(missing))]))
    seqs.append(("Impossible bytes", [(False, b"\xfe"), (False, b"\xff"), (False, b"\xfe\xfe\xff\xff")]))
    seqs.append(("Examples of an overlong ASCII character",
                 [(False, x) for x in (b"\xc0\xaf", b"\xe0\x80\xaf", b"\xf0\x80\x80\xaf", b"\xf8\x80\x80\x80\xaf",
                                       b"\xfc\x80\x80\x80\x80\xaf")]))
    seqs.append(("Maximum overlong sequences",
                 [(False, x) for x in (b"\xc1\xbf", b"\xe0\x9f\xbf", b"\xf0\x8f\xbf\xbf", b"\xf8\x87\xbf\xbf\xbf",
                                       b"\xfc\x83\xbf\xbf\xbf\xbf")]))
    seqs.append(("Overlong representation of the NUL character",
                 [(False, x) for x in (b"\xc0\x80", b"\xe0\x80\x80", b"\xf0\x80\x80\x80", b"\xf8\x80\x80\x80\x80",
                                       b"\xfc\x80\x80\x80\x80\x80")]))
    hi = [b"\xed\xa0\x80", b"\xed\xad\xbf", b"\xed\xae\x80", b"\xed\xaf\xbf"]
    lo = [b"\xed\xb0\x80", b"\xed\xbe\x80", b"\xed\xbf\xbf"]
    seqs.append(("Single UTF-16 surrogates", [(False, x) for x in hi + lo]))
    seqs.append(("Paired UTF-16 surrogates",
                 [(False, h + l) for h in hi for l in (b"\xed\xb0\x80", b"\xed\xbf\xbf")]))
    nonchar = [b"\xef\xbf\xbe", b"\xef\xbf\xbf"]
    for z1 in b"\xf0\xf1\xf2\xf3\xf4":
        for z2 in b"\x8f\x9f\xaf\xbf":
            if z1 == 0xf4 and z2 != 0x8f:
                continue  # beyond U+10FFFF
            for z3 in b"\xbe\xbf":
                zz = bytes([z1, z2, 0xbf, z3])
                if zz not in (b"\xf0\x8f\xbf\xbe", b"\xf0\x8f\xbf\xbf"):  # overlong
                    nonchar.append(zz)
    seqs.append(("Non-character code points (valid UTF-8)", [(True, x) for x in nonchar]))
    seqs.append(("Unicode specials (i.e. replacement char)",
                 [(True, bytes([0xef, 0xbf, b])) for b in range(0xb9, 0xc0)]))
    return seqs


for si, (title, vecs) in enumerate(utf8_sequences(), 5):
    for vi, (ok, payload) in enumerate(vecs, 1):
        assert ok == fuzzer.valid_utf8(payload), (si, vi)  # the catalogue agrees with a strict decoder
        case(f"6.{si}.{vi}", f"{title}: text message 0x{payload[:24].hex()}{'...' if len(payload) > 24 else ''} "
             f"({'valid' if ok else 'invalid'})",
             _msg_then(payload, None, "kill_after", 0.5), {OK: [msg(payload)]} if ok else {OK: []},
             NORMAL if ok else BAD_UTF8, 1)


# ---------------------------------------------------------------- 7 close handling

def _close_then(payload_code, reason=b"", then=(), raw_payload=None, before=()):
    def s(p, c):
        for op, pl, kw in before:
            p.send_frame(op, pl, **kw)
        if raw_payload is not None:
            # A close frame as is (1-byte payloads, over-long reasons): raw, but
            # it still counts as our close (Autobahn's sendCloseFrame).
            p.closed_by_me = True
            p.state = fuzzer.CLOSING
            p._send_close_payload(raw_payload)
            p.timer(fuzzer.CLOSE_HANDSHAKE_TIMEOUT, p._close_timeout)
        else:
            p.send_close(payload_code, reason)
        for op, pl, kw in then:
            p.send_frame(op, pl, **kw)
        p.kill_after(1)
    return s


def _close_case(cid, desc, script, close, **kw):
    case(cid, desc, script, {OK: []}, close, 1, suppress_close=True, wrong_code_fails=True, **kw)


case("7.1.1", "text message, then the close handshake", _frames([(1, b"Hello World!", {})], "kill_after", 1),
     {OK: [msg(b"Hello World!")]}, NORMAL, 1, wrong_code_fails=True)
_close_case("7.1.2", "close, then a second close frame", _close_then(1000, then=[(8, b"", {})]), NORMAL)
_close_case("7.1.3", "close, then a ping: no pong", _close_then(1000, then=[(9, b"", {})]), NORMAL)
_close_case("7.1.4", "close, then a text message: no echo", _close_then(1000, then=[(1, b"Hello World!", {})]), NORMAL)
_close_case("7.1.5", "first fragment of a text message, close, then the last fragment",
            _close_then(1000, before=[(1, b"fragment1", {"fin": False})], then=[(0, b"fragment2", {})]), NORMAL)
case("7.1.6", "256 KiB text message, a small one, close, then a ping (is the message processed before the close?)",
     _close_then(1000, before=[(1, b"BAsd7&jh23", {"payload_len": 256 << 10}), (1, b"Hello World!", {})], then=[(9, b"", {})]),
     {OK: [msg(b"Hello World!")], NON_STRICT: []}, NORMAL, 1, suppress_close=True, informational=True)
_close_case("7.3.1", "close with an empty payload", _close_then(None), NORMAL)
_close_case("7.3.2", "close with a 1-byte payload", _close_then(None, raw_payload=b"a"),
            {"closedByMe": True, "closeCode": [1002], "requireClean": False})
_close_case("7.3.3", "close with code 1000 and no reason", _close_then(1000), NORMAL)
_close_case("7.3.4", "close with code 1000 and a reason", _close_then(1000, b"Hello World!"), NORMAL)
_close_case("7.3.5", "close with code 1000 and a 123-byte reason", _close_then(1000, b"*" * 123), NORMAL)
_close_case("7.3.6", "close with code 1000 and a 124-byte reason (payload of 126 bytes)",
            _close_then(None, raw_payload=b"\x03\xe8" + b"*" * 124),
            {"closedByMe": True, "closeCode": [1002], "requireClean": False})
_close_case("7.5.1", "close with a reason that is not UTF-8", _close_then(1000, _surr),
            {"closedByMe": True, "closeCode": [1002, 1007], "requireClean": False})
for i, code in enumerate([1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999], 1):
    _close_case(f"7.7.{i}", f"close with valid code {code}", _close_then(code),
                {"closedByMe": True, "closeCode": [1000, code], "requireClean": True})
for i, code in enumerate([0, 999, 1004, 1005, 1006, 1016, 1100, 2000, 2999], 1):
    _close_case(f"7.9.{i}", f"close with invalid code {code}", _close_then(code),
                {"closedByMe": True, "closeCode": [1002], "requireClean": False})
for cid, code in (("7.13.1", 5000), ("7.13.2", 65535)):
    case(cid, f"close with code {code} (undefined by the spec)", _close_then(code), {OK: []},
         {"closedByMe": True, "closeCode": [1000, code, 1002], "requireClean": False}, 1,
         suppress_close=True, informational=True)


# ---------------------------------------------------------------- 9 limits and performance

def _expect_one(length, binary):
    def on_message(p, c, data, is_binary):
        if is_binary != binary:
            c.result = f"expected a {'binary' if binary else 'text'} message, got {'binary' if is_binary else 'text'}"
        elif len(data) != length:
            c.result = f"expected {length} bytes, got {len(data)}"
        else:
            c.behavior, c.result = OK, f"received the {length}-byte message back"
        p.send_close(1000)
    return on_message


def _big(cid, desc, length, binary, wait, send, slow):
    def s(p, c):
        c.result = f"no message back within {wait} s"
        send(p)
        p.close_after(wait)
    case(cid, desc, s, {}, NORMAL, wait, on_message=_expect_one(length, binary), slow=slow)


_KiB, _MiB = 1 << 10, 1 << 20
for i, (n, wait) in enumerate([(64 * _KiB, 10), (256 * _KiB, 10), (_MiB, 100), (4 * _MiB, 100), (8 * _MiB, 100), (16 * _MiB, 100)], 1):
    _big(f"9.1.{i}", f"text message of {n} bytes", n, False, wait,
         lambda p, n=n: p.send_frame(1, b"BAsd7&jh23", payload_len=n), n > 4 * _MiB)
for i, (n, wait) in enumerate([(64 * _KiB, 10), (256 * _KiB, 10), (_MiB, 10), (4 * _MiB, 10), (8 * _MiB, 100), (16 * _MiB, 100)], 1):
    _big(f"9.2.{i}", f"binary message of {n} bytes", n, True, wait,
         lambda p, n=n: p.send_frame(2, b"\x00\xfe\x23\xfa\xf0", payload_len=n), n > 4 * _MiB)
for sec, binary in (("9.3", False), ("9.4", True)):
    for i, frag in enumerate([64, 256, _KiB, 4 * _KiB, 16 * _KiB, 64 * _KiB, 256 * _KiB, _MiB, 4 * _MiB], 1):
        _big(f"{sec}.{i}", f"{'binary' if binary else 'text'} message of 4 MiB in fragments of {frag} bytes",
             4 * _MiB, binary, 100,
             lambda p, frag=frag, b=binary: p.send_message((b"\xfe" if b else b"*") * (4 * _MiB), b, frag), frag < 4 * _KiB)
for sec, binary in (("9.5", False), ("9.6", True)):
    for i, chop in enumerate([64, 128, 256, 512, 1024, 2048], 1):
        _big(f"{sec}.{i}", f"{'binary' if binary else 'text'} message of 1 MiB written in chops of {chop} bytes",
             _MiB, binary, 1000,
             lambda p, chop=chop, b=binary: p.send_frame(2 if b else 1, b"\x00\xfe\x23\xfa\xf0" if b else b"BAsd7&jh23",
                                                        payload_len=_MiB, chopsize=chop), chop < 256)


def _round_trips(length, count, binary):
    def send_one(p, c):
        p.send_frame(2 if binary else 1, (b"\xfe" if binary else b"*") * length)
        c.state["n"] = c.state.get("n", 0) + 1

    def s(p, c):
        c.result = f"the {count} round trips did not finish in time"
        p.close_after(c.wait)
        send_one(p, c)

    def on_message(p, c, data, is_binary):
        if is_binary != binary or len(data) != length:
            c.behavior = FAILED
            c.result = f"echo differs from what we sent (binary={is_binary}, {len(data)} bytes)"
            p.send_close(1000)
        elif c.state["n"] < count:
            send_one(p, c)
        else:
            c.behavior, c.result = OK, f"{count} echoes received in time"
            p.send_close(1000)
    return s, on_message


for sec, binary in (("9.7", False), ("9.8", True)):
    for i, (n, count, wait) in enumerate([(0, 1000, 60), (16, 1000, 60), (64, 1000, 60), (256, 1000, 120),
                                          (1024, 1000, 240), (4096, 1000, 480)], 1):
        s, om = _round_trips(n, count, binary)
        case(f"{sec}.{i}", f"{count} {'binary' if binary else 'text'} messages of {n} bytes, one at a time (round-trip time)",
             s, {}, NORMAL, wait, on_message=om)
        CASES[-1].wait = wait


# ---------------------------------------------------------------- 10 auto-fragmentation

def _auto_frag(p, c):
    p.auto_fragment_size = 1300
    p.send_message(b"*" * 65536)
    p.kill_after(10)


case("10.1.1", "text message of 65536 bytes sent as fragments of 1300 bytes", _auto_frag, {OK: [msg(b"*" * 65536)]}, NORMAL, 10)


def select(patterns="*", exclude="", slow=True, only_slow=False):
    """Cases whose ids match any of the comma-separated patterns (fnmatch;
    '6.4' alone means '6.4.*' too), minus excluded ones and, unless slow,
    the long 9.x cases."""
    import fnmatch

    def match(cid, pats):
        return any(fnmatch.fnmatch(cid, q) or cid.startswith(q.rstrip(".*") + ".") or cid == q for q in pats)
    pats = [q for q in patterns.split(",") if q]
    excl = [q for q in exclude.split(",") if q]
    return [c for c in CASES if match(c.id, pats) and not (excl and match(c.id, excl)) and (slow or not c.slow)
            and (c.slow or not only_slow)]
