#!/usr/bin/env python3
"""bench/anchors-ratios.py OUT.tsv — prints issue 13's ratios from one anchors.sh run.

Each figure is pmmux (the PMMUX row: default logging) against its baseline row of the same run;
PMMUX2 is the same build at --log-level warn (bench/anchors-pmmux.sh sets both). A ratio whose
rows are missing from the run prints n/a.
"""
import csv
import sys

rows = {r["path"]: r for r in csv.DictReader(open(sys.argv[1]), delimiter="\t")}


def val(path, col):
    try:
        v = float(rows[path][col])
        return v if v == v else None
    except (KeyError, ValueError):
        return None


def line(what, num, den, target, higher_is_better=True, fmt="{:.2f}x"):
    if num is None or den is None or den == 0:
        print(f"  {what:<58} n/a")
        return
    r = num / den
    ok = r >= target if higher_is_better else r <= target
    sign = ">=" if higher_is_better else "<="
    print(f"  {what:<58} {fmt.format(r):>8}  (target {sign} {fmt.format(target)})  {'met' if ok else 'NOT met'}")


print("== issue 13 targets, pmmux (default logging) against baselines of this run")
line("new connections/s vs HAProxy (close req/s)", val("PMMUX", "close_rps"), val("HAPROXY", "close_rps"), 1.1)
line("close p99 latency vs HAProxy (lower is better)", val("PMMUX", "close_p99_ms"), val("HAPROXY", "close_p99_ms"), 1.0, False)
a, b = val("PMMUX", "close_rps"), val("PMMUX2", "close_rps")
if a is not None and b:
    cost = 1 - a / b
    print(f"  {'log line cost: 1 - default/warn (close req/s)':<58} {cost * 100:>7.1f}%  (target <= 3.0%)  {'met' if cost <= 0.03 else 'NOT met'}")
else:
    print(f"  {'log line cost: 1 - default/warn (close req/s)':<58} n/a (add PMMUX2 to PATHS)")
line("UDP bulk goodput vs nginx stream", val("PMMUX", "udpbulk_gbps"), val("NGINX_STREAM", "udpbulk_gbps"), 2.0)
line("UDP bulk goodput vs direct", val("PMMUX", "udpbulk_gbps"), val("DIRECT", "udpbulk_gbps"), 0.6)
line("UDP ping-pong msg/s vs direct", val("PMMUX", "udp_msg_s"), val("DIRECT", "udp_msg_s"), 0.8)
line("bulk (iperf3) vs direct", val("PMMUX", "iperf_gbps"), val("DIRECT", "iperf_gbps"), 0.8)
line("bulk (iperf3) vs HAProxy", val("PMMUX", "iperf_gbps"), val("HAPROXY", "iperf_gbps"), 1.3)
