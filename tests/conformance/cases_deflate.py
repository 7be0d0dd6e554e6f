"""permessage-deflate (RFC 7692) cases: Autobahn's groups 12 and 13, and more.

Imported by run.py; adds its cases to cases.CASES.

  12.j.i   compressed echo, Autobahn style: message i of the size table below
           (Autobahn's 18 sizes and auto-fragment sizes; counts scaled down),
           data set j, the browser's offer "permessage-deflate;
           client_max_window_bits" (context takeover both ways)
  13.j.i   the same sizes on JSON data, with Autobahn's seven offers (13.1-13.7:
           its default offer, server_no_context_takeover, server_max_window_bits
           8 and 15, both, and a list of three offers to fall back through)
  pmd.*    more of the parameter space: client_max_window_bits 8..15,
           server_max_window_bits 8..15 (the server's output checked against
           the agreed window), quoted values, offers on two header lines,
           fallback past invalid offers, empty, BFINAL-ended, fragmented,
           interleaved and pipelined compressed messages, several connections
  pmdneg.* invalid offers: declined (no extension in the answer), the connection
           then works uncompressed, and RSV1 fails it
  pmderr.* RSV1 on continuation and control frames (1002), invalid UTF-8 after
           inflating (1007, fail-fast too), corrupt DEFLATE data (1007), message
           limits on the inflated size (1009) and decompression bombs, with the
           server's memory checked (kaze echo --max-message 1M)
  pmdw.*   kaze echo --deflate-window 9 --deflate-mem-level 1 --deflate-min-size 0
  pmdsh.*  kaze echo --deflate-mode shared (server_no_context_takeover always)
  pmdoff.* kaze echo --no-deflate: nothing is negotiated

Every answer is judged against RFC 7692 7.1 (wsclient.check_pmd_answer), every
echo must match byte for byte, and every server frame is checked by wsclient:
RSV1 only on the first frame of a data message, and compressed messages must
inflate with the agreed window and context takeover. Where the server compresses
is Kaze's choice, not RFC 7692's; the cases also check Kaze's documented one:
messages shorter than --deflate-min-size (default 64) go uncompressed, longer
compressible ones compressed.
"""

import functools
import json
import random
import time
import zlib

import cases
from cases import (CLOSE_WAIT, EVENT_WAIT, FAIL_WAIT, FAST_WAIT, FAIL, NORMAL, QUIET, CLOSED_WITHIN,
                   case, data_events, describe_events, diff_events, msg, pong)
from wsclient import (BINARY, CLOSE, CONT, PING, PONG, TEXT, Conn, HandshakeError, Timeout, PMD,
                      build_frame, close_payload, deflate_raw, pmd_offer, short, valid_utf8)

cases.EXTRA_GROUPS.extend(["pmd", "pmdneg", "pmderr", "pmdw", "pmdsh", "pmdoff"])

KIB, MIB = 1 << 10, 1 << 20
DEFAULT_MIN_SIZE = 64       # kaze echo --deflate-min-size default

# The browser's offer (Chromium, Firefox): context takeover both ways, windows of 15.
BROWSER_OFFER = pmd_offer(cmwb=True)
# Autobahn's default offer (PerMessageDeflateOffer()): the client promises not to
# take over its context and lets the server choose its window.
AUTOBAHN_OFFER = pmd_offer(cnct=True, cmwb=True)


# ------------------------------------------------------------------ test data
# Autobahn uses files (Faust, a bitmap, a PDF, JSON, HTML); these are generated
# alike, deterministically, about 256 KiB each.

DATA_LEN = 256 * KIB


@functools.lru_cache(maxsize=None)
def _prose():
    """German-flavoured prose with umlauts and line breaks (valid UTF-8)."""
    rng = random.Random(12)
    words = ("der die das und ist nicht ich zu mit sich des auf für Faust Mephistopheles Gretchen "
             "schön Wärme Größe über Mühe Geist Himmel Erde Nacht Liebe Welt Herz Hölle Teufel "
             "Gott Mensch Zeit Stunde Augenblick verweile doch du bist so Blütenträume Äther "
             "grün golden Baum Leben Wissenschaft Bücher Studierzimmer Pudel Kern Straße Mädchen "
             "Kuß Tränen ewig Weibliche zieht uns hinan Dämmerung Öl Übermut").split()
    out, n = [], 0
    while n < DATA_LEN:
        sent = " ".join(rng.choice(words) for _ in range(rng.randint(4, 16)))
        sent = sent[0].upper() + sent[1:] + rng.choice([". ", "! ", "? ", ".\n", ";\n", ".\n\n"])
        out.append(sent)
        n += len(sent.encode())
    return "".join(out).encode()[:DATA_LEN]


