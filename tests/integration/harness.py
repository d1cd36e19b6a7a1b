"""tests/integration/harness.py: the integration-test harness for baygate (python3 stdlib only).

A test is a function `main(t)` run by `harness.run(main)`: `t` is a TestCtx holding a fresh
mkdtemp() directory, the checks made so far and every process started. At the end every
gateway still running is stopped with SIGTERM (SIGKILL after a bound) and the test FAILS when a
gateway died by a signal, exited non-zero or needed SIGKILL. The process exits 0 when every
check passed, 1 otherwise; the temp dir is removed on success and kept (path printed) on
failure.

Binaries come from $BAYGATE_BIN_DIR (set by ctest to <build>/gateway) or argv[1]:
<dir>/baygate and <dir>/baygatectl. Certificates are made with `baygatectl certs` (or copied
from the integration_pki fixture's $BAYGATE_IT_PKI, which made them the same way).
Everything listens on 127.0.0.1 with ports found by binding port 0.
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
PY = "/usr/bin/python3"
UPSTREAM_PY = os.path.join(HERE, "upstream.py")


class TestFailed(Exception):
    pass


def bin_dir():
    d = os.environ.get("BAYGATE_BIN_DIR")
    if not d and len(sys.argv) > 1:
        d = sys.argv[1]
    if not d:
        d = os.path.join(HERE, "..", "..", "build", "gateway")
    return os.path.abspath(d)


def baygate_bin():
    return os.path.join(bin_dir(), "baygate")


def baygatectl_bin():
    return os.path.join(bin_dir(), "baygatectl")


def sanitized():
    """True when baygate was built with ASan (memory figures then mean little)."""
    try:
        with open(baygate_bin(), "rb") as f:
            return b"__asan_init" in f.read()
    except OSError:
        return False


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_until(fn, timeout, interval=0.1):
    """Calls fn() until it returns a truthy value or |timeout| s pass; returns the last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval)


# ---------------------------------------------------------------------------------------------
# Test context


class TestCtx:
    def __init__(self, name):
        self.name = name
        self.dir = tempfile.mkdtemp(prefix="bg-it-%s-" % name)
        self.failures = []
        self.nchecks = 0
        self.procs = []  # everything started, stopped in reverse order at the end
        self._certs = None

    def log(self, msg):
        print("  ..  %s" % msg, flush=True)

    def check(self, cond, what, detail=""):
        self.nchecks += 1
        if not cond:
            self.failures.append(what)
        try:
            if cond:
                print("  ok  %s" % what, flush=True)
            else:
                print("FAIL  %s%s" % (what, ("\n        " + str(detail).replace("\n", "\n        "))
                                      if detail != "" else ""), flush=True)
        except (BrokenPipeError, OSError):
            pass  # stdout gone (e.g. piped to head): keep going so clean-up still runs
        return bool(cond)

    def require(self, cond, what, detail=""):
        """As check(), but stops the test when it fails."""
        if not self.check(cond, what, detail):
            e = TestFailed(what)
            e.recorded = True
            raise e

    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    @property
    def certs(self):
        if self._certs is None:
            self._certs = Certs(self, self.path("pki"))
        return self._certs

    def cleanup(self):
        for p in reversed(self.procs):
            try:
                p.stop()
            except Exception as e:  # keep stopping the others
                self.check(False, "stop %s" % p.name, repr(e))


def run(main):
    name = os.path.splitext(os.path.basename(sys.argv[0]))[0]
    t = TestCtx(name)
    print("== %s (tmp %s, bin %s)" % (name, t.dir, bin_dir()), flush=True)
    if not os.access(baygate_bin(), os.X_OK):
        print("FAIL  baygate binary not found at %s" % baygate_bin())
        sys.exit(1)
    try:
        main(t)
    except TestFailed as e:
        if getattr(e, "recorded", False):
            print("  ..  stopped after failed requirement: %s" % e)
        else:
            t.check(False, "test stopped", str(e))
    except Exception:
        t.check(False, "test raised", traceback.format_exc())
    finally:
        t.cleanup()
    if t.nchecks == 0:
        t.check(False, "the test made no checks")
    if t.failures:
        print("== %s: FAILED %d of %d checks (kept %s)" % (name, len(t.failures), t.nchecks,
                                                         t.dir))
        for f in t.failures:
            print("   - %s" % f)
        sys.exit(1)
    print("== %s: passed %d checks" % (name, t.nchecks))
    shutil.rmtree(t.dir, ignore_errors=True)
    sys.exit(0)


