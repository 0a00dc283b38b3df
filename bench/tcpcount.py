#!/usr/bin/env python3
"""Counting TCP forwarders for bench/shards.sh.

    tcpcount.py OUT TARGET_PORT LISTEN_PORT...

Listens on 127.0.0.1:LISTEN_PORT for each port given and forwards every
connection to 127.0.0.1:TARGET_PORT (the registry), counting the bytes
each way. Prints "ready" once listening; on SIGTERM writes
{"LISTEN_PORT": [bytes to the registry, bytes from it], ...} to OUT and
exits. One builder talks to the registry through one port only, so its
port's counts are the bytes that builder moved (HTTP headers included).
"""
import json
import signal
import socket
import sys
import threading

out, target = sys.argv[1], int(sys.argv[2])
ports = [int(p) for p in sys.argv[3:]]
counts = {p: [0, 0] for p in ports}
lock = threading.Lock()


def pump(src, dst, port, way):
    try:
        while True:
            b = src.recv(1 << 16)
            if not b:
                break
            dst.sendall(b)
            with lock:
                counts[port][way] += len(b)
    except OSError:
        pass
    finally:
        for s in (dst, src):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def serve(listener, port):
    while True:
        try:
            client, _ = listener.accept()
        except OSError:
            return
        upstream = socket.create_connection(("127.0.0.1", target))
        for s in (client, upstream):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=pump, args=(client, upstream, port, 0), daemon=True).start()
        threading.Thread(target=pump, args=(upstream, client, port, 1), daemon=True).start()


def stop(*_):
    with lock:
        with open(out, "w") as f:
            json.dump({str(p): c for p, c in counts.items()}, f)
    sys.exit(0)


signal.signal(signal.SIGTERM, stop)
for p in ports:
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", p))
    ls.listen(64)
    threading.Thread(target=serve, args=(ls, p), daemon=True).start()
print("ready", flush=True)
signal.pause()
