#!/usr/bin/python3
"""tests/integration/upstream.py: a small h2c (prior knowledge) data-space upstream for the
integration tests, built on python3-h2 and asyncio. Not for: anything but tests.

Every request (any method, any path) is read to its end, then answered after --delay seconds
with status --status. With --size 0 (the default) the body is a JSON echo of what arrived:
  {"upstream":"py","method":..,"path":..,"headers":{..},"body_len":N,"n":<request number>}
With --body-file F it is F's bytes, read at each request (a test may rewrite F between
requests). With --size N it is N bytes of 'x' streamed in --chunk byte DATA frames, honouring HTTP/2 flow
control. The listening port is printed on stdout as "PORT <n>" once bound; each request that
has fully arrived is logged on stdout as "REQ <n> <path>" (flushed), so a test can wait for
requests to be in flight.
"""
import argparse
import asyncio
import json
import sys

import h2.config
import h2.connection
import h2.events
import h2.exceptions


class Conn(asyncio.Protocol):
    counter = 0

    def __init__(self, args):
        self.args = args
        self.conn = h2.connection.H2Connection(
            config=h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        self.transport = None
        self.streams = {}  # stream id -> {"headers": dict, "body": bytearray}
        self.window_open = asyncio.Event()
        self.closed = False

    def connection_made(self, transport):
        self.transport = transport
        self.conn.initiate_connection()
        self.flush()

    def connection_lost(self, exc):
        self.closed = True
        self.window_open.set()

    def flush(self):
        data = self.conn.data_to_send()
        if data and not self.closed:
            self.transport.write(data)

    def data_received(self, data):
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError:
            self.flush()
            self.transport.close()
            return
        for ev in events:
            if isinstance(ev, h2.events.RequestReceived):
                self.streams[ev.stream_id] = {"headers": dict(ev.headers), "body": bytearray()}
                if ev.stream_ended:
                    self.start(ev.stream_id)
            elif isinstance(ev, h2.events.DataReceived):
                st = self.streams.get(ev.stream_id)
                if st is not None:
                    st["body"] += ev.data
                self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                if ev.stream_ended:
                    self.start(ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                if ev.stream_id in self.streams and not self.streams[ev.stream_id].get("started"):
                    self.start(ev.stream_id)
            elif isinstance(ev, h2.events.StreamReset):
                self.streams.pop(ev.stream_id, None)
            elif isinstance(ev, (h2.events.WindowUpdated, h2.events.RemoteSettingsChanged)):
                self.window_open.set()
            elif isinstance(ev, h2.events.ConnectionTerminated):
                self.transport.close()
        self.flush()

    def start(self, sid):
        st = self.streams.get(sid)
        if st is None or st.get("started"):
            return
        st["started"] = True
        Conn.counter += 1
        st["n"] = Conn.counter
        print("REQ %d %s" % (st["n"], st["headers"].get(":path", "")), flush=True)
        asyncio.ensure_future(self.respond(sid, st))

    async def respond(self, sid, st):
        if self.args.delay > 0:
            await asyncio.sleep(self.args.delay)
        if self.closed or sid not in self.streams:
            return
        if self.args.body_file:
            with open(self.args.body_file, "rb") as f:
                body = f.read()
            total = len(body)
        elif self.args.size > 0:
            body = None
            total = self.args.size
        else:
            body = json.dumps({
                "upstream": "py",
                "method": st["headers"].get(":method"),
                "path": st["headers"].get(":path"),
                "headers": {k: v for k, v in st["headers"].items() if not k.startswith(":")},
                "body_len": len(st["body"]),
                "n": st["n"],
            }).encode()
            total = len(body)
        try:
            self.conn.send_headers(sid, [(":status", str(self.args.status)),
                                         ("content-type", "application/json"),
                                         ("content-length", str(total))])
            self.flush()
            sent = 0
            while sent < total:
                if self.closed or sid not in self.streams:
                    return
                win = min(self.conn.local_flow_control_window(sid),
                          self.conn.max_outbound_frame_size, self.args.chunk)
                if win <= 0:
                    self.window_open.clear()
                    await self.window_open.wait()
                    continue
                n = min(win, total - sent)
                chunk = body[sent:sent + n] if body is not None else b"x" * n
                self.conn.send_data(sid, chunk)
                sent += n
                self.flush()
                if body is None:
                    await asyncio.sleep(0)  # let the socket drain between chunks
            self.conn.end_stream(sid)
            self.flush()
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError, KeyError):
            self.flush()
        finally:
            self.streams.pop(sid, None)


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--delay", type=float, default=0.0, help="seconds before the response")
    ap.add_argument("--size", type=int, default=0, help="response body bytes (0: JSON echo)")
    ap.add_argument("--chunk", type=int, default=16384, help="DATA frame size")
    ap.add_argument("--status", type=int, default=200)
    ap.add_argument("--body-file", default="", help="answer with this file's bytes (read per request)")
    args = ap.parse_args()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Conn(args), "127.0.0.1", args.port)
    print("PORT %d" % server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