# ---------------------------------------------------------------------------------------------
# Certificates


class Certs:
    """City PKI under |root|: root/<city>/{ca,gateway}.{crt,key},
    root/<city>/clients/<city>-{firm,regulator,admin}.{crt,key}; root/trust-bundle.pem."""

    def __init__(self, t, root):
        self.t = t
        self.root = root
        os.makedirs(root, exist_ok=True)
        self.use_ctl = os.access(baygatectl_bin(), os.X_OK)
        if not self.use_ctl:
            raise TestFailed("%s missing: certificates come from `baygatectl certs`"
                             % baygatectl_bin())

    def _run(self, argv):
        r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           timeout=60)
        if r.returncode != 0:
            raise TestFailed("%s -> %d: %s%s" % (" ".join(argv), r.returncode, r.stdout,
                                                 r.stderr))
        return r

    def city(self, city):
        d = os.path.join(self.root, city)
        if os.path.exists(os.path.join(d, "gateway.crt")):
            return d
        shared = os.environ.get("BAYGATE_IT_PKI")
        if shared and os.path.exists(os.path.join(shared, city, "clients", "%s-admin.key" % city)):
            shutil.copytree(os.path.join(shared, city), d)  # made by the fixture step
        else:
            self._run([baygatectl_bin(), "certs", "city", "--city", city, "--dir", d])
        for f in ("ca.crt", "ca.key", "gateway.crt", "gateway.key", "clients/%s-firm.crt" % city,
                  "clients/%s-firm.key" % city, "clients/%s-admin.crt" % city):
            if not os.path.exists(os.path.join(d, f)):
                raise TestFailed("certs city %s: %s missing" % (city, f))
        return d

    def ca_only(self, city, d):
        """A lone CA (e.g. an untrusted one) in |d|."""
        os.makedirs(d, exist_ok=True)
        crt, key = os.path.join(d, "ca.crt"), os.path.join(d, "ca.key")
        self._run([baygatectl_bin(), "certs", "ca", "--city", city, "--out-cert", crt,
                   "--out-key", key])
        return d

    def issue(self, ca_dir, spiffe, out_base, server=False, days=None, not_before_offset=None):
        """Issues a leaf signed by ca_dir/ca.{crt,key}; returns (crt, key) = out_base.{crt,key}."""
        ca_crt, ca_key = os.path.join(ca_dir, "ca.crt"), os.path.join(ca_dir, "ca.key")
        crt, key = out_base + ".crt", out_base + ".key"
        os.makedirs(os.path.dirname(crt), exist_ok=True)
        argv = [baygatectl_bin(), "certs", "issue", "--ca-cert", ca_crt, "--ca-key", ca_key,
                "--spiffe", spiffe, "--out-cert", crt, "--out-key", key]
        if server:
            argv.append("--server")
        if days is not None:
            argv += ["--days", str(days)]
        if not_before_offset is not None:
            argv += ["--not-before-offset", str(not_before_offset)]
        self._run(argv)
        return crt, key

    def bundle(self, out, ca_crts):
        self._run([baygatectl_bin(), "certs", "bundle", "--out", out] + list(ca_crts))
        return out


# ---------------------------------------------------------------------------------------------
# curl


class Resp:
    def __init__(self, rc, status, version, body, headers, stderr, elapsed):
        self.rc, self.status, self.version = rc, status, version
        self.body, self.headers, self.stderr, self.elapsed = body, headers, stderr, elapsed

    def json(self):
        try:
            return json.loads(self.body)
        except (ValueError, TypeError):
            return None

    def error_code(self):
        j = self.json()
        if isinstance(j, dict) and isinstance(j.get("error"), dict):
            return j["error"].get("code")
        return None

    def __repr__(self):
        b = self.body if isinstance(self.body, str) else repr(self.body)
        return ("rc=%d status=%s http=%s elapsed=%.2fs headers=%s body=%s stderr=%s"
                % (self.rc, self.status, self.version, self.elapsed, self.headers, b[:400],
                   self.stderr.strip()[:400]))


_curl_seq = [0]