@functools.lru_cache(maxsize=None)
def _bitmap():
    """A 512x512 8-bit grey image: gradients, rings and some noise."""
    rng = random.Random(13)
    noise = rng.randbytes(512 * 512)
    px = bytearray(512 * 512)
    for y in range(512):
        row = y * 512
        for x in range(512):
            r2 = (x - 256) * (x - 256) + (y - 200) * (y - 200)
            v = (x // 2 + y // 4) if r2 > 150 * 150 else (r2 >> 7)
            px[row + x] = (v + (noise[row + x] & 7)) & 0xFF
    return bytes(px)[:DATA_LEN]


@functools.lru_cache(maxsize=None)
def _random():
    """Incompressible bytes (like an already compressed PDF)."""
    return random.Random(14).randbytes(DATA_LEN)


@functools.lru_cache(maxsize=None)
def _json():
    rng = random.Random(15)
    names = ["Anna", "Jürgen", "Zoë", "Hiroshi", "Łukasz", "Ольга", "José", "Mei", "Søren", "Aïcha"]
    recs, n, i = [], 0, 0
    while n < DATA_LEN + 4096:
        r = {"id": i, "name": rng.choice(names) + " " + rng.choice(names), "active": rng.random() < 0.5,
             "score": round(rng.uniform(0, 100), 3), "tags": rng.sample(["a", "b", "kaze", "ws", "zlib",
                                                                           "rfc7692", "json"], 3),
             "address": {"street": "%d %s Street" % (rng.randint(1, 999), rng.choice(names)),
                         "zip": "%05d" % rng.randint(0, 99999)}}
        s = json.dumps(r, ensure_ascii=False)
        recs.append(s)
        n += len(s.encode()) + 2
        i += 1
    return ("[" + ",\n".join(recs) + "]").encode()[:DATA_LEN]


@functools.lru_cache(maxsize=None)
def _html():
    rng = random.Random(16)
    parts, n, i = ["<!DOCTYPE html>\n<html><head><title>Kaze</title></head><body>\n"], 0, 0
    while n < DATA_LEN + 4096:
        s = ('<div class="row r%d"><a href="/item/%d?ref=list&amp;p=%d">Item %d</a> '
             '<span class="price">%d,%02d €</span><p>%s</p></div>\n'
             % (i % 7, i, rng.randint(1, 50), i, rng.randint(1, 999), rng.randint(0, 99),
                " ".join(rng.choice(["lorem", "ipsum", "dolor", "sit", "amet", "naïve", "café"])
                         for _ in range(rng.randint(3, 12)))))
        parts.append(s)
        n += len(s.encode())
        i += 1
    return "".join(parts).encode()[:DATA_LEN]


# (name, generator, message kind, compressible)
DATA_SETS = [
    ("human-readable text (German prose, UTF-8)", _prose, "text", True),
    ("8-bit greyscale bitmap 512x512", _bitmap, "binary", True),
    ("random bytes (incompressible)", _random, "binary", False),
    ("JSON records", _json, "text", True),
    ("HTML page", _html, "text", True),
]


def _utf8_fix(b):
    """Replace a code point cut at either end of a slice by '*' bytes."""
    b = bytearray(b)
    i = 0
    while i < min(3, len(b)) and b[i] & 0xC0 == 0x80:
        b[i] = 0x2A
        i += 1
    for back in range(1, min(4, len(b)) + 1):
        c = b[-back]
        if c & 0xC0 == 0x80:
            continue
        if c >= 0xC0:
            need = 2 if c < 0xE0 else 3 if c < 0xF0 else 4
            if need > back:
                b[len(b) - back:] = b"*" * back
        break
    return bytes(b)


def autobahn_messages(data, kind, size, count, start=0):
    """Consecutive slices of `data`, wrapping around (Autobahn's sendOne)."""
    out, ptr, n = [], start, len(data)
    for _ in range(count):
        end = ptr + size
        m = data[ptr:end] if end <= n else data[ptr:] + data[:end - n]
        ptr = end % n
        if kind == "text":
            m = _utf8_fix(m)
            assert valid_utf8(m)
        out.append((kind, m))
    return out


def window_probe(seed=17):
    """About 110 KiB of random blocks, each repeated right after itself: block sizes
    from 200 to 28000 bytes put back-references at every distance a window of 9..15
    bits can reach, so a compressor that uses a bigger window than agreed is caught."""
    rng = random.Random(seed)
    out = []
    for s in (200, 400, 900, 1800, 3600, 7200, 14400, 28000):
        blk = rng.randbytes(s)
        out += [blk, blk]
    return b"".join(out)


# ------------------------------------------------------------------ sizes

# Autobahn's MSG_SIZES: (payload length, auto-fragment size; 0: one frame). Autobahn
# sends 1000 messages of each; here the count is scaled to the size (at most
# BYTES_PER_CASE of payload per case, between MIN_COUNT and MAX_COUNT messages),
# so that groups 12 and 13 take about half a minute together.
MSG_SIZES = [(16, 0), (64, 0), (256, 0), (1024, 0), (4096, 0), (8192, 0), (16384, 0), (32768, 0),
             (65536, 0), (131072, 0), (8192, 256), (16384, 256), (32768, 256), (65536, 256),
             (131072, 256), (131072, 1024), (131072, 4096), (131072, 32768)]
MAX_COUNT, MIN_COUNT = 1000, 4
BYTES_PER_CASE = {"12": 2 * MIB, "13": 2 * MIB}


def _count(group, size):
    return max(MIN_COUNT, min(MAX_COUNT, BYTES_PER_CASE[group] // size))


# ------------------------------------------------------------------ judging

def want(snct=None, cnct=None, smwb_max=None, cmwb_max=None, smwb=None):
    """Expectations about the agreed parameters beyond RFC 7692's own rules (which
    check_pmd_answer applies): Kaze's documented choices per profile."""
    def chk(p):
        probs = []
        if snct is not None and p.server_no_context_takeover != snct:
            probs.append("server_no_context_takeover %s, expected %s" % (p.server_no_context_takeover, snct))
        if cnct is not None and p.client_no_context_takeover != cnct:
            probs.append("client_no_context_takeover %s, expected %s" % (p.client_no_context_takeover, cnct))
        if smwb_max is not None and p.server_max_window_bits > smwb_max:
            probs.append("server window %d, expected at most %d" % (p.server_max_window_bits, smwb_max))
        if smwb is not None and p.server_max_window_bits != smwb:
            probs.append("server window %d, expected %d" % (p.server_max_window_bits, smwb))
        if cmwb_max is not None and p.client_max_window_bits > cmwb_max:
            probs.append("client window %d, expected at most %d" % (p.client_max_window_bits, cmwb_max))
        return ["agreed %r: %s" % (p, "; ".join(probs))] if probs else []
    return chk


def _kaze_compression(conn, sent, min_size, compressible):
    """Kaze's documented compression choice (not RFC 7692's business): messages
    shorter than --deflate-min-size go uncompressed, longer compressible ones not."""
    if conn.pmd is None or min_size is None:
        return []
    for i, ((kind, payload), z) in enumerate(zip(sent, conn.compressed)):
        if len(payload) < min_size and z:
            return ["echo %d (%d bytes) came compressed, though shorter than --deflate-min-size %d"
                    % (i, len(payload), min_size)]
        if len(payload) >= min_size and compressible and not z:
            return ["echo %d (%d bytes of compressible data) came uncompressed; kaze echo compresses "
                    "messages of --deflate-min-size (%d) bytes and more" % (i, len(payload), min_size)]
    return []


def _close_normally(conn):
    problems = []
    if not conn.close_received and conn.tcp_end is None:
        conn.send_close(1000)
        conn.wait(lambda: conn.close_received, CLOSE_WAIT)
    if conn.close_received:
        conn.wait_tcp_end(CLOSE_WAIT)
    if not conn.close_received or conn.close_code not in (1000, None) or conn.tcp_end != "eof":
        problems.append("close: expected 1000 and a clean TCP close, got %s" % conn.describe_end())
    elif conn.close_initiator == "server":
        problems.append("the server closed first: %s" % conn.describe_end())
    return problems


def _messages(conn):
    return [e for e in conn.events if e[0] == "message"]


def _compare(sent, got, compressed):
    for i, ((kind, payload), e) in enumerate(zip(sent, got)):
        if e != ("message", kind, payload):
            extra = ""
            if e[1] == kind:
                for j, (a, b) in enumerate(zip(payload, e[2])):
                    if a != b:
                        extra = ", first difference at byte %d" % j
                        break
                else:
                    extra = ", lengths %d vs %d" % (len(payload), len(e[2]))
            return "echo %d: sent %s message of %d bytes, got %s message of %d bytes (%s)%s" % (
                i, kind, len(payload), e[1], len(e[2]), "compressed" if compressed[i] else "uncompressed",
                extra)
    if len(got) < len(sent):
        return "%d of %d echoes came" % (len(got), len(sent))
    if len(got) > len(sent):
        return "%d echoes for %d messages" % (len(got), len(sent))
    return None


def echo_session(host, port, offer, messages, frag=None, check=None, must_negotiate=True,
                 min_size=DEFAULT_MIN_SIZE, compressible=True, pipeline=False, compress=None):
    """One connection: offer, judge the answer, send each message (compressed when
    agreed; in frames of `frag` wire bytes) and wait for its echo (or, with
    pipeline, send all in one write), compare, close normally. -> problems."""
    conn = Conn(host, port, timeout=30.0)
    try:
        conn.connect()
        try:
            conn.handshake(extensions=offer)
        except HandshakeError as e:
            return ["handshake with offer %r: %s" % (offer, e)]
        problems = []
        if conn.pmd is None and must_negotiate:
            return ["kaze echo declined the valid offer %r (answer %r)"
                    % (offer, conn.resp_headers.get("sec-websocket-extensions"))]
        if conn.pmd is not None and check is not None:
            problems += check(conn.pmd)
        msgs = messages() if callable(messages) else messages
        compressed_sent = conn.pmd is not None if compress is None else compress
        if pipeline:
            conn.send_raw(b"".join(conn.message_frames(TEXT if k == "text" else BINARY, p, frag=frag,
                                                       compress=compress) for k, p in msgs))
            if not conn.wait(lambda: len(_messages(conn)) >= len(msgs), EVENT_WAIT):
                problems.append("waited %.0f s for %d echoes, got %d (%s)"
                                % (EVENT_WAIT, len(msgs), len(_messages(conn)), conn.describe_end()))
        else:
            for i, (kind, payload) in enumerate(msgs):
                conn.send_message(TEXT if kind == "text" else BINARY, payload, frag=frag, compress=compress)
                if not conn.wait(lambda: len(_messages(conn)) > i, EVENT_WAIT):
                    problems.append("no echo of message %d of %d (%s, %d bytes, sent %s) within %.0f s: %s"
                                    % (i + 1, len(msgs), kind, len(payload),
                                       "compressed" if compressed_sent else "uncompressed",
                                       EVENT_WAIT, conn.describe_end()))
                    break
                if _messages(conn)[i] != ("message", kind, payload):
                    break
        d = _compare(msgs, _messages(conn), conn.compressed)
        if d and not problems:
            problems.append(d)
        problems += ["protocol violation: " + v for v in conn.violations]
        if not problems:
            problems += _kaze_compression(conn, msgs, min_size, compressible)
        problems += _close_normally(conn)
        return problems
    except (OSError, Timeout) as e:
        return ["%s (%s)" % (e, conn.describe_end())]
    finally:
        conn.close_socket()


def _echo_case(cid, desc, offer, messages, profile="default", **kw):
    case(cid, desc, profile=profile,
         run=lambda host, port, pid=None: echo_session(host, port, offer, messages, **kw))


# ================================================================== group 12

for _j, (_dname, _gen, _kind, _comp) in enumerate(DATA_SETS, 1):
    for _i, (_size, _frag) in enumerate(MSG_SIZES, 1):
        _n = _count("12", _size)
        _echo_case("12.%d.%d" % (_j, _i),
                   "%s: %d %s messages of %d bytes%s, compressed, echoed one by one; offer %r"
                   % (_dname, _n, _kind, _size, " in frames of %d wire bytes" % _frag if _frag else "",
                      BROWSER_OFFER),
                   BROWSER_OFFER,
                   functools.partial(lambda g, k, s, n: autobahn_messages(g(), k, s, n), _gen, _kind, _size, _n),
                   frag=_frag or None, compressible=_comp,
                   check=want(snct=False, cnct=False, smwb=15))

# ================================================================== group 13
# Autobahn's offers: PerMessageDeflateOffer(requestNoContextTakeover,
# requestMaxWindowBits) always with client_no_context_takeover and a bare
# client_max_window_bits. A server window of 8 cannot be had from zlib, so a server
# may decline 13.3 and 13.5 (RFC 7692 7.1.2.1: it MAY decline any offer); if it
# accepts, its output is checked against an 8-bit window.

_AB = dict(cnct=True, cmwb=True)
OFFERS_13 = [
    ("Autobahn's default offer", [pmd_offer(**_AB)], want(cnct=True), True),
    ("server_no_context_takeover", [pmd_offer(snct=True, **_AB)], want(snct=True, cnct=True), True),
    ("server_max_window_bits=8", [pmd_offer(smwb=8, **_AB)], want(smwb=8), False),
    ("server_max_window_bits=15", [pmd_offer(smwb=15, **_AB)], want(smwb=15), True),
    ("server_no_context_takeover, server_max_window_bits=8", [pmd_offer(snct=True, smwb=8, **_AB)],
     want(snct=True, smwb=8), False),
    ("server_no_context_takeover, server_max_window_bits=15", [pmd_offer(snct=True, smwb=15, **_AB)],
     want(snct=True, smwb=15), True),
    # One header value with three offers, most wanted first.
    ("three offers: (snct, smwb=8), (snct), default",
     [", ".join([pmd_offer(snct=True, smwb=8, **_AB), pmd_offer(snct=True, **_AB), pmd_offer(**_AB)])],
     want(snct=True), True),
]

for _j, (_oname, _offer, _check, _must) in enumerate(OFFERS_13, 1):
    for _i, (_size, _frag) in enumerate(MSG_SIZES, 1):
        _n = _count("13", _size)
        _echo_case("13.%d.%d" % (_j, _i),
                   "JSON: %d text messages of %d bytes%s; offer %s %r" % (
                       _n, _size, " in frames of %d wire bytes" % _frag if _frag else "", _oname, _offer),
                   _offer,
                   functools.partial(lambda s, n: autobahn_messages(_json(), "text", s, n, start=s), _size, _n),
                   frag=_frag or None, check=_check, must_negotiate=_must)


# ================================================================== pmd: parameters

def _probe_msgs():
    """Window probes (binary), one JSON slice (text), twice over: with context
    takeover the repeats reach back into earlier messages."""
    p = window_probe()
    base = [("binary", p), ("text", _utf8_fix(_json()[:20000])), ("binary", p[::-1])]
    return base * 2


_PN = 1


def _pmd(desc, offer, messages=_probe_msgs, profile="default", **kw):
    global _PN
    _echo_case("pmd.%d" % _PN, desc, offer, messages, profile=profile, **kw)
    _PN += 1


for _b in range(8, 16):
    _pmd("client_max_window_bits=%d: answer within it, our compressor at the agreed window" % _b,
         pmd_offer(cmwb=_b), check=want(cmwb_max=_b))
for _b in range(8, 16):
    _pmd("server_max_window_bits=%d: answered with %d or less (or declined, for 8), and the server's "
         "output fits that window" % (_b, _b), pmd_offer(smwb=_b), check=want(smwb_max=_b),
         must_negotiate=_b > 8)
_pmd("all four parameters, windows of 9", pmd_offer(snct=True, cnct=True, smwb=9, cmwb=9),
     check=want(snct=True, cnct=True, smwb_max=9, cmwb_max=9))
_pmd("server and client no_context_takeover", pmd_offer(snct=True, cnct=True),
     check=want(snct=True, cnct=True))
_pmd("quoted values: client_max_window_bits=\"10\"; server_max_window_bits=\"12\" (RFC 6455 9.1)",
     PMD + '; client_max_window_bits="10"; server_max_window_bits="12"', check=want(smwb_max=12, cmwb_max=10))
_pmd("no whitespace around ';' and '=': permessage-deflate;server_max_window_bits=11",
     PMD + ";server_max_window_bits=11", check=want(smwb_max=11))
_pmd("offers on two header lines: (server_max_window_bits=8), (snct; server_max_window_bits=11)",
     [pmd_offer(smwb=8), pmd_offer(snct=True, smwb=11)], check=want(snct=True, smwb_max=11))
_pmd("invalid offer (server_max_window_bits=16) then a valid one: the valid one is accepted",
     [PMD + "; server_max_window_bits=16, " + pmd_offer(cmwb=True)], check=want(smwb=15))
_pmd("unknown extension first, then permessage-deflate: only permessage-deflate is answered",
     ["x-kaze-unknown; a=1, " + PMD])
_pmd("offer without client_max_window_bits: the answer must not have it (RFC 7692 7.1.2.2)", PMD)
_pmd("30 invalid offers, then a valid one: the valid one is accepted",
     [", ".join([PMD + "; server_max_window_bits=%d" % (16 + i) for i in range(30)] + [pmd_offer(snct=True)])],
     check=want(snct=True))
_pmd("100 compressed text and binary messages of mixed sizes pipelined in one write",
     BROWSER_OFFER, messages=lambda: [(k, m) for i in range(20) for k, m in [
         ("text", _utf8_fix(_json()[i * 997:i * 997 + (i * 131) % 3000])),
         ("binary", _bitmap()[i * 4001:i * 4001 + 64 + i * 50]),
         ("text", b"short %d" % i), ("binary", _random()[i * 500:i * 500 + 200]),
         ("text", _prose()[:0])]], pipeline=True, compressible=False)
_pmd("a 4 MiB JSON message in 64 KiB frames, context takeover, twice",
     BROWSER_OFFER, messages=lambda: [("text", (_json() * 16)[:4 * MIB])] * 2, frag=64 * KIB)
_pmd("16 MiB (the default limit) of compressible text, compressed: echoed",
     BROWSER_OFFER, messages=lambda: [("text", (_prose() * 64)[:16 * MIB])])
# The limit is on the message, i.e. the inflated size; the compressed form of random
# bytes is a little larger than the bytes themselves.
_pmd("16 MiB (the default limit) of random bytes, compressed (so larger on the wire) in 1 MiB frames: echoed",
     BROWSER_OFFER, messages=lambda: [("binary", random.Random(18).randbytes(16 * MIB))], frag=MIB,
     compressible=False)


def _mixed_compress(host, port, pid=None):
    """Compressed, uncompressed, compressed again: RSV1 is per message (RFC 7692 6)."""
    conn = Conn(host, port, timeout=30.0)
    try:
        conn.connect()
        conn.handshake(extensions=BROWSER_OFFER)
        if conn.pmd is None:
            return ["kaze echo declined %r" % BROWSER_OFFER]
        m = _utf8_fix(_json()[:3000])
        sent = []
        for i, z in enumerate([True, False, True, False, True]):
            conn.send_message(TEXT, m, compress=z)
            sent.append(("text", m))
            if not conn.wait(lambda: len(_messages(conn)) > i, EVENT_WAIT):
                break
        problems = ["protocol violation: " + v for v in conn.violations]
        d = _compare(sent, _messages(conn), conn.compressed)
        if d:
            problems.append(d)
        return problems + _close_normally(conn)
    except (OSError, HandshakeError, Timeout) as e:
        return ["%s (%s)" % (e, conn.describe_end())]
    finally:
        conn.close_socket()


case("pmd.%d" % _PN, "compressed, uncompressed, compressed, uncompressed, compressed: all echoed",
     run=_mixed_compress)
_PN += 1


def _crafted_echo(frames_of, expect_events, offer=BROWSER_OFFER, match=None):
    """Send hand-made frames (built from the agreed parameters); expect these echoes."""
    def run(host, port, pid=None):
        conn = Conn(host, port, timeout=30.0)
        try:
            conn.connect()
            conn.handshake(extensions=offer)
            if conn.pmd is None:
                return ["kaze echo declined %r" % offer]
            conn.send_raw(frames_of(conn))
            conn.wait(lambda: len(data_events(conn)) >= len(expect_events) or conn.close_received, EVENT_WAIT)
            problems = ["protocol violation: " + v for v in conn.violations]
            evs = data_events(conn)
            p = match(evs) if match else (None if evs == expect_events else diff_events(expect_events, evs))
            if p:
                problems.append(p)
            return problems + _close_normally(conn)
        except (OSError, HandshakeError, Timeout) as e:
            return ["%s (%s)" % (e, conn.describe_end())]
        finally:
            conn.close_socket()
    return run


def _z(data, **kw):
    return deflate_raw(data, **kw)


_PN_EMPTY = [
    ("empty text with an empty compressed payload (only the removed tail)",
     lambda c: build_frame(TEXT, b"", rsv=4), [msg("text", b"")]),
    ("empty binary as the single byte 0x00 (RFC 7692 7.2.3.6)",
     lambda c: build_frame(BINARY, b"\x00", rsv=4), [msg("binary", b"")]),
    ("empty compressed text in three empty frames",
     lambda c: build_frame(TEXT, b"", rsv=4, fin=False) + build_frame(CONT, b"", fin=False)
     + build_frame(CONT, b""), [msg("text", b"")]),
    # RFC 7692 7.2.3.4: a message may end with a block with BFINAL set (the Z_FINISH
    # output as it is); the next message then starts a new DEFLATE stream.
    ("message ending with BFINAL set (RFC 7692 7.2.3.4), then a normal one",
     lambda c: build_frame(TEXT, _z(b"Hello, final block! " * 10, final=True), rsv=4)
     + build_frame(TEXT, _z(b"and the next message " * 10), rsv=4),
     [msg("text", b"Hello, final block! " * 10), msg("text", b"and the next message " * 10)]),
    ("the example of RFC 7692 7.2.3.1: 'Hello' as f2 48 cd c9 c9 07 00",
     lambda c: build_frame(TEXT, bytes.fromhex("f248cdc9c90700"), rsv=4), [msg("text", "Hello")]),
    ("the example of RFC 7692 7.2.3.1 in two fragments: f2 48 cd / c9 c9 07 00",
     lambda c: build_frame(TEXT, bytes.fromhex("f248cd"), rsv=4, fin=False)
     + build_frame(CONT, bytes.fromhex("c9c90700")), [msg("text", "Hello")]),
    ("the example of RFC 7692 7.2.3.3: 'Hello' in a stored block (00 05 00 fa ff 48 65 6c 6c 6f 00)",
     lambda c: build_frame(TEXT, bytes.fromhex("000500faff48656c6c6f00"), rsv=4), [msg("text", "Hello")]),
    ("the example of RFC 7692 7.2.3.2: 'Hello' twice, the second referring to the first",
     lambda c: build_frame(TEXT, bytes.fromhex("f248cdc9c90700"), rsv=4)
     + build_frame(TEXT, bytes.fromhex("f200110000"), rsv=4), [msg("text", "Hello"), msg("text", "Hello")]),
]
for _desc, _frames, _exp in _PN_EMPTY:
    case("pmd.%d" % _PN, _desc, run=_crafted_echo(_frames, _exp))
    _PN += 1

_HW_Z = deflate_raw(b"Hello, compressed World! " * 8)
_PING_FRAGS = b"".join(build_frame(TEXT if i == 0 else CONT, _HW_Z[i:i + 1], fin=i == len(_HW_Z) - 1,
                                   rsv=4 if i == 0 else 0)
                       + (build_frame(PING, b"p%d" % i) if i % 5 == 0 else b"")
                       for i in range(len(_HW_Z)))
_PING_EXPECT = ([pong(b"p%d" % i) for i in range(0, len(_HW_Z), 5)]
                + [msg("text", b"Hello, compressed World! " * 8)])


def _msgs_then_pongs(expected):
    want_msgs = [e for e in expected if e[0] == "message"]
    want_pongs = [e for e in expected if e[0] == "pong"]

    def m(evs):
        got_m = [e for e in evs if e[0] == "message"]
        got_p = [e for e in evs if e[0] == "pong"]
        if got_m != want_msgs:
            return "messages: " + diff_events(want_msgs, got_m)
        if got_p != want_pongs:
            return "pongs: " + diff_events(want_pongs, got_p)
        return None
    return m


case("pmd.%d" % _PN, "compressed message in 1-byte frames with pings between them",
     run=_crafted_echo(lambda c: _PING_FRAGS, _PING_EXPECT, match=_msgs_then_pongs(_PING_EXPECT)))
_PN += 1
# Inflated pieces end wherever the DEFLATE data happens to be cut, so the UTF-8
# check must carry its state from piece to piece.
_KZ = deflate_raw("κόσμε €𝄞 ".encode() * 60)
case("pmd.%d" % _PN, "compressed multi-byte text in 1-byte frames: echoed",
     run=_crafted_echo(lambda c: b"".join(build_frame(TEXT if i == 0 else CONT, _KZ[i:i + 1],
                                                      fin=i == len(_KZ) - 1, rsv=4 if i == 0 else 0)
                                          for i in range(len(_KZ))),
                       [msg("text", "κόσμε €𝄞 ".encode() * 60)]))
_PN += 1


def _many_conns(n_conns, rounds, offer=BROWSER_OFFER, check=None):
    """Several connections at once, messages interleaved: every connection's
    compression state is its own (or, shared, reset after each message)."""
    def run(host, port, pid=None):
        conns = [Conn(host, port, timeout=30.0) for _ in range(n_conns)]
        problems = []
        try:
            for c in conns:
                c.connect()
                c.handshake(extensions=offer)
                if c.pmd is None:
                    return ["kaze echo declined %r" % offer]
                if check:
                    problems += check(c.pmd)
            sent = [[] for _ in conns]
            js = _json()
            for r in range(rounds):
                for k, c in enumerate(conns):
                    m = _utf8_fix(js[(r * 7 + k) * 1500:(r * 7 + k) * 1500 + 1000 + 300 * k])
                    c.send_message(TEXT, m)
                    sent[k].append(("text", m))
                for k, c in enumerate(conns):
                    if not c.wait(lambda: len(_messages(c)) > r, EVENT_WAIT):
                        return problems + ["connection %d: no echo of message %d (%s)" % (k, r, c.describe_end())]
            for k, c in enumerate(conns):
                problems += ["connection %d: protocol violation: %s" % (k, v) for v in c.violations]
                d = _compare(sent[k], _messages(c), c.compressed)
                if d:
                    problems.append("connection %d: %s" % (k, d))
                problems += ["connection %d: %s" % (k, p) for p in _close_normally(c)]
            return problems
        except (OSError, HandshakeError, Timeout) as e:
            return ["%s" % e]
        finally:
            for c in conns:
                c.close_socket()
    return run


case("pmd.%d" % _PN, "4 connections with context takeover, messages interleaved: each keeps its own state",
     run=_many_conns(4, 25))
_PN += 1


# ================================================================== pmdneg: declined offers

def _declined(offer, allow_400=False):
    """The server must decline (101 without the extension; RFC 7692 5: a server
    declines an offer it does not accept), the connection then works uncompressed,
    and RSV1 on a message fails it (1002), as nothing defines RSV1 now. allow_400:
    the header breaks RFC 6455 9.1's grammar, so refusing the handshake is also right."""
    def run(host, port, pid=None):
        conn = Conn(host, port, timeout=30.0)
        try:
            conn.connect()
            key, req = conn.request(extra_headers=[("Sec-WebSocket-Extensions", offer)])
            conn.send_raw(req)
            status, h, _ = conn.read_http_response(time.monotonic() + EVENT_WAIT)
            if status == 400 and allow_400:
                return []
            if status != 101:
                return ["status %d to the offer %r, expected 101%s: %s" % (
                    status, offer, " or 400" if allow_400 else "", short(conn.resp_raw, 200))]
            ans = h.get("sec-websocket-extensions")
            if ans is not None:
                return ["the server accepted the invalid offer %r with %r" % (offer, ans)]
            conn._parse()
            problems = []
            conn.send_frame(TEXT, "uncompressed after a declined offer")
            if not conn.wait(lambda: data_events(conn), EVENT_WAIT) or \
                    data_events(conn) != [msg("text", "uncompressed after a declined offer")]:
                problems.append("echo: %s, %s" % (describe_events(data_events(conn)), conn.describe_end()))
            conn.send_frame(TEXT, deflate_raw(b"compressed anyway"), rsv=4)
            conn.wait(lambda: conn.close_received, FAIL_WAIT)
            if conn.close_received:
                conn.wait_tcp_end(CLOSE_WAIT)
            if not conn.close_received or conn.close_code != 1002 or conn.tcp_end != "eof":
                problems.append("RSV1 without permessage-deflate: expected close 1002 and FIN, got %s"
                                % conn.describe_end())
            problems += ["protocol violation: " + v for v in conn.violations]
            return problems
        except (OSError, HandshakeError, Timeout) as e:
            return ["%s (%s)" % (e, conn.describe_end())]
        finally:
            conn.close_socket()
    return run


_INVALID_OFFERS = [
    ("unknown parameter", PMD + "; foo"),
    ("unknown parameter with a value", PMD + "; foo=bar"),
    ("server_no_context_takeover twice", PMD + "; server_no_context_takeover; server_no_context_takeover"),
    ("client_no_context_takeover twice", PMD + "; client_no_context_takeover; client_no_context_takeover"),
    ("client_max_window_bits twice", PMD + "; client_max_window_bits=10; client_max_window_bits=10"),
    ("server_max_window_bits twice", PMD + "; server_max_window_bits=10; server_max_window_bits=12"),
    ("server_max_window_bits=16", PMD + "; server_max_window_bits=16"),
    ("server_max_window_bits=7", PMD + "; server_max_window_bits=7"),
    ("server_max_window_bits=0", PMD + "; server_max_window_bits=0"),
    ("server_max_window_bits=08 (leading zero)", PMD + "; server_max_window_bits=08"),
    ("server_max_window_bits=abc", PMD + "; server_max_window_bits=abc"),
    ("server_max_window_bits=-9", PMD + "; server_max_window_bits=-9"),
    ("server_max_window_bits without a value", PMD + "; server_max_window_bits"),
    ("client_max_window_bits=16", PMD + "; client_max_window_bits=16"),
    ("client_max_window_bits=7", PMD + "; client_max_window_bits=7"),
    ("client_max_window_bits=010", PMD + "; client_max_window_bits=010"),
    ("server_no_context_takeover with a value", PMD + "; server_no_context_takeover=1"),
    ("client_no_context_takeover with a quoted value", PMD + '; client_no_context_takeover="x"'),
    ("a different extension only (x-webkit-deflate-frame)", "x-webkit-deflate-frame"),
    ("permessage-deflate as a parameter of another extension", "x-foo; permessage-deflate"),
    ("two invalid offers", PMD + "; server_max_window_bits=20, " + PMD + "; bar"),
]
for _i, (_desc, _offer) in enumerate(_INVALID_OFFERS, 1):
    case("pmdneg.%d" % _i, "%s: declined, uncompressed echo, then RSV1 fails with 1002: %r" % (_desc, _offer),
         run=_declined(_offer))
_n = len(_INVALID_OFFERS)
for _k, (_desc, _offer) in enumerate([
        ("trailing ';'", PMD + ";"),
        ("empty parameter", PMD + "; ; server_no_context_takeover"),
        ("'=' without a value", PMD + "; server_max_window_bits="),
        ("an empty quoted value (not a token once unquoted)", PMD + '; server_max_window_bits=""'),
        ("unterminated quoted value", PMD + '; client_max_window_bits="10'),
        ("space inside a token", PMD + "; server_max window_bits=10")], _n + 1):
    case("pmdneg.%d" % _k, "%s breaks the RFC 6455 9.1 grammar: 400, or declined: %r" % (_desc, _offer),
         run=_declined(_offer, allow_400=True))


# ================================================================== pmderr: errors and limits

def Z(opcode, payload, frag=None, compress=None, sync=False):
    """Send a message with the connection's own compressor (per the agreed parameters)."""
    def act(ctx):
        ctx.conn.send_message(opcode, payload, frag=frag, compress=compress)
        if sync:
            ctx.conn.pump(cases.SYNC_PAUSE)
    return act


def CRAFT(data, chop=None):
    """Send hand-made frames. Our compressor then starts afresh: the server's window
    now holds data that our compressor never saw."""
    def act(ctx):
        ctx.conn.send_raw(data(ctx.conn) if callable(data) else data, chop=chop)
        ctx.conn._tx = None
    return act


def PMD_AGREED(ctx):
    if ctx.conn.pmd is None:
        ctx.problems.append("kaze echo declined the offer, so nothing here is compressed")


def _err(cid, desc, actions, expect, close, offer=BROWSER_OFFER, profile="default", after=None):
    case(cid, desc, [PMD_AGREED] + actions, expect, close, extensions=offer, profile=profile, after=after)


_HELLO = b"Hello, compressed World! " * 4
_HZ = deflate_raw(_HELLO)
_KOSME = "κόσμε".encode()
_BAD_UTF8 = _KOSME * 30 + b"\xed\xa0\x80" + b"edited" * 20  # a UTF-16 surrogate inside


def _sync_parts(parts, wbits=15):
    """One message's DEFLATE data in pieces, each sync-flushed, so that each piece
    inflates completely by itself; the last piece without the tail."""
    c = zlib.compressobj(6, zlib.DEFLATED, -wbits)
    out = [c.compress(p) + c.flush(zlib.Z_SYNC_FLUSH) for p in parts]
    out[-1] = out[-1][:-4]
    return out


def _stream_messages(parts, wbits=15):
    """Several messages from one compressor (context takeover): each without its tail."""
    c = zlib.compressobj(6, zlib.DEFLATED, -wbits)
    return [(c.compress(p) + c.flush(zlib.Z_SYNC_FLUSH))[:-4] for p in parts]


_E = []  # (desc, actions, expect, close): on the default server and the shared-mode one


def _e(desc, actions, expect, close):
    _E.append((desc, actions, expect, close))


_e("RSV1 on a continuation frame of a compressed message: 1002",
   [CRAFT(build_frame(TEXT, _HZ[:10], rsv=4, fin=False) + build_frame(CONT, _HZ[10:], rsv=4))], [], FAIL(1002))
_e("RSV1 on a continuation frame of an uncompressed message: 1002",
   [CRAFT(build_frame(TEXT, b"fragment1", fin=False) + build_frame(CONT, _HZ, rsv=4))], [], FAIL(1002))
_e("RSV1 on the last of three frames: echo of an earlier message, then 1002",
   [Z(TEXT, _HELLO), CRAFT(build_frame(BINARY, _HZ[:5], rsv=4, fin=False) + build_frame(CONT, _HZ[5:10], fin=False)
                           + build_frame(CONT, _HZ[10:], rsv=4))], [msg("text", _HELLO)], FAIL(1002))
_e("first frame of a compressed message, then close: clean close, no message",
   [CRAFT(build_frame(TEXT, _HZ[:10], rsv=4, fin=False)), cases.CLOSE_FRAME(1000)], [], cases.REPLY(1000))
_e("RSV1 on a ping: 1002", [CRAFT(build_frame(PING, b"ping", rsv=4))], [], FAIL(1002))
_e("RSV1 on a ping between the frames of a compressed message: 1002",
   [CRAFT(build_frame(TEXT, _HZ[:10], rsv=4, fin=False) + build_frame(PING, b"ping", rsv=4)
          + build_frame(CONT, _HZ[10:]))], [], FAIL(1002))
_e("RSV1 on a pong: 1002", [CRAFT(build_frame(PONG, b"pong", rsv=4))], [], FAIL(1002))
_e("RSV1 on a close: 1002", [CRAFT(build_frame(CLOSE, close_payload(1000), rsv=4))], [], FAIL(1002))
_e("RSV2 on a text frame (permessage-deflate only defines RSV1): 1002",
   [CRAFT(build_frame(TEXT, b"rsv2", rsv=2))], [], FAIL(1002))
_e("RSV3 on a compressed binary frame: 1002", [CRAFT(build_frame(BINARY, _HZ, rsv=5))], [], FAIL(1002))
_e("compressed text that inflates to invalid UTF-8: 1007",
   [CRAFT(build_frame(TEXT, deflate_raw(_BAD_UTF8), rsv=4))], [], FAIL(1007))
_e("compressed text, invalid UTF-8 in a later message: echo, then 1007",
   [Z(TEXT, _KOSME * 10), CRAFT(build_frame(TEXT, deflate_raw(b"ok \xff\xfe not ok"), rsv=4))],
   [msg("text", _KOSME * 10)], FAIL(1007))
_P1, _P2, _P3 = _KOSME * 40, b"\xf4\x90\x80\x80", b"edited" * 40
_F1, _F2, _F3 = _sync_parts([_P1, _P2, _P3])
_e("compressed text in 3 frames, the 2nd inflates to invalid UTF-8: 1007 before the 3rd is sent",
   [CRAFT(build_frame(TEXT, _F1, rsv=4, fin=False)), QUIET(1.0, "after the valid first frame"),
    CRAFT(build_frame(CONT, _F2, fin=False)), CLOSED_WITHIN(FAST_WAIT, "after the frame that makes it invalid"),
    CRAFT(build_frame(CONT, _F3))], [], FAIL(1007))
_V1, _V2 = _sync_parts([b"split " + "🌍".encode()[:2], "🌍".encode()[2:] + b" joined"])
_e("compressed text with a 4-byte character split across two frames (each inflating by itself): echoed",
   [CRAFT(build_frame(TEXT, _V1, rsv=4, fin=False) + build_frame(CONT, _V2))],
   [msg("text", "split 🌍 joined")], NORMAL)
_e("compressed text that ends inside a 3-byte character: 1007",
   [CRAFT(build_frame(TEXT, deflate_raw(_KOSME * 10 + "€".encode()[:2]), rsv=4))], [], FAIL(1007))
_e("corrupt DEFLATE data: a block of the reserved type 3 (ff ff ff): 1007",
   [CRAFT(build_frame(BINARY, b"\xff\xff\xff", rsv=4))], [], FAIL(1007))
_e("corrupt DEFLATE data: a stored block whose NLEN is not ~LEN: 1007",
   [CRAFT(build_frame(BINARY, bytes.fromhex("000500000048656c6c6f"), rsv=4))], [], FAIL(1007))
_e("corrupt DEFLATE data: a back-reference before the start of the stream: 1007",
   [CRAFT(build_frame(TEXT, deflate_raw(b"abcdefghijklmnopqrstuvwxyz" * 4, zdict=b"abcdefghijklmnopqrstuvwxyz"),
                      rsv=4))], [], FAIL(1007))
_e("corrupt DEFLATE data: invalid Huffman code lengths (dynamic block 05 e0 ff ff): 1007",
   [CRAFT(build_frame(TEXT, bytes.fromhex("05e0ffff") + b"\x00" * 8, rsv=4))], [], FAIL(1007))
_e("corrupt DEFLATE data in the 2nd frame of a message: 1007",
   [CRAFT(build_frame(BINARY, _HZ[:8], rsv=4, fin=False) + build_frame(CONT, b"\xff\xff\xff\xff"))],
   [], FAIL(1007))
_e("valid compressed message, then a corrupt one: echo, then 1007",
   [Z(BINARY, _HELLO), CRAFT(build_frame(BINARY, b"\xff\xff", rsv=4))], [msg("binary", _HELLO)], FAIL(1007))
# A reference into the previous message is fine with context takeover (the default)...
_e("back-reference into the previous message (context takeover agreed): echoed",
   [CRAFT(lambda c: b"".join(build_frame(TEXT, z, rsv=4) for z in _stream_messages([_HELLO, _HELLO])))],
   [msg("text", _HELLO), msg("text", _HELLO)], NORMAL)

for _i, (_desc, _acts, _exp, _close) in enumerate(_E, 1):
    _err("pmderr.%d" % _i, _desc, _acts, _exp, _close)
_EN = len(_E) + 1


# Limits. RFC 6455 10.4 / 7.4.1: 1009 for a message too big to process; for a
# compressed message what counts is its inflated size, and inflating must stop at the
# limit (STYLE.md habit 14) rather than after the whole bomb.

RSS_LIMIT = 64 * MIB


def _status(pid):
    out = {}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "VmHWM"):
                    out[k] = int(v.split()[0]) * 1024
    except (OSError, ValueError, TypeError):
        pass
    return out


def _rss_bounded(conn, pid):
    """After the bomb: the server's resident memory, now and at its peak (VmHWM: the
    deflate-1m server runs nothing bigger than 1 MiB messages), under RSS_LIMIT."""
    if pid is None:
        return ["no server pid to check memory"]
    st = _status(pid)
    if "VmRSS" not in st:
        return ["cannot read /proc/%s/status" % pid]
    probs = []
    for k in ("VmRSS", "VmHWM"):
        if st.get(k, 0) >= RSS_LIMIT:
            probs.append("kaze echo's %s is %.1f MiB after the bomb, expected under %d MiB"
                         % (k, st[k] / MIB, RSS_LIMIT // MIB))
    return probs


@functools.lru_cache(maxsize=None)
def _bomb(n=64 * MIB, byte=b"\0", level=9):
    """n bytes of one value, compressed: about n/1030 bytes (64 KiB for 64 MiB)."""
    c = zlib.compressobj(level, zlib.DEFLATED, -15, 9)
    chunk = byte * MIB
    z = b"".join(c.compress(chunk) for _ in range(n // MIB)) + c.compress(byte * (n % MIB))
    z += c.flush(zlib.Z_SYNC_FLUSH)
    return z[:-4]


def _bomb_frames(opcode, frag):
    def frames(conn):
        z = _bomb(byte=b"a" if opcode == TEXT else b"\0")
        return [build_frame(opcode if off == 0 else CONT, z[off:off + frag], fin=off + frag >= len(z),
                            rsv=4 if off == 0 else 0) for off in range(0, len(z), frag)]
    return frames


def BOMB_FRAGMENTS(opcode, frag, first):
    """The bomb in frames of `frag` wire bytes; the first `first` of them inflate past
    1 MiB, so the close must come before the next one is sent (fail fast)."""
    def act(ctx):
        fr = _bomb_frames(opcode, frag)(ctx.conn)
        c = ctx.conn
        c.send_raw(b"".join(fr[:first]))
        if not c.wait(lambda: c.close_received, FAST_WAIT):
            ctx.problems.append("no close within %.0f s after the first %d frames of %d bytes, which inflate "
                                "to about %d MiB (%s)" % (FAST_WAIT, first, frag, first * frag * 1030 // MIB,
                                                         c.describe_end()))
            c.send_raw(b"".join(fr[first:]))
    return act


_LIMITS = [
    ("compressed message inflating to exactly 1 MiB (the limit): echoed",
     [Z(TEXT, (_prose() * 5)[:MIB])], [msg("text", (_prose() * 5)[:MIB])], NORMAL, None),
    ("compressed message inflating to 1 MiB + 1: 1009",
     [Z(BINARY, (_bitmap() * 5)[:MIB + 1])], [], FAIL(1009), None),
    ("compressed message of 1 MiB + 1 in frames of 300 wire bytes: 1009",
     [Z(TEXT, (_prose() * 5)[:MIB + 1], frag=300)], [], FAIL(1009), None),
    ("bomb: 64 KiB inflating to 64 MiB of zeros, one binary frame: 1009 at once, memory bounded",
     [CRAFT(lambda c: build_frame(BINARY, _bomb(), rsv=4))], [], FAIL(1009), _rss_bounded),
    ("bomb: 64 MiB of 'a' as text in 4 KiB frames: 1009 after the first frame, memory bounded",
     [BOMB_FRAGMENTS(TEXT, 4096, 1)], [], FAIL(1009), _rss_bounded),
    # 1024 bytes of it inflate to 1042580 bytes, just under 1 MiB; 2048 to 2 MiB.
    ("bomb: 64 MiB of zeros in 1 KiB frames: 1009 after the second frame, memory bounded",
     [BOMB_FRAGMENTS(BINARY, 1024, 2)], [], FAIL(1009), _rss_bounded),
    ("bomb after a valid compressed message (context takeover): echo, then 1009, memory bounded",
     [Z(TEXT, _HELLO), CRAFT(lambda c: build_frame(BINARY, _bomb(), rsv=4))], [msg("text", _HELLO)],
     FAIL(1009), _rss_bounded),
]
for _i, (_desc, _acts, _exp, _close, _after) in enumerate(_LIMITS, _EN):
    _err("pmderr.%d" % _i, "kaze echo --max-message 1M: " + _desc, _acts, _exp, _close,
         profile="deflate-1m", after=_after)
_EN += len(_LIMITS)
_err("pmderr.%d" % _EN, "default 16 MiB limit: bomb of 64 MiB in one frame: 1009",
     [CRAFT(lambda c: build_frame(BINARY, _bomb(), rsv=4))], [], FAIL(1009))
_err("pmderr.%d" % (_EN + 1), "default 16 MiB limit: compressed 16 MiB + 1 of text in 1 MiB frames: 1009",
     [Z(TEXT, (_prose() * 65)[:16 * MIB + 1], frag=MIB)], [], FAIL(1009))


# ================================================================== pmdw: a small window
# kaze echo --deflate-window 9 --deflate-mem-level 1 --deflate-min-size 0: the server
# answers server_max_window_bits=9 (it must say so when below 15), its output must fit
# 512 bytes, and everything it sends is compressed, empty messages too.

_W = [
    ("browser offer: server_max_window_bits=9 answered, output fits it", BROWSER_OFFER, want(smwb=9)),
    ("offer server_max_window_bits=12: answered with 9", pmd_offer(smwb=12), want(smwb=9)),
    ("offer server_no_context_takeover, client_max_window_bits=9", pmd_offer(snct=True, cmwb=9),
     want(snct=True, smwb=9, cmwb_max=9)),
    ("Autobahn's default offer", AUTOBAHN_OFFER, want(smwb=9, cnct=True)),
]
for _i, (_desc, _offer, _chk) in enumerate(_W, 1):
    _echo_case("pmdw.%d" % _i, _desc + "; window probes and JSON", _offer, _probe_msgs, profile="deflate-w9",
               check=_chk, min_size=0)
_echo_case("pmdw.%d" % (len(_W) + 3), "offer server_max_window_bits=8: declined, or accepted with 8",
           pmd_offer(smwb=8), _probe_msgs, profile="deflate-w9", check=want(smwb=8), must_negotiate=False,
           min_size=0)
_echo_case("pmdw.%d" % (len(_W) + 1), "empty, 1-byte and 63-byte messages: all come compressed (min size 0)",
           BROWSER_OFFER, [("text", b""), ("binary", b""), ("text", b"x"), ("binary", b"\x00"),
                           ("text", b"y" * 63), ("binary", bytes(range(63)))],
           profile="deflate-w9", check=want(smwb=9), min_size=0)
_echo_case("pmdw.%d" % (len(_W) + 2), "Autobahn 12.1.x sizes of prose, one each, in 256-byte frames",
           BROWSER_OFFER,
           lambda: [m for s, _ in MSG_SIZES[:10] for m in autobahn_messages(_prose(), "text", s, 1)],
           profile="deflate-w9", frag=256, check=want(smwb=9), min_size=0)


# ================================================================== pmdsh: shared compressor
# kaze echo --deflate-mode shared: one compressor per thread, reset after each message,
# so the server always answers server_no_context_takeover, and each of its messages
# must inflate with a fresh inflater (wsclient starts one per message).

_SN = 1


def _sh(desc, offer, messages, **kw):
    global _SN
    kw.setdefault("check", want(snct=True))
    _echo_case("pmdsh.%d" % _SN, desc, offer, messages, profile="deflate-shared", **kw)
    _SN += 1


for _j, (_dname, _gen, _kind, _comp) in enumerate(DATA_SETS, 1):
    _sh("%s: one of each Autobahn 12.%d size, in frames as listed there" % (_dname, _j), BROWSER_OFFER,
        functools.partial(lambda g, k: [m for s, _ in MSG_SIZES[:10] for m in autobahn_messages(g(), k, s, 2)],
                          _gen, _kind), compressible=_comp)
for _j, (_oname, _offer, _check, _must) in enumerate(OFFERS_13, 1):
    _sh("13.%d's offer (%s): server_no_context_takeover answered" % (_j, _oname), _offer,
        lambda: [m for s in (16, 256, 4096, 65536) for m in autobahn_messages(_json(), "text", s, 3)],
        must_negotiate=_must)
_sh("server_max_window_bits=10: the connection's output fits 10 bits", pmd_offer(smwb=10), _probe_msgs,
    check=want(snct=True, smwb_max=10))
_sh("client_max_window_bits=9, client_no_context_takeover", pmd_offer(cnct=True, cmwb=9), _probe_msgs,
    check=want(snct=True, cnct=True, cmwb_max=9))
_sh("the same message 5 times (a server that kept its context would refer back)", BROWSER_OFFER,
    lambda: [("text", _utf8_fix(_json()[:5000]))] * 5)
case("pmdsh.%d" % _SN, "4 connections, messages interleaved: the shared compressor serves them all",
     profile="deflate-shared", run=_many_conns(4, 25, check=want(snct=True)))
_SN += 1
for _desc, _acts, _exp, _close in _E:
    _err("pmdsh.%d" % _SN, _desc, _acts, _exp, _close, profile="deflate-shared")
    _SN += 1
_err("pmdsh.%d" % _SN, "bomb of 64 MiB in one frame: 1009",
     [CRAFT(lambda c: build_frame(BINARY, _bomb(), rsv=4))], [], FAIL(1009), profile="deflate-shared")
_SN += 1
for _desc, _offer in [_INVALID_OFFERS[k] for k in (0, 2, 6, 7, 16, 19)]:
    case("pmdsh.%d" % _SN, "%s: declined, uncompressed echo, then RSV1 fails with 1002: %r" % (_desc, _offer),
         profile="deflate-shared", run=_declined(_offer))
    _SN += 1


# ================================================================== pmdoff: no deflate

def _not_negotiated(offer):
    def run(host, port, pid=None):
        conn = Conn(host, port, timeout=30.0)
        try:
            conn.connect()
            try:
                conn.handshake(extensions=offer)
            except HandshakeError as e:
                return ["handshake: %s" % e]
            if conn.pmd is not None or "sec-websocket-extensions" in conn.resp_headers:
                return ["kaze echo --no-deflate answered %r" % conn.resp_headers.get("sec-websocket-extensions")]
            problems = []
            big = _utf8_fix(_json()[:70000])
            for i, m in enumerate([b"plain", big]):
                conn.send_message(TEXT, m)
                if not conn.wait(lambda: len(_messages(conn)) > i, EVENT_WAIT):
                    return ["no echo (%s)" % conn.describe_end()]
            d = _compare([("text", b"plain"), ("text", big)], _messages(conn), conn.compressed)
            if d:
                problems.append(d)
            conn.send_frame(TEXT, deflate_raw(b"compressed anyway"), rsv=4)
            conn.wait(lambda: conn.close_received, FAIL_WAIT)
            if conn.close_received:
                conn.wait_tcp_end(CLOSE_WAIT)
            if not conn.close_received or conn.close_code != 1002 or conn.tcp_end != "eof":
                problems.append("RSV1 without permessage-deflate: expected close 1002 and FIN, got %s"
                                % conn.describe_end())
            problems += ["protocol violation: " + v for v in conn.violations]
            return problems
        except (OSError, Timeout) as e:
            return ["%s (%s)" % (e, conn.describe_end())]
        finally:
            conn.close_socket()
    return run


for _i, (_desc, _offer) in enumerate([
        ("browser offer", BROWSER_OFFER),
        ("Autobahn's default offer", AUTOBAHN_OFFER),
        ("13.7's three offers", OFFERS_13[6][1]),
        ("all four parameters", pmd_offer(snct=True, cnct=True, smwb=10, cmwb=10)),
        ("two header lines", [PMD, pmd_offer(cmwb=True)]),
        ("an invalid offer (unknown parameter)", _INVALID_OFFERS[0][1]),
        ("an invalid offer (server_max_window_bits=16)", _INVALID_OFFERS[6][1])], 1):
    case("pmdoff.%d" % _i,
         "kaze echo --no-deflate, %s: no extension, uncompressed echo, RSV1 fails (1002)" % _desc,
         profile="no-deflate", run=_not_negotiated(_offer))
