"""scripts/bench --drain's scenarios, one JSON line each on stdout.

  drain.py run LABEL TOOL URI DB N TAG TIMEOUT EXPLAIN URL...
      N `noop` jobs enqueued in bulk (troupe-bench enqueue) while the
      instances at URL... run; waits until all are completed or TIMEOUT
      seconds; reads back the drain (troupe-bench latency) and what the
      instances' /metrics counted meanwhile (store commands per job).
      EXPLAIN=1: also the query plans, read while the backlog waits.
      CPU per job, from /proc: the instances (their pids in DRAIN_PIDS),
      FerretDB, PostgreSQL and the whole machine (`cpu_ms_per_job`).
      With DRAIN_BESIDE set, the row says what else the queue held
      meanwhile (its `beside`): see `hold`. With DRAIN_GIN=1, the row and
      its plans say the store had GIN indexes on `_id` (`gin`; created by
      scripts/bench with scripts/ferretdb-gin-indexes).
  drain.py hold URL OPS_TOKEN N
      A fleet-wide limit in force beside the drain: `sleep` limited to one
      start an hour (PUT URL/jobs/limits/sleep), and N `sleep` jobs
      enqueued, all but one of them held back by it. The noop jobs are
      not limited; what they pay for the limit's existence (a read of the
      tokens per listing and per batch) is what the drain shows.
  drain.py unhold URL OPS_TOKEN
      Remove that limit.
  drain.py single LABEL TOOL URI DB TAG REPEATS URL OPS_TOKEN
      REPEATS jobs, one at a time into an idle queue, each through
      POST URL/jobs and waited for (GET URL/jobs/{id}); enqueue→start
      median and max from the store.

The store's ceiling is the tool's own (`troupe-bench claims`); Agenda is
scripts/bench.d/agenda/drain.mjs.
"""
import json
import os
import random
import re
import subprocess
import sys
import time
import urllib.request
from collections import defaultdict

SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")
# Written by the completion work of issue #27; absent before it: "n/a".
STORE_COMMANDS = "troupe_store_commands_total"
# Every command the driver sent, by command name (older, always there).
DRIVER_COMMANDS = "troupe_mongodb_commands_total"
EXECUTIONS = "troupe_job_execution_duration_seconds_count"
# ops.metrics_reuse (1 s by default): a scrape may get a rendering this old.
METRICS_REUSE = 1.1


def tool(*args):
    out = subprocess.run([str(a) for a in args], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1]) if out.strip() else None


def scrape(urls):
    """Every sample of every instance's /metrics, summed by (name, labels)."""
    totals = defaultdict(float)
    for url in urls:
        with urllib.request.urlopen(f"{url}/metrics", timeout=10) as reply:
            text = reply.read().decode()
        for line in text.splitlines():
            match = SAMPLE.match(line)
            if match and not line.startswith("#"):
                try:
                    totals[(match[1], match[2] or "")] += float(match[3])
                except ValueError:
                    pass
    return totals


def family(samples, name):
    return {labels: v for (n, labels), v in samples.items() if n == name}


def per_job(before, after, name, jobs):
    """Commands of `name` sent between the scrapes, per job: the total and
    the largest labels; None if no instance exports `name`."""
    b, a = family(before, name), family(after, name)
    if not a:
        return None
    delta = {labels: a[labels] - b.get(labels, 0.0) for labels in a}
    parts = sorted(((v / jobs, labels.strip("{}")) for labels, v in delta.items() if v > 0), reverse=True)
    return {"per_job": sum(delta.values()) / jobs, "by_label": [[l, round(v, 3)] for v, l in parts[:8]]}


def wait_drained(tool_, uri, db, tag, jobs, urls, timeout, before):
    """Until the store says all `jobs` are completed, or `timeout` seconds.
    The instances' execution counters say when to look (a count scans the
    whole collection on FerretDB, so the store is asked only then, or every
    2 s where the counter is missing). True if it timed out. `before`: the
    scrape from before the first job was enqueued."""
    deadline = time.monotonic() + timeout
    ran0 = sum(family(before, EXECUTIONS).values())
    while time.monotonic() < deadline:
        time.sleep(0.25)
        ran = family(scrape(urls), EXECUTIONS)
        if ran and sum(ran.values()) - ran0 < jobs:
            continue
        if tool(tool_, "count", uri, db, tag)["completed"] >= jobs:
            return False
        time.sleep(0.75 if ran else 1.75)
    return True


