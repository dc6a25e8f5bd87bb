#!/usr/bin/env python3
"""Regenerates engine/src/redis/redis-7.0.15-command.resp3: the RESP3 reply of
`COMMAND` from a running redis-server, which Chorus embeds as its
command table (arity, flags, COMMAND INFO entries).

Usage: redis-server --port 16399 --save '' --appendonly no &
       python3 server/tools/capture_command_table.py 16399 > engine/src/redis/redis-7.0.15-command.resp3

Redis lists commands and subcommands in hash-table order, so two captures
may differ in order only; the table is keyed by name, so order does not matter.

Rename the file (and the include_bytes! in engine/src/redis/command_table.rs) if the
Redis version differs.
"""
import socket
import sys


def read_reply(sock, buf):
    """Reads one complete RESP3 reply; returns (raw bytes, rest of buffer)."""
    def need(n):
        nonlocal buf
        while len(buf) < n:
            chunk = sock.recv(1 << 20)
            if not chunk:
                raise EOFError("connection closed")
            buf += chunk

    def line_end(pos):
        while True:
            i = buf.find(b"\r\n", pos)
            if i >= 0:
                return i
            need(len(buf) + 1)

    def parse(pos):
        need(pos + 1)
        tag = buf[pos:pos + 1]
        end = line_end(pos)
        head = buf[pos + 1:end]
        pos = end + 2
        if tag in b"$=" and head != b"-1":
            n = int(head)
            need(pos + n + 2)
            return pos + n + 2
        if tag in b"*~>" and not head.startswith(b"-"):
            for _ in range(int(head)):
                pos = parse(pos)
            return pos
        if tag == b"%":
            for _ in range(2 * int(head)):
                pos = parse(pos)
            return pos
        return pos

    end = parse(0)
    return buf[:end], buf[end:]


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 6379
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"HELLO 3\r\nCOMMAND\r\n")
    _, rest = read_reply(sock, b"")
    table, _ = read_reply(sock, rest)
    sys.stdout.buffer.write(table)


if __name__ == "__main__":
    main()