def curl(t, url, *, cacert=None, cert=None, key=None, data=None, data_file=None, headers=(),
         method=None, h2c=False, timeout=30, output=None, extra=()):
    """Runs curl over HTTP/2 (ALPN h2 for https, prior knowledge for http when h2c) and returns
    a Resp: rc (curl exit code), status (int, 0 if none), version ("2" for HTTP/2), size
    (bytes downloaded), body (str, or None when |output| is given), headers (dict of the last response's headers, lower-case
    names; repeated names joined with ","), stderr, elapsed seconds."""
    _curl_seq[0] += 1
    n = _curl_seq[0]
    hdr_file = t.path("curl-%d.hdr" % n)
    body_file = output or t.path("curl-%d.body" % n)
    argv = ["curl", "-sS", "--max-time", str(timeout), "-D", hdr_file, "-o", body_file,
            "-w", "%{http_code} %{http_version} %{size_download}"]
    argv.append("--http2-prior-knowledge" if h2c else "--http2")
    if cacert:
        argv += ["--cacert", cacert]
    if cert:
        argv += ["--cert", cert]
    if key:
        argv += ["--key", key]
    for h in headers:
        argv += ["-H", h]
    # a JSON content-type unless the caller chose one
    ctype = [] if any(h.lower().startswith("content-type:") for h in headers) else \
        ["-H", "content-type: application/json"]
    if data is not None:
        dpath = t.path("curl-%d.req" % n)
        with open(dpath, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        argv += ["--data-binary", "@" + dpath] + ctype
    elif data_file is not None:
        argv += ["--data-binary", "@" + data_file] + ctype
    if method:
        argv += ["-X", method]
    argv += list(extra)
    argv.append(url)
    t0 = time.monotonic()
    r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=timeout + 10)
    elapsed = time.monotonic() - t0
    parts = r.stdout.split()
    status = int(parts[0]) if parts and parts[0].isdigit() else 0
    version = parts[1] if len(parts) > 1 else ""
    size = int(parts[2]) if len(parts) > 2 and parts[2].isdigit() else -1
    headers = {}
    try:
        with open(hdr_file, "rb") as f:
            raw = f.read().decode("latin-1")
        blocks = [b for b in raw.replace("\r\n", "\n").split("\n\n") if b.strip()]
        if blocks:
            for line in blocks[-1].split("\n")[1:]:
                if ":" in line:
                    k, v = line.split(":", 1)
                    k = k.strip().lower()
                    headers[k] = (headers[k] + "," + v.strip()) if k in headers else v.strip()
    except OSError:
        pass
    body = None
    if output is None:
        try:
            with open(body_file, "rb") as f:
                body = f.read().decode("utf-8", "replace")
        except OSError:
            body = ""
    resp = Resp(r.returncode, status, version, body, headers, r.stderr, elapsed)
    resp.size = size
    return resp


# ---------------------------------------------------------------------------------------------
# Protobuf legs (space/space.proto), written by hand so the tests need no protobuf package


def _varint(n):
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def _ld(field, data):
    data = data.encode() if isinstance(data, str) else data
    return _varint(field << 3 | 2) + _varint(len(data)) + data


def leg_body(name, op=1, query_id=None):
    """A protobuf baygate.space.Leg as a home gateway sends it on /fed/v1/query: query_id (a
    fresh one per leg, as every query gets, unless given) and Query{dataset: name without
    city, op: 1 = count}."""
    import uuid
    qid = query_id or uuid.uuid4().hex
    return _ld(1, qid) + _ld(2, _ld(1, name) + _varint(2 << 3) + _varint(op))


# ---------------------------------------------------------------------------------------------
# Processes


