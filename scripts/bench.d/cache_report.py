"""scripts/bench --cache: process CPU snapshots, and the report.

  cache_report.py snapshot   "pid ticks comm" of every process, from /proc
  cache_report.py report RESULTS.jsonl OUT.md DAY CORES BCRYPT_CPU_MS COST ROUNDS ROUND PROCS0 PROCS1 "OUR PIDS"
"""
import json
import os
import statistics
import sys

# Two-sided 95 % Student t quantiles by degrees of freedom (1.96 beyond).
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
       9: 2.262, 10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131,
       16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093, 20: 2.086, 25: 2.060, 30: 2.042}


def snapshot():
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = open(f"/proc/{entry}/stat").read()
        except OSError:
            continue
        # comm may hold spaces: it is whatever lies between the parentheses.
        comm = raw[raw.index("(") + 1:raw.rindex(")")].replace(" ", "_")
        fields = raw[raw.rindex(")") + 2:].split()
        print(entry, int(fields[11]) + int(fields[12]), comm)


def mean_ci(xs):
    """Mean and the half-width of its 95 % interval."""
    m = statistics.fmean(xs)
    if len(xs) < 2:
        return m, float("nan")
    t = T95.get(len(xs) - 1) or (2.0 if len(xs) <= 31 else 1.96)
    return m, t * statistics.stdev(xs) / len(xs) ** 0.5


def fmt(xs, digits=0):
    m, h = mean_ci(xs)
    return f"{m:,.{digits}f} ± {h:,.{digits}f}"


def co_tenants(procs0, procs1, ours, seconds, hz):
    """The processes that used the most CPU over the run, ours marked."""
    def read(path):
        out = {}
        for line in open(path):
            pid, ticks, comm = line.split(maxsplit=2)
            out[pid] = (int(ticks), comm.strip())
        return out
    before, after = read(procs0), read(procs1)
    used = []
    for pid, (ticks, comm) in after.items():
        delta = ticks - before.get(pid, (0, comm))[0]
        if delta > 0:
            used.append((delta, pid, comm))
    used.sort(reverse=True)
    shown = []
    for delta, pid, comm in used[:8]:
        mark = " (this run's service)" if pid in ours else ""
        shown.append(f"{comm}{mark} {delta / hz / seconds * 100:.0f} %")
    return ", ".join(shown)