def cpu_ticks(pids):
    """CPU ticks (user + system) of the instances (`pids`), of FerretDB, of
    PostgreSQL (its backends come and go: per pid, an undercount of those
    that exit meanwhile) and of the whole machine (not steal)."""
    ticks = {"service": {}, "ferretdb": {}, "postgres": {}}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            stat = open(f"/proc/{pid}/stat").read()
        except OSError:
            continue
        comm, fields = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2:].split()
        who = "service" if pid in pids else comm if comm in ("ferretdb", "postgres") else None
        if who:
            ticks[who][pid] = int(fields[11]) + int(fields[12])
    cpu = open("/proc/stat").readline().split()[1:]
    ticks["machine"] = {"all": sum(int(cpu[i]) for i in (0, 1, 2, 5, 6))}
    return ticks


def cpu_per_job(before, after, jobs):
    """CPU ms per completed job of each of cpu_ticks' groups between two readings."""
    hz = os.sysconf("SC_CLK_TCK")
    return {who: round(sum(t - before[who].get(pid, 0) for pid, t in after[who].items()) / hz * 1000 / jobs, 2)
            for who in after}


def run(label, tool_, uri, db, jobs, tag, timeout, explain, *urls):
    jobs, timeout = int(jobs), float(timeout)
    pids = set(os.environ.get("DRAIN_PIDS", "").split())
    cpu0 = cpu_ticks(pids)
    before = scrape(urls)
    enqueued = tool(tool_, "enqueue", uri, db, jobs, tag)
    plans = tool(tool_, "explain", uri, db) if explain == "1" else None
    timed_out = wait_drained(tool_, uri, db, tag, jobs, urls, timeout, before)
    cpu1 = cpu_ticks(pids)
    time.sleep(METRICS_REUSE)
    after = scrape(urls)
    drained = tool(tool_, "latency", uri, db, tag, enqueued["started_ms"])
    row = {"kind": "troupe", "scenario": label, "instances": len(urls), "timed_out": timed_out,
           "enqueue_seconds": enqueued["enqueue_seconds"],
           "store_commands": per_job(before, after, STORE_COMMANDS, jobs),
           "driver_commands": per_job(before, after, DRIVER_COMMANDS, jobs),
           "cpu_ms_per_job": cpu_per_job(cpu0, cpu1, max(drained.get("completed") or jobs, 1)), **drained}
    if os.environ.get("DRAIN_BESIDE"):
        row["beside"] = os.environ["DRAIN_BESIDE"]
    gin = os.environ.get("DRAIN_GIN") == "1"
    if gin:
        row["gin"] = True
    print(json.dumps(row))
    if plans:
        print(json.dumps({"kind": "explain", "jobs": jobs, "gin": gin, **plans}))


def request(method, url, token, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"authorization": f"Bearer {token}", "content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as reply:
        body = reply.read()
        return json.loads(body) if body else None


def hold(url, token, jobs):
    request("PUT", f"{url}/jobs/limits/sleep", token, {"rate": {"limit": 1, "period": "1h"}})
    for _ in range(int(jobs)):
        request("POST", f"{url}/jobs", token, {"type": "sleep", "payload": {"ms": 0}})


def unhold(url, token):
    request("DELETE", f"{url}/jobs/limits/sleep", token)


def single(label, tool_, uri, db, tag, repeats, url, token):
    for _ in range(int(repeats)):
        # The queue is idle between jobs; a random pause spreads the
        # enqueues over the phase of the instances' poll ticks.
        time.sleep(random.uniform(0.3, 0.7))
        job = request("POST", f"{url}/jobs", token, {"type": "noop", "payload": {"bench": tag}})
        deadline = time.monotonic() + 30
        while request("GET", f"{url}/jobs/{job['id']}", token)["status"] != "completed":
            if time.monotonic() > deadline:
                raise SystemExit(f"drain.py: job {job['id']} not completed within 30 s")
            time.sleep(0.02)
    row = tool(tool_, "latency", uri, db, tag)
    print(json.dumps({"kind": "single", "scenario": label, "repeats": int(repeats), **row}))


if __name__ == "__main__":
    {"run": run, "single": single, "hold": hold, "unhold": unhold}[sys.argv[1]](*sys.argv[2:])
