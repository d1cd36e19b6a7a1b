#!/usr/bin/python3
"""SIGHUP reloads peers, routes and upstream without dropping connections:
- guangzhou starts peered with shenzhen only; a query for hongkong data -> 502 no_route (a
  federated query on hongkong/stroke-registry) or 404 unknown_city (an opaque dataset);
- one HTTP/2 connection (python h2 over mTLS) is opened and used before the reload, a slow
  request is in flight on it during the reload, and the same connection serves after it;
- the config gains peer hongkong and loses nothing: SIGHUP -> hongkong queries 200 with route
  guangzhou,hongkong, the shenzhen session is not re-established (one "session up" in the log);
- a config that changes a listener, and one with a syntax error, are refused on SIGHUP with a
  logged reason while the gateway keeps serving with what it had;
- removing shenzhen -> its queries answer 502 no_route (404 unknown_city for an opaque one).
Queries are real federated counts on the embedded data spaces of shenzhen and hongkong; the slow
request goes to guangzhou's own upstream.py (delay 2 s, passthrough) as an opaque dataset."""
import json
import os
import signal
import socket
import ssl
import threading
import time

import h2.config
import h2.connection
import h2.events

import harness

WORKERS = 2  # reload must reach every worker's sessions
SZ_DATA = "shenzhen/stroke-registry"
HK_DATA = "hongkong/stroke-registry"


class H2Conn:
    """One TLS HTTP/2 connection with a client certificate; requests run one at a time or
    concurrently from threads (a lock serializes socket use)."""

    def __init__(self, port, cacert, crt, key):
        ctx = ssl.create_default_context(cafile=cacert)
        ctx.check_hostname = False
        ctx.load_cert_chain(crt, key)
        ctx.set_alpn_protocols(["h2"])
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock = ctx.wrap_socket(raw)
        self.sock.settimeout(0.2)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.conn.initiate_connection()
        self.sock.sendall(self.conn.data_to_send())
        self.lock = threading.Lock()
        self.results = {}
        self.closed = False

    def _pump_once(self):
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return
        if not data:
            self.closed = True
            return
        for ev in self.conn.receive_data(data):
            if isinstance(ev, h2.events.ResponseReceived):
                self.results.setdefault(ev.stream_id, {"body": b""})["status"] = \
                    int(dict(ev.headers)[b":status"])
            elif isinstance(ev, h2.events.DataReceived):
                self.results.setdefault(ev.stream_id, {"body": b""})["body"] += ev.data
                self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                self.results.setdefault(ev.stream_id, {"body": b""})["done"] = True
            elif isinstance(ev, h2.events.StreamReset):
                self.results.setdefault(ev.stream_id, {"body": b""})["reset"] = ev.error_code
                self.results[ev.stream_id]["done"] = True
            elif isinstance(ev, h2.events.ConnectionTerminated):
                self.closed = True
        self.sock.sendall(self.conn.data_to_send())

    def start(self, dataset):
        with self.lock:
            sid = self.conn.get_next_available_stream_id()
            body = json.dumps({"dataset": dataset, "op": "count"}).encode()
            self.conn.send_headers(sid, [(":method", "POST"), (":scheme", "https"),
                                         (":authority", "x"), (":path", "/v1/queries"),
                                         ("content-type", "application/json")])
            self.conn.send_data(sid, body, end_stream=True)
            self.sock.sendall(self.conn.data_to_send())
        return sid

    def wait(self, sid, timeout=15):
        end = time.time() + timeout
        while time.time() < end and not self.closed:
            with self.lock:
                if self.results.get(sid, {}).get("done"):
                    return self.results[sid]
                self._pump_once()
        return self.results.get(sid, {"status": None, "closed": self.closed})

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def counted(res, city, rows, route=None):
    """An HTTP/2 result of a count: 200, |rows| counted, |city| answered (over |route|)."""
    try:
        j = json.loads(res.get("body") or b"{}")
    except ValueError:
        return False
    c = (j.get("cities") or {}).get(city) or {}
    return (res.get("status") == 200 and (j.get("result") or {}).get("count") == rows and
            c.get("status") == "ok" and (route is None or c.get("route") == route))


def count_in_log(gw, needle):
    with open(gw.cur_err_path, "rb") as f:
        return f.read().decode("utf-8", "replace").count(needle)


