"""forgot.py BASE EMAILS N OUT.md DAY CORES: POST /users/password/forgot N
times for addresses with an account (EMAILS, one a line, taken in turn) and
N times for addresses without one, interleaved in a random order on one
keep-alive connection, so a slow spell of the shared machine hits both
alike. Writes the two latency distributions (p50, p90, p99, mean) to OUT.md
and prints them as one JSON line. Every answer must be 202 with the same
body."""
import http.client
import json
import random
import statistics
import sys
import time
import urllib.parse
import uuid

base, emails_file, n, out, day, cores = sys.argv[1:]
n = int(n)
url = urllib.parse.urlparse(base)
known = [l.strip() for l in open(emails_file) if l.strip()]
plan = ["known"] * n + ["unknown"] * n
random.shuffle(plan)
conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
times = {"known": [], "unknown": []}
bodies = set()
for i, kind in enumerate(plan):
    email = known[i % len(known)] if kind == "known" else f"nobody-{uuid.uuid4().hex}@example.com"
    body = json.dumps({"email": email})
    start = time.perf_counter()
    conn.request("POST", "/users/password/forgot", body, {"content-type": "application/json"})
    response = conn.getresponse()
    text = response.read()
    times[kind].append((time.perf_counter() - start) * 1000)
    if response.status != 202:
        sys.exit(f"forgot answered {response.status}: {text!r}")
    bodies.add(text)
if len(bodies) != 1:
    sys.exit(f"forgot answered {len(bodies)} different bodies")


def summary(ms):
    q = statistics.quantiles(ms, n=100)
    return {"p50_ms": round(q[49], 3), "p90_ms": round(q[89], 3), "p99_ms": round(q[98], 3),
            "mean_ms": round(statistics.fmean(ms), 3)}


result = {"requests_each": n, "known": summary(times["known"]), "unknown": summary(times["unknown"])}
rows = [f"| {kind} | {n} | {s['p50_ms']:.2f} | {s['p90_ms']:.2f} | {s['p99_ms']:.2f} | {s['mean_ms']:.2f} |"
        for kind, s in (("address with an account", result["known"]), ("address without one", result["unknown"]))]
lines = [f"# Troupe forgot-password timing — {day}", "",
         f"{cores} cores, a shared machine (indicative figures). `POST /users/password/forgot`, {n} requests "
         f"for each kind of address, interleaved at random on one keep-alive connection; addresses with an "
         f"account taken in turn from {len(known)} seeded users (each is mailed at most `auth.account_mails`; "
         "the lookup and the mail run after the answer either way). Every answer: 202, one body.", "",
         "| address | requests | p50 ms | p90 ms | p99 ms | mean ms |", "|---|---|---|---|---|---|", *rows]
open(out, "w").write("\n".join(lines) + "\n")
print(json.dumps(result))
