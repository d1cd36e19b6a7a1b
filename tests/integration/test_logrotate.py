#!/usr/bin/python3
"""Access-log rotation: move access.log away, SIGUSR1 makes the gateway reopen its path; lines
before the signal are in the moved file, lines after in the new one, none lost or doubled, while
requests keep flowing from another thread the whole time (real counts on guangzhou's embedded
data space)."""
import json
import os
import signal
import threading
import time

import harness


def main(t):
    gws = harness.federation(t, ["guangzhou"], [], per_city={"guangzhou": {"workers": 2}})
    gz = gws["guangzhou"]
    gz.start()
    path = gz.access_log_path()

    sent = []
    stop = threading.Event()

    def load():
        i = 0
        while not stop.is_set() and i < 400:
            rid = "rot-%04d" % i
            r = gz.query(None, body=json.dumps({"dataset": "guangzhou/cerebral-infarction",
                                                "op": "count"}),
                         headers=["x-request-id: " + rid])
            if r.status == 200:
                sent.append(rid)
            i += 1
    th = threading.Thread(target=load)
    th.start()
    time.sleep(0.8)
    os.rename(path, path + ".1")
    gz.signal(signal.SIGUSR1)
    time.sleep(0.8)
    stop.set()
    th.join(30)
    t.check(len(sent) > 10, "requests answered 200 throughout (%d)" % len(sent))
    t.check(harness.wait_until(lambda: os.path.exists(path), 3),
            "SIGUSR1: access.log recreated at its path")
    time.sleep(0.3)
    old = {e.get("request_id") for e in harness.parse_access_log(path + ".1")}
    new = {e.get("request_id") for e in harness.parse_access_log(path)}
    both = [rid for rid in sent if rid in old and rid in new]
    missing = [rid for rid in sent if rid not in old and rid not in new]
    t.check(len(new & set(sent)) > 0 and len(old & set(sent)) > 0,
            "lines before rotation in access.log.1 (%d), after in access.log (%d)"
            % (len(old & set(sent)), len(new & set(sent))))
    t.check(not missing and not both,
            "every answered request logged exactly once (missing %d, doubled %d)"
            % (len(missing), len(both)))
    with open(gz.cur_err_path, "rb") as f:
        err = f.read().decode("utf-8", "replace")
    t.check("SIGUSR1: access log reopened" in err, "the reopen is logged", gz.stderr_tail(5))


if __name__ == "__main__":
    harness.run(main)