def report(args):
    (results, out, day, cores, bcrypt_ms, cost, rounds, round_s, procs0, procs1, ours) = args
    rows = [json.loads(l) for l in open(results) if l.strip()]
    by = {r["scenario"]: r for r in rows}
    cores, bcrypt_ms, rounds = int(cores), float(bcrypt_ms), int(rounds)
    hz = os.sysconf("SC_CLK_TCK")
    model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    run_seconds = sum(r["seconds"] for r in rows)
    kinds = ["hello", "bare", "cached"]
    rps = {k: [by[f"{k} {i}"]["rps"] for i in range(1, rounds + 1)] for k in kinds}
    p99 = {k: [by[f"{k} {i}"]["p99_ms"] for i in range(1, rounds + 1)] for k in kinds}
    # CPU time per request: less sensitive than req/s to what else runs.
    us = {k: [by[f"{k} {i}"]["cpu_percent"] / 100 / by[f"{k} {i}"]["rps"] * 1e6
              for i in range(1, rounds + 1)] for k in kinds}
    ratio = [c / b for c, b in zip(rps["cached"], rps["bare"])]
    bare_vs_hello = [b / h for b, h in zip(rps["bare"], rps["hello"])]
    names = {"hello": "axum hello-world `GET /health/live` (reference)",
             "bare": "service `GET /health/live` (bare)", "cached": "service `GET /users/{id}` (cached)"}
    lines = [f"# Troupe cache benchmark — {day}", "",
             f"`scripts/bench --cache`. {cores} cores ({model}); release build; wrk, 2 threads, 64 connections; "
             f"{rounds} interleaved rounds of {round_s} (hello, bare, cached, hello, …); the service with its "
             "default configuration (strict coherence, limits counted; limits raised out of the way of one address).",
             f"CPU over the run (% of one core; the co-tenants): {co_tenants(procs0, procs1, ours.split(), run_seconds, hz)}.",
             "", "## Reads: mean ± 95 % interval over the rounds", "",
             "| route | req/s | p99 ms | service CPU µs per request |", "|---|---|---|---|"]
    for k in kinds:
        lines.append(f"| {names[k]} | {fmt(rps[k])} | {fmt(p99[k], 2)} | {fmt(us[k], 1)} |")
    m, h = mean_ci(ratio)
    lines += ["", f"**cached / bare: {m:.2f}× ± {h:.2f}** (per round: {', '.join(f'{x:.2f}' for x in ratio)}); "
              f"bare / hello-world: {fmt(bare_vs_hello, 2)}×.", "",
              "| round | " + " | ".join(f"{k} req/s" for k in kinds) + " | cached / bare |",
              "|---|" + "---|" * (len(kinds) + 1)]
    for i in range(rounds):
        lines.append(f"| {i + 1} | " + " | ".join(f"{rps[k][i]:,.0f}" for k in kinds) + f" | {ratio[i]:.2f} |")
    lines += ["", f"## Sign-up and login against the bcrypt ceiling (cost {cost}, {bcrypt_ms:.1f} ms of CPU a hash)", "",
              "The ceiling is the hashes per second the CPU left to the service could do: the cores minus what "
              "every other process (store, wrk, co-tenants) took during the same scenario, over one hash's CPU time.", "",
              "| scenario | req/s | p50 ms | p99 ms | errors | service CPU | store CPU | wrk CPU | machine CPU | ceiling | vs ceiling |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    verdicts = []
    for name in ("signup", "login"):
        r = by[name]
        # Tick rounding can put the machine a little over its cores.
        others = max(min(r["machine_cpu_percent"], cores * 100) - r["cpu_percent"], 0)
        ceiling = (cores * 100 - others) / 100 / (bcrypt_ms / 1000)
        lines.append(f"| {name} | {r['rps']:.1f} | {r['p50_ms']:.0f} | {r['p99_ms']:.0f} | {r['errors']} | "
                     f"{r['cpu_percent']:.0f} % | {r['store_cpu_percent']:.0f} % | {r['wrk_cpu_percent']:.0f} % | "
                     f"{r['machine_cpu_percent']:.0f} % | {ceiling:.1f}/s ({cores * 100 - others:.0f} % left) | "
                     f"{r['rps'] / ceiling:.2f}× |")
        verdicts.append((f"{name} ≥ 0.8 × the bcrypt ceiling", r["rps"] / ceiling, 0.8))
    lines += [f"", f"(The ceiling ignoring co-tenants, {cores} ÷ {bcrypt_ms / 1000:.4f} s: "
              f"{cores / (bcrypt_ms / 1000):.1f}/s.)", "",
              "## Write cost: `PATCH /users/profile` on one instance (4 connections)", "",
              "| instances running | req/s | p50 ms | p99 ms | errors |", "|---|---|---|---|---|"]
    for n, name in ((1, "patch, 1 instance"), (3, "patch, 3 instances")):
        r = by[name]
        lines.append(f"| {n} | {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['errors']} |")
    verdicts.insert(0, ("cached ≥ 0.9 × bare", statistics.fmean(ratio), 0.9))
    lines += ["", "| target | measured | verdict |", "|---|---|---|"]
    for name, value, limit in verdicts:
        lines.append(f"| {name} | {value:.2f}× | {'PASS' if value >= limit else 'FAIL'} |")
    open(out, "w").write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    if sys.argv[1:2] == ["snapshot"]:
        snapshot()
    elif sys.argv[1:2] == ["report"]:
        report(sys.argv[2:])
    else:
        sys.exit(__doc__)
