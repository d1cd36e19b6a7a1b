#!/usr/bin/python3
"""A fifth city needs only a profile file and a config, no code (issue 3): zhuhai, not among
the four shipped profiles, joins with a profile written here (its own Chinese vocabulary,
k = 8, at most 200 days, no model training, commercial insurance actuarial work forbidden)
next to copies of the shipped four, and a gateway config that holds stroke-registry.
- zhuhai starts on it; a guangzhou firm's proposal in guangzhou's own terms (科研 / 统计分析 /
  伦理审查批准) is translated into zhuhai's (学术研究 / 汇总统计 + 分布统计 / 伦理委员会审批),
  FINALIZED with zhuhai's k = 8 and 200 days, and a query under it is answered;
- a zhuhai firm proposing to guangzhou in zhuhai's terms is understood there (201), and one
  proposing a term of zhuhai's vocabulary it does not have (guangzhou's 科研) is refused 422
  untranslatable, naming the term, the field and zhuhai's profile; model training towards
  zhuhai is refused by zhuhai's rules (operation_refused);
- a profile with a mistake keeps the gateway from starting, naming the file and line."""
import json
import os
import shutil
import subprocess

import harness

SHIPPED = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "conf",
                                       "profiles"))
ZHUHAI = """# Zhuhai health-data space (a test city: not shipped)
city: zhuhai
language: zh-Hans-CN
law: PIPL
purposes:
  - term: 学术研究
    canonical: [scientific_research]
    requires_legal_basis: [ethics_approval]
    description: 学术研究（须经伦理委员会审批）
  - term: 公共卫生监测
    canonical: [public_health]
operations:
  - term: 汇总统计
    canonical: [count, sum, mean]
  - term: 分布统计
    canonical: [histogram, quantiles]
  - term: 机器学习训练
    canonical: [model_training]
legal_bases:
  - term: 伦理委员会审批
    canonical: [ethics_approval]
  - term: 本人同意
    canonical: [consent]
forbidden_purposes: [commercial_insurance_actuarial]
rules: {min_cell_size: 8, max_duration_days: 200, model_training: false, max_queries: 0, max_epsilon: 0}
"""


def main(t):
    profiles = t.path("profiles")
    os.makedirs(profiles)
    for f in os.listdir(SHIPPED):
        shutil.copy(os.path.join(SHIPPED, f), profiles)
    with open(os.path.join(profiles, "zhuhai.yaml"), "w") as f:
        f.write(ZHUHAI)
    gws = harness.federation(t, ["guangzhou", "zhuhai"], [("guangzhou", "zhuhai")],
                             extra_yaml="profiles: %s" % profiles)
    gz, zh = gws["guangzhou"], gws["zhuhai"]
    # zhuhai's data space holds stroke-registry (a city outside the shipped four holds nothing
    # unless its config says so)
    with open(zh.config_path) as f:
        y = f.read()
    y = y.replace("  rows: %d\n" % zh.space_rows,
                  "  rows: %d\n  datasets: [stroke-registry]\n" % zh.space_rows, 1)
    with open(zh.config_path, "w") as f:
        f.write(y)
    zh.start()
    gz.start()
    t.require(gz.wait_peers(10) and zh.wait_peers(10), "guangzhou and zhuhai up and peered")

    def propose(gw, body):
        return gw.query(None, path="/v1/contracts", body=json.dumps(body, ensure_ascii=False))

    r = propose(gz, {"provider": "zhuhai", "datasets": ["zhuhai/stroke-registry"],
                     "purpose": "科研", "operations": ["统计分析"], "legal_basis": "伦理审查批准",
                     "valid_days": 365})
    c = r.json() or {}
    pt, eff = c.get("provider_terms", {}), c.get("effective", {})
    t.check(r.status == 201 and c.get("state") == "FINALIZED" and pt.get("city") == "zhuhai" and
            pt.get("purpose") == "学术研究" and
            sorted(pt.get("operations", [])) == sorted(["汇总统计", "分布统计"]) and
            pt.get("legal_basis") == "伦理委员会审批" and eff.get("min_cell_size") == 8 and
            sorted(eff.get("operations", [])) == ["count", "histogram", "mean", "quantiles", "sum"],
            "a guangzhou firm's contract in guangzhou's terms, held by zhuhai in its own "
            "(学术研究 / 汇总统计 + 分布统计 / 伦理委员会审批), k = 8", r)
    until, frm = eff.get("valid_until", ""), eff.get("valid_from", "")
    days = (ts(until) - ts(frm)) / 86400.0
    t.check(0 < days <= 200, "zhuhai's 200-day limit applies (asked 365: %.0f days)" % days, eff)
    r = gz.query(None, body=json.dumps({"contract": c.get("id", ""), "op": "count",
                                        "dataset": "zhuhai/stroke-registry"}))
    n = ((r.json() or {}).get("result") or {}).get("count")
    t.check(r.status == 200 and n == zh.space_rows,
            "a count under it: zhuhai answers over the federation (%s rows)" % n, r)

    r = propose(zh, {"provider": "guangzhou", "datasets": ["guangzhou/cerebral-infarction"],
                     "purpose": "学术研究", "operations": ["汇总统计"],
                     "legal_basis": "伦理委员会审批", "valid_days": 100})
    c2 = r.json() or {}
    t.check(r.status == 201 and c2.get("provider_terms", {}).get("purpose") == "科研",
            "a zhuhai firm's proposal in zhuhai's terms, held by guangzhou as 科研", r)
    r = propose(zh, {"provider": "guangzhou", "datasets": ["guangzhou/cerebral-infarction"],
                     "purpose": "科研", "operations": ["汇总统计"],
                     "legal_basis": "伦理委员会审批", "valid_days": 100})
    refs = ((r.json() or {}).get("error") or {}).get("refusals") or []
    t.check(r.status == 422 and r.error_code() == "untranslatable" and
            any(x.get("term") == "科研" and x.get("field") == "purpose" and
                x.get("profile") == "zhuhai" for x in refs),
            "guangzhou's 科研 in a zhuhai firm's proposal: 422 untranslatable (term, field, "
            "profile zhuhai)", r)
    r = propose(gz, {"provider": "zhuhai", "datasets": ["zhuhai/stroke-registry"],
                     "purpose": "科研", "operations": ["统计分析", "模型训练"],
                     "legal_basis": "伦理审查批准", "valid_days": 30})
    codes = [x.get("code") for x in ((r.json() or {}).get("error") or {}).get("refusals") or []]
    t.check(r.status == 422 and "operation_refused" in codes,
            "model training towards zhuhai: refused by zhuhai's rules (operation_refused)", r)

    # a mistake in the new profile: the gateway does not start, and says where
    zh.stop()
    with open(os.path.join(profiles, "zhuhai.yaml"), "w") as f:
        f.write(ZHUHAI.replace("canonical: [count, sum, mean]", "canonical: [count, summ]"))
    p = subprocess.run([harness.baygate_bin(), "--check-config", zh.config_path],
                       capture_output=True, text=True, timeout=30)
    out = p.stdout + p.stderr
    t.check(p.returncode != 0 and "zhuhai.yaml:" in out and "summ" in out,
            "a profile naming an unknown canonical operation: refused with file:line", out[-600:])


def ts(iso):
    import calendar
    import time
    return calendar.timegm(time.strptime(iso, "%Y-%m-%dT%H:%M:%SZ")) if iso else 0


if __name__ == "__main__":
    harness.run(main)
