#!/usr/bin/python3
"""A pi RPC client with no dependencies (ZMTP 3.0 over an ipc socket, protobuf by hand), for tests
that send what pictl would refuse to send. Usage:
  rpc_raw.py ENDPOINT generate [--prompt-hex H] [--prompt-file F] [--max-tokens N (may be < 0)]
             [--temp T] [--top-k K] [--top-p P] [--min-p M] [--repeat-penalty R]
             [--repeat-last-n N] [--no-bos] [--body-bytes N]
Prints the final response as one line: "error CODE MESSAGE" or "done GENERATED_TOKENS"; exit 0."""
import argparse
import socket
import struct
import sys


def varint(v):
    v &= (1 << 64) - 1  # a negative number goes as its 64-bit two's complement, as protobuf does
    out = b""
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def key(field, wt):
    return varint(field << 3 | wt)


def f_varint(field, v):
    return key(field, 0) + varint(v)


def f_bytes(field, b):
    return key(field, 2) + varint(len(b)) + b


def f_float(field, x):
    return key(field, 5) + struct.pack("<f", x)


def parse(b):
    """{field: [values]}: varints as int, length-delimited as bytes, fixed as raw bytes."""
    out, i = {}, 0
    while i < len(b):
        k, i = read_varint(b, i)
        f, wt = k >> 3, k & 7
        if wt == 0:
            v, i = read_varint(b, i)
        elif wt == 2:
            n, i = read_varint(b, i)
            v, i = b[i:i + n], i + n
        elif wt == 5:
            v, i = b[i:i + 4], i + 4
        elif wt == 1:
            v, i = b[i:i + 8], i + 8
        else:
            raise ValueError("wire type %d" % wt)
        out.setdefault(f, []).append(v)
    return out


def read_varint(b, i):
    v, s = 0, 0
    while True:
        c = b[i]
        i += 1
        v |= (c & 0x7F) << s
        s += 7
        if not c & 0x80:
            return v, i


class Zmtp:
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(60)
        self.s.connect(path)
        greeting = b"\xff" + b"\0" * 8 + b"\x7f" + b"\x03\x00" + b"NULL".ljust(20, b"\0") + b"\0" + b"\0" * 31
        self.s.sendall(greeting)
        self.recvn(64)
        self.send_frame(b"\x05READY" + b"\x0bSocket-Type" + struct.pack(">I", 6) + b"DEALER", command=True)

    def recvn(self, n):
        buf = b""
        while len(buf) < n:
            c = self.s.recv(n - len(buf))
            if not c:
                raise EOFError("pid closed the connection")
            buf += c
        return buf

    def send_frame(self, body, more=False, command=False):
        flags = (1 if more else 0) | (4 if command else 0)
        if len(body) > 255:
            self.s.sendall(bytes([flags | 2]) + struct.pack(">Q", len(body)) + body)
        else:
            self.s.sendall(bytes([flags, len(body)]) + body)

    def recv_frame(self):
        flags = self.recvn(1)[0]
        n = struct.unpack(">Q", self.recvn(8))[0] if flags & 2 else self.recvn(1)[0]
        return flags, self.recvn(n)

    def recv_msg(self):
        frames = []
        while True:
            flags, body = self.recv_frame()
            if flags & 4:  # a command: answer PING, ignore the rest (READY)
                if body.startswith(b"\x04PING"):
                    self.send_frame(b"\x04PONG" + body[7:], command=True)
                continue
            frames.append(body)
            if not flags & 1:
                return frames

    def send_msg(self, frames):
        for i, f in enumerate(frames):
            self.send_frame(f, more=i + 1 < len(frames))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("endpoint")
    ap.add_argument("kind", choices=["generate"])
    ap.add_argument("--prompt-hex", default="")
    ap.add_argument("--prompt-file")
    ap.add_argument("--max-tokens", type=int, default=5)
    ap.add_argument("--temp", type=float)
    ap.add_argument("--top-k", type=int)
    ap.add_argument("--top-p", type=float)
    ap.add_argument("--min-p", type=float)
    ap.add_argument("--repeat-penalty", type=float)
    ap.add_argument("--repeat-last-n", type=int)
    ap.add_argument("--no-bos", action="store_true")
    ap.add_argument("--body-bytes", type=int, help="send a body of this many bytes (a junk prompt)")
    a = ap.parse_args()
    assert a.endpoint.startswith("ipc://")
    prompt = bytes.fromhex(a.prompt_hex)
    if a.prompt_file:
        prompt = open(a.prompt_file, "rb").read()
    if a.body_bytes:
        prompt = b"a" * a.body_bytes
    samp = b""
    if a.temp is not None:
        samp += f_float(1, a.temp)
    if a.top_k is not None:
        samp += f_varint(2, a.top_k)
    if a.top_p is not None:
        samp += f_float(3, a.top_p)
    if a.min_p is not None:
        samp += f_float(4, a.min_p)
    if a.repeat_penalty is not None:
        samp += f_float(5, a.repeat_penalty)
    if a.repeat_last_n is not None:
        samp += f_varint(6, a.repeat_last_n)
    gen = f_bytes(1, prompt) + f_varint(2, a.max_tokens)
    if samp:
        gen += f_bytes(3, samp)
    if a.no_bos:
        gen += f_varint(4, 1)
    req = f_varint(1, 7) + f_bytes(10, gen)
    z = Zmtp(a.endpoint[len("ipc://"):])
    z.send_msg([b"PIRPC01", req])
    while True:
        frames = z.recv_msg()
        r = parse(frames[-1])
        if 20 in r:
            e = parse(r[20][0])
            print("error %d %s" % (e.get(1, [0])[0], e.get(2, [b""])[0].decode("utf-8", "replace")))
            return
        if 11 in r:
            d = parse(r[11][0])
            print("done %d" % d.get(2, [0])[0])
            return


if __name__ == "__main__":
    sys.exit(main())