def main(t):
    up = harness.PyUpstream(t, "slow-upstream", delay=2.0).start_ready()
    gws = harness.federation(t, ["guangzhou", "shenzhen", "hongkong"],
                             [("guangzhou", "shenzhen"), ("guangzhou", "hongkong")],
                             per_city={"guangzhou": {"upstream": up.url(), "workers": WORKERS}})
    gz, sz, hk = gws["guangzhou"], gws["shenzhen"], gws["hongkong"]
    # guangzhou starts without hongkong (hongkong already accepts guangzhou as its peer)
    gz.peers = [("shenzhen", sz)]
    gz.routes = []
    gz.write_config()
    for g in (sz, hk, gz):
        g.start()
    t.check(gz.wait_peers(10), "guangzhou ready (shenzhen connected)", gz.readyz())
    r = gz.query(None, body=json.dumps({"dataset": HK_DATA, "op": "count"}))
    t.check(r.status == 502 and r.error_code() == "no_route",
            "before reload: hongkong unreachable -> 502 no_route", r)
    r = gz.query("hongkong/x")
    t.check(r.status == 404 and r.error_code() == "unknown_city",
            "before reload: opaque hongkong dataset -> 404 unknown_city", r)

    crt, key = gz.client("firm")
    c = H2Conn(gz.tls_port, gz.bundle, crt, key)
    res = c.wait(c.start(SZ_DATA))
    t.check(counted(res, "shenzhen", sz.space_rows),
            "one h2 connection: shenzhen query 200 before reload", res)

    # a slow request (upstream delays 2 s) in flight across the reload
    slow = c.start("guangzhou/own")
    time.sleep(0.3)
    gz.peers = [("shenzhen", sz), ("hongkong", hk)]
    gz.write_config()
    gz.signal(signal.SIGHUP)
    res = c.wait(slow, timeout=15)
    t.check(res.get("status") == 200 and b'"upstream": "py"' in res.get("body", b"") and
            not c.closed and up.requests_seen() == 1,
            "request in flight during SIGHUP completes 200 (the upstream's answer) on the same "
            "connection", res)

    ok = harness.wait_until(lambda: (lambda x: x if x.status == 200 else None)(gz.readyz()), 10)
    t.check(ok and "hongkong" in ok.body, "after reload: readyz 200 lists hongkong", ok or gz.readyz())
    res = c.wait(c.start(HK_DATA))
    t.check(counted(res, "hongkong", hk.space_rows, "guangzhou,hongkong"),
            "after reload, same connection: hongkong query 200 via guangzhou,hongkong", res)
    res = c.wait(c.start(SZ_DATA))
    t.check(counted(res, "shenzhen", sz.space_rows),
            "after reload, same connection: shenzhen still 200", res)
    n_up = count_in_log(gz, 'peer=shenzhen url=')
    t.check(count_in_log(gz, 'peer=shenzhen url=https://127.0.0.1:%d msg="session up"'
                         % sz.tls_port) == WORKERS,
            "the shenzhen sessions survived the reload (one 'session up' per worker in the log)",
            gz.stderr_tail(20))
    t.log("shenzhen session log lines: %d" % n_up)

    # a change that needs a restart: refused, still serving
    good_yaml = gz.yaml()
    with open(gz.config_path, "w") as f:
        f.write(good_yaml.replace("    tls: false", "    tls: false\n    client_identity: "
                                  "spiffe://guangzhou.gba/firm/x"))
    gz.signal(signal.SIGHUP)
    time.sleep(0.5)
    t.check(count_in_log(gz, "'listeners' changed") == 1,
            "listener change on SIGHUP refused with a logged reason", gz.stderr_tail(5))
    with open(gz.config_path, "w") as f:
        f.write(good_yaml + "peers: [\n")
    gz.signal(signal.SIGHUP)
    time.sleep(0.5)
    t.check(count_in_log(gz, "new configuration invalid") == 1,
            "invalid file on SIGHUP refused with a logged reason", gz.stderr_tail(5))
    res = c.wait(c.start(HK_DATA))
    t.check(counted(res, "hongkong", hk.space_rows),
            "still serving hongkong after refused reloads", res)

    # removing a peer
    gz.peers = [("hongkong", hk)]
    gz.write_config()
    gz.signal(signal.SIGHUP)
    sz_q = json.dumps({"dataset": SZ_DATA, "op": "count"})
    gone = harness.wait_until(
        lambda: (lambda x: x if x.status != 200 else None)(gz.query(None, body=sz_q)), 10)
    t.check(gone and gone.status == 502 and gone.error_code() == "no_route",
            "after removing shenzhen: its queries -> 502 no_route", gone)
    r = gz.query("shenzhen/x")
    t.check(r.status == 404 and r.error_code() == "unknown_city",
            "after removing shenzhen: an opaque shenzhen dataset -> 404 unknown_city", r)
    t.check(count_in_log(gz, 'peer=shenzhen msg="session retired by reload"') == WORKERS,
            "the shenzhen session of every worker was retired", gz.stderr_tail(10))
    mt = harness.curl(t, gz.local_url("/metrics"), h2c=True, timeout=5)
    t.check(mt.status == 200 and 'baygate_peer_state{peer="hongkong",state="connected"} %d'
            % WORKERS in mt.body and
            'baygate_peer_state{peer="shenzhen",state="connected"} 0' in mt.body,
            "metrics: hongkong connected on every worker, shenzhen gone", mt.body[-800:])
    res = c.wait(c.start(HK_DATA))
    t.check(counted(res, "hongkong", hk.space_rows) and not c.closed,
            "the original connection still serves after three reloads", res)
    c.close()


if __name__ == "__main__":
    harness.run(main)