def _die_with_parent():
    """preexec_fn: the child gets SIGTERM when the test process dies (ctest timeout, SIGPIPE),
    so no gateway outlives its test."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


class Proc:
    """A child process with a name, its output in files, stopped by TestCtx.cleanup()."""

    def __init__(self, t, name, argv, cwd=None, check_exit=False, env=None):
        self.t, self.name, self.argv, self.cwd = t, name, argv, cwd
        self.env = env  # None: inherit
        self.check_exit = check_exit  # a gateway: fail on signal death / non-zero exit
        self.p = None
        self.out_path = t.path("%s.stdout" % name)
        self.err_path = t.path("%s.stderr" % name)
        self.expected_death = False
        self.stopped = False
        self.starts = 0
        self.rlimit_fsize = None  # bytes: RLIMIT_FSIZE of the next start (a "disk" that fills)

    def start(self):
        self.starts += 1
        suffix = "" if self.starts == 1 else ".%d" % self.starts
        self.out = open(self.out_path + suffix, "wb")
        self.err = open(self.err_path + suffix, "wb")
        self.cur_err_path = self.err_path + suffix
        self.cur_out_path = self.out_path + suffix
        limit = self.rlimit_fsize

        def preexec():
            _die_with_parent()
            if limit is not None:
                import resource
                resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        self.p = subprocess.Popen(self.argv, stdout=self.out, stderr=self.err, cwd=self.cwd,
                                  stdin=subprocess.DEVNULL, preexec_fn=preexec, env=self.env)
        self.stopped = False
        self.expected_death = False
        if self not in self.t.procs:
            self.t.procs.append(self)
        return self

    @property
    def pid(self):
        return self.p.pid

    def alive(self):
        return self.p is not None and self.p.poll() is None

    def stderr_tail(self, n=30):
        try:
            with open(self.cur_err_path, "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
            return "\n".join(lines[-n:])
        except (OSError, AttributeError):
            return ""

    def kill(self):
        """SIGKILL on purpose: the exit status is not held against the test."""
        if self.alive():
            self.expected_death = True
            self.p.kill()
            self.p.wait(10)
        self.stopped = True

    def signal(self, sig):
        self.p.send_signal(sig)

    def wait_exit(self, timeout):
        try:
            return self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, bound=15.0):
        """SIGTERM, then SIGKILL after |bound| s. Returns the exit code. For gateways, a
        death by signal, a non-zero exit or a needed SIGKILL is a test failure."""
        if self.p is None or self.stopped:
            return None if self.p is None else self.p.returncode
        self.stopped = True
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(bound)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(10)
                if self.check_exit:
                    self.t.check(False, "%s exits within %.0fs of SIGTERM" % (self.name, bound),
                                 self.stderr_tail())
                return self.p.returncode
        elif self.check_exit and not self.expected_death:
            # it was already gone before we asked
            self.t.check(False, "%s still running at the end of the test (exit %s)"
                         % (self.name, self.p.returncode), self.stderr_tail())
            return self.p.returncode
        rc = self.p.returncode
        if self.check_exit and not self.expected_death:
            self.t.check(rc == 0, "%s exits 0 after SIGTERM (got %s%s)"
                         % (self.name, rc, " = signal %d" % -rc if rc < 0 else ""),
                         self.stderr_tail())
        return rc


class Nghttpd(Proc):
    """nghttpd in h2c mode serving |docroot|; POST /space/v1/query answers with the file
    docroot/space/v1/query."""

    def __init__(self, t, name, docroot, port=None):
        self.port = port or free_port()
        super().__init__(t, name, ["nghttpd", "--no-tls", "-d", docroot, str(self.port)])

    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def start_ready(self, timeout=10):
        self.start()
        ok = wait_until(lambda: self.alive() and tcp_open(self.port), timeout)
        if not ok:
            raise TestFailed("nghttpd %s did not listen on %d: %s"
                             % (self.name, self.port, self.stderr_tail()))
        return self


class PyUpstream(Proc):
    """tests/integration/upstream.py: h2c upstream with --delay/--size."""

    def __init__(self, t, name, delay=0.0, size=0, status=200, chunk=16384, body_file=""):
        self.port = free_port()
        super().__init__(t, name, [PY, UPSTREAM_PY, "--port", str(self.port), "--delay",
                                   str(delay), "--size", str(size), "--status", str(status),
                                   "--chunk", str(chunk), "--body-file", body_file])

    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def start_ready(self, timeout=10):
        self.start()
        ok = wait_until(lambda: self.alive() and tcp_open(self.port), timeout)
        if not ok:
            raise TestFailed("upstream %s did not listen: %s" % (self.name, self.stderr_tail()))
        return self

    def requests_seen(self):
        try:
            with open(self.cur_out_path) as f:
                return sum(1 for l in f if l.startswith("REQ "))
        except OSError:
            return 0


def tcp_open(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


# ---------------------------------------------------------------------------------------------
# Gateways


DEFAULT_TIMEOUTS = {
    "connect_ms": 1000, "request_ms": 10000, "ping_interval_ms": 2000, "ping_timeout_ms": 2000,
    "backoff_initial_ms": 100, "backoff_max_ms": 1000, "idle_ms": 120000,
    "shutdown_grace_ms": 5000,
}


class Gateway(Proc):
    """One baygate process. Its config lives in its city's PKI dir (so cert paths are
    relative: gateway.crt, ../trust-bundle.pem) and its access log is access.log there."""

    def __init__(self, t, city, *, local=True, client_identity=None, upstream="builtin",
                 space_rows=20000,
                 workers=1, timeouts=None, limits=None, access_log="access.log", extra_yaml="",
                 env=None):
        self.city = city
        self.dir = t.certs.city(city)
        self.tls_port = free_port()
        self.local_port = free_port() if local else None
        self.client_identity = client_identity
        self.upstream = upstream
        self.space_rows = space_rows
        self.workers = workers
        self.timeouts = dict(DEFAULT_TIMEOUTS)
        self.timeouts.update(timeouts or {})
        self.limits = dict(limits or {})
        self.access_log = access_log
        self.extra_yaml = extra_yaml
        self.peers = []   # (name, Gateway)
        self.routes = []  # (city, via)
        self.config_path = os.path.join(self.dir, "%s.yaml" % city)
        self.bundle = os.path.join(t.certs.root, "trust-bundle.pem")
        super().__init__(t, "gw-%s" % city, [baygate_bin(), "--config", self.config_path],
                         check_exit=True, env=env)

    # -- config
    def yaml(self):
        L = ["# generated by tests/integration/harness.py", "city: %s" % self.city,
             "workers: %d" % self.workers, "log_level: info",
             "access_log: %s" % self.access_log, "listeners:",
             "  - address: 127.0.0.1:%d" % self.tls_port, "    tls: true"]
        if self.local_port:
            L += ["  - address: 127.0.0.1:%d" % self.local_port, "    tls: false",
                  "    local: true"]
            if self.client_identity:
                L.append("    client_identity: %s" % self.client_identity)
        L += ["tls:", "  cert: gateway.crt", "  key: gateway.key",
              "  trust_bundle: ../trust-bundle.pem"]
        if self.peers:
            L.append("peers:")
            for name, gw in self.peers:
                L += ["  - name: %s" % name, "    spiffe_id: spiffe://%s.gba/gateway" % name,
                      "    urls: [https://127.0.0.1:%d]" % gw.tls_port]
        if self.routes:
            L.append("routes:")
            for city, via in self.routes:
                L += ["  - city: %s" % city, "    via: %s" % via]
        L += ["upstream:", "  url: %s" % self.upstream]
        if self.upstream != "builtin":  # transport tests relay opaque datasets to it
            L.append("  passthrough: true")
        else:
            L.append("  rows: %d" % self.space_rows)
        L.append("timeouts:")
        L += ["  %s: %d" % kv for kv in self.timeouts.items()]
        if self.limits:
            L.append("limits:")
            L += ["  %s: %d" % kv for kv in self.limits.items()]
        L += ["ledger:", "  path: ledger"]
        if self.extra_yaml:
            L.append(self.extra_yaml.rstrip("\n"))
        return "\n".join(L) + "\n"

    def write_config(self):
        with open(self.config_path, "w") as f:
            f.write(self.yaml())
        return self.config_path

    # -- urls and clients
    def url(self, path="/"):
        return "https://127.0.0.1:%d%s" % (self.tls_port, path)

    def local_url(self, path="/"):
        return "http://127.0.0.1:%d%s" % (self.local_port, path)

    def client(self, role="firm"):
        """(crt, key) of this city's client certificate with |role|."""
        b = os.path.join(self.dir, "clients", "%s-%s" % (self.city, role))
        return b + ".crt", b + ".key"

    def gateway_cert(self):
        return os.path.join(self.dir, "gateway.crt"), os.path.join(self.dir, "gateway.key")

    def query(self, dataset, role="firm", cert=None, headers=(), body=None, path="/v1/queries",
              timeout=30, output=None):
        """POST |path| over TLS with this city's |role| client cert (or |cert| = (crt, key))."""
        crt, key = cert or self.client(role)
        data = body if body is not None else json.dumps({"dataset": dataset})
        return curl(self.t, self.url(path), cacert=self.bundle, cert=crt, key=key, data=data,
                    headers=headers, timeout=timeout, output=output)

    def get(self, path, cert=None, timeout=10):
        crt, key = cert or (None, None)
        return curl(self.t, self.url(path), cacert=self.bundle, cert=crt, key=key,
                    timeout=timeout)

    # -- lifecycle
    def start(self, wait=True, timeout=10):
        if not os.path.exists(self.config_path):
            self.write_config()
        super().start()
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout=10):
        """Polls GET /healthz over TLS until 200, bounded by |timeout| s."""
        last = [None]

        def ok():
            if not self.alive():
                return True
            if not tcp_open(self.tls_port):
                return False
            r = curl(self.t, self.url("/healthz"), cacert=self.bundle, timeout=2)
            last[0] = r
            return r.status == 200

        wait_until(ok, timeout)
        if not self.alive():
            self.stopped = True  # reported here, not again at clean-up
            raise TestFailed("%s exited during start-up (rc %s):\n%s"
                             % (self.name, self.p.returncode, self.stderr_tail()))
        if not (last[0] and last[0].status == 200):
            raise TestFailed("%s not healthy within %.0fs: %r\n%s"
                             % (self.name, timeout, last[0], self.stderr_tail()))

    def wait_peers(self, timeout=10):
        """Polls /readyz on the local listener (or TLS with the admin cert) until 200."""
        def ok():
            r = self.readyz()
            return r if r.status == 200 else None
        return wait_until(ok, timeout, 0.2)

    def readyz(self):
        if self.local_port:
            return curl(self.t, self.local_url("/readyz"), h2c=True, timeout=5)
        return self.get("/readyz", cert=self.client("admin"), timeout=5)

    def vmhwm_kb(self):
        return proc_status_kb(self.pid, "VmHWM")

    def access_log_path(self):
        return self.access_log if os.path.isabs(self.access_log) else \
            os.path.join(self.dir, self.access_log)

    def access_log_entries(self):
        return parse_access_log(self.access_log_path())

    def log_for(self, request_id, timeout=3.0):
        """Access log lines with |request_id|, polled up to |timeout| s (logs may be buffered)."""
        def f():
            return [e for e in self.access_log_entries() if e.get("request_id") == request_id]
        return wait_until(f, timeout) or []


def proc_status_kb(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


def parse_access_log(path):
    """Access log JSON lines -> list of dicts (unparseable lines come back as {"_raw": line})."""
    out = []
    try:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    out.append(json.loads(line))
                except ValueError:
                    out.append({"_raw": line})
    except OSError:
        pass
    return out


ACCESS_LOG_KEYS = ("time", "request_id", "peer", "route", "method", "status", "bytes_in",
                   "bytes_out", "latency_ms", "city")


def federation(t, cities, links, **kw):
    """Creates (not starts) one Gateway per city, peered along |links| [(a, b), ...], with
    static routes (shortest path, first hop) so that every city reaches every other. |kw| is
    passed to each Gateway; kw["per_city"] = {city: {...}} overrides per city. Writes the trust
    bundle of all cities' CAs and each config. Returns {city: Gateway}."""
    per_city = kw.pop("per_city", {})
    gws = {}
    for c in cities:
        args = dict(kw)
        args.update(per_city.get(c, {}))
        gws[c] = Gateway(t, c, **args)
    t.certs.bundle(os.path.join(t.certs.root, "trust-bundle.pem"),
                   [os.path.join(t.certs.root, c, "ca.crt") for c in cities])
    adj = {c: [] for c in cities}
    for a, b in links:
        adj[a].append(b)
        adj[b].append(a)
    for c in cities:
        gws[c].peers = [(n, gws[n]) for n in adj[c]]
        # BFS for first hops
        first = {n: n for n in adj[c]}
        frontier = list(adj[c])
        seen = set([c] + adj[c])
        while frontier:
            nxt = []
            for u in frontier:
                for v in adj[u]:
                    if v not in seen:
                        seen.add(v)
                        first[v] = first[u]
                        nxt.append(v)
            frontier = nxt
        gws[c].routes = [(d, first[d]) for d in cities if d != c and d not in adj[c]]
        gws[c].write_config()
    return gws


def run_baygate(args, timeout=20):
    """Runs baygate with |args| to completion: (rc, stdout, stderr)."""
    r = subprocess.run([baygate_bin()] + list(args), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=timeout)
    return r.returncode, r.stdout, r.stderr


def file_line_re(path):
    """Regex for "<path>:<line>:" as the gateway reports config errors."""
    return re.compile(re.escape(path) + r":(\d+):")
