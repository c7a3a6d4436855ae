"""results/drain-<date>.md from scripts/bench --drain's rows (drain.py,
agenda/drain.mjs, troupe-bench claims; one JSON object a line).

  drain_report.py ROWS OUT.md DAY CORES PROFILE EXECUTORS AGENDA_SECONDS BIG_JOBS TIMEOUT
"""
import json
import sys

rows_file, out, day, cores, profile, executors, agenda_seconds, big, timeout = sys.argv[1:]
rows = [json.loads(line) for line in open(rows_file) if line.strip()]
kind = lambda k: [r for r in rows if r.get("kind") == k]
troupe, agenda, single = kind("troupe"), kind("agenda"), kind("single")
claims = next(iter(kind("claims")), None)
explain = next((r for r in kind("explain") if not r.get("gin")), None)
# The same plans with GIN indexes on `_id` (FerretDB v1 on PostgreSQL; scripts/ferretdb-gin-indexes).
explain_gin = next((r for r in kind("explain") if r.get("gin")), None)
bound = next(iter(kind("bound")), None)


def num(v, digits=0, unit=""):
    return "n/a" if v is None else f"{v:,.{digits}f}{unit}"


def commands(r, key):
    c = r.get(key)
    return "n/a" if c is None else f"{c['per_job']:.2f}"


def cpu(r):
    c = r.get("cpu_ms_per_job")
    return "n/a" if c is None else " / ".join(f"{c[k]:.1f}" for k in ("service", "ferretdb", "postgres", "machine"))


def split(r):
    counts = sorted(r.get("by_instance", {}).values(), reverse=True)
    return " / ".join(f"{c:,}" for c in counts) if len(counts) > 1 else "–"


lines = [f"# Troupe job drain beside Agenda — {day}", "",
         f"`scripts/bench --drain`, one run on a shared machine ({cores} cores, shared with other builds and "
         f"benchmarks), {profile} build, default configuration ({executors} executors per instance); "
         "FerretDB v1.24.2 on PostgreSQL and Redis as in `scripts/services`. Only the ratios within this "
         "file mean anything; the scenarios ran one after another, not interleaved.", "",
         "Troupe's jobs are enqueued in bulk by `troupe-bench enqueue` (direct `insert` commands of 1,000 "
         "jobs; the service has no bulk enqueue API) while the instances run; a drain lasts from the first "
         "insert to the last `completedAt`. Enqueue→start: a job's `createdAt` to its first attempt's "
         "`startedAt`, both read from the store afterwards. Store commands per job: the instances' "
         "`/metrics` before and after (`troupe_store_commands_total`; n/a where the build lacks it), and "
         "the driver's `troupe_mongodb_commands_total`. CPU ms per job: the instances' own, FerretDB's, "
         "PostgreSQL's and the whole machine's (everything on it, the co-tenants too) over the drain, from /proc.", "",
         "## Drains", "",
         "| queue | jobs | instances | drained | jobs/s | store cmds/job | driver cmds/job | CPU ms/job: instances / FerretDB / PostgreSQL / machine | enqueue→start p50 / p99 / max | attempts per started job | jobs per instance |",
         "|---|---|---|---|---|---|---|---|---|---|---|"]
for r in troupe:
    drained = f"{r['completed']:,}" + (f" (timed out at {timeout} s)" if r.get("timed_out") else "")
    lat = r["latency_ms"]
    lines.append(
        f"| Troupe, {r['scenario']} | {r['jobs']:,} | {r['instances']} | {drained} | {num(r.get('jobs_per_second'), 1)} | "
        f"{commands(r, 'store_commands')} | {commands(r, 'driver_commands')} | {cpu(r)} | "
        f"{num(lat['p50'], 0, ' ms')} / {num(lat['p99'], 0, ' ms')} / {num(lat['max'], 0, ' ms')} | "
        f"{r['attempts'] / max(r['started'], 1):.2f} | {split(r)} |")
if bound:
    projected = f"{int(bound['jobs']) / float(bound['rate']):,.0f} s" if float(bound["rate"]) > 0 else "never"
    lines.append(f"| Troupe | {int(bound['jobs']):,} | 1 | not run: the first drain's rate projects {projected} "
                 "(over 10 minutes) | | | | | | | |")
for r in agenda:
    if "error" in r:
        lines.append(f"| Agenda | {r['jobs']:,} | 1 | {r['error']} | | | | | | | |")
        continue
    drained = f"{r['drained']:,}" + (f" in the {agenda_seconds} s allowed" if r["timed_out"] else "")
    lines.append(f"| Agenda {'(time-boxed) ' if r['timed_out'] else ''}| {r['jobs']:,} | 1 | {drained} | "
                 f"{r['jobs_per_second']:.1f} | | | | | {r['runs'] / max(r['drained'], 1):.2f} runs | – |")
if claims:
    lines += ["", f"Raw one-by-one claim loops on the same store over {claims['pending']:,} pending documents "
              f"(each for at most the time allowed): oldest-first `findOneAndUpdate` "
              f"{claims['claims_per_second']:.1f} claims/s, `findOneAndUpdate` by `_id` "
              f"{claims['by_id_claims_per_second']:.0f} claims/s."]
if any("error" not in r for r in agenda):
    lines += ["", f"Agenda {agenda[0].get('version', '6')} (npm `agenda` with `@agendajs/mongo-backend`, "
              f"`scripts/bench.d/agenda/`): one process, its own database on the same FerretDB, "
              f"`maxConcurrency`, `defaultConcurrency`, `lockLimit` and `defaultLockLimit` all {executors}, "
              "`processEvery` 100 ms; jobs enqueued with its own `now()` before it starts. \"runs\": its "
              "completions per job — above 1 where it ran a job more than once (on FerretDB, whose "
              "`findAndModify` reads and then writes, two of its lock queries can take the same job)."]

lines += ["", "## A single job into an idle queue", "",
          "| enqueued on | started on | jobs | enqueue→start median | max |", "|---|---|---|---|---|"]
for r in single:
    where = "the same instance" if r["scenario"] == "own instance" else "one of three others (the enqueuing instance runs no job)"
    lines.append(f"| {'an instance running it' if r['scenario'] == 'own instance' else 'an instance without executors'} "
                 f"| {where} | {r['started']} | {num(r['latency_ms']['p50'], 0, ' ms')} | {num(r['latency_ms']['max'], 0, ' ms')} |")

rate = lambda r: (r or {}).get("jobs_per_second")
# The rounds of Troupe's first drain and Agenda's first backlog, paired in order.
first = troupe[0]["jobs"] if troupe else None
ones = [r for r in troupe if r["instances"] == 1 and r["jobs"] == first and "beside" not in r and not r.get("gin")]
# The same drains with GIN indexes on `_id`, paired with `ones` by round.
gins = [r for r in troupe if r.get("gin")]
# The same drains with a limit in force on another type, paired with `ones` by round.
besides = [r for r in troupe if "beside" in r]
firsts = [r for r in agenda if "error" not in r and r["jobs"] == (agenda[0]["jobs"] if agenda else None)]
one = ones[0] if ones else None
median = lambda xs: sorted(xs)[(len(xs) - 1) // 2] if xs else None
three = next((r for r in troupe if r["instances"] == 3), None)
targets = []
if ones:
    rates = [rate(r) for r in ones if rate(r) is not None]
    shown = num(median(rates), 1, " jobs/s") + (f" (median of {', '.join(f'{x:.1f}' for x in rates)})" if len(rates) > 1 else "")
    targets.append(("Troupe, one instance ≥ 1,000 jobs/s", shown, bool(rates) and median(rates) >= 1000))
if ones and firsts:
    ratios = [rate(o) / a["jobs_per_second"] for o, a in zip(ones, firsts) if rate(o) and a["jobs_per_second"]]
    shown = num(median(ratios), 0, "×") + (f" (per round {', '.join(f'{x:.0f}×' for x in ratios)})" if len(ratios) > 1 else "")
    targets.append((f"Troupe, one instance ≥ 200× Agenda ({firsts[0]['jobs']:,} jobs)", shown,
                    bool(ratios) and median(ratios) >= 200))
if ones and besides:
    ratios = [rate(b) / rate(o) for o, b in zip(ones, besides) if rate(o) and rate(b)]
    shown = num(median(ratios), 2, "×") + (f" (per round {', '.join(f'{x:.2f}×' for x in ratios)})" if len(ratios) > 1 else "")
    targets.append((f"unlimited jobs with {besides[0]['beside']} / without (issue #28: not slowed)", shown, None))
if ones and gins:
    ratios = [rate(g) / rate(o) for o, g in zip(ones, gins) if rate(o) and rate(g)]
    shown = num(median(ratios), 2, "×") + (f" (per round {', '.join(f'{x:.2f}×' for x in ratios)})" if len(ratios) > 1 else "")
    targets.append(("one instance with GIN indexes on `_id` / without (FerretDB v1: scripts/ferretdb-gin-indexes)", shown, None))
if one and claims:
    targets.append(("Troupe, one instance / raw by-id claim loop", f"{rate(one) / claims['by_id_claims_per_second']:.2f}×", None))
if one and three and rate(one) and rate(three):
    targets.append(("three instances / one", f"{rate(three) / rate(one):.2f}×", None))
own = next((r for r in single if r["scenario"] == "own instance"), None)
if own:
    p50 = own["latency_ms"]["p50"]
    targets.append(("single job on its own instance ≤ ~50 ms (median)", num(p50, 0, " ms"), p50 is not None and p50 <= 50))
lines += ["", "## Ratios and targets (issue #27)", "", "| | measured | verdict |", "|---|---|---|"]
lines += [f"| {name} | {value} | {'–' if ok is None else 'PASS' if ok else 'FAIL'} |" for name, value, ok in targets]

# What MongoDB would do with the indexes `jobs` has (see actors/src/queue/store/mod.rs).
MONGODB = {
    "listing: due pending jobs in rank order": "IXSCAN `status_1_rank_1` (status equality, in rank order), FETCH filters `runAt`/`type`, stops at the limit",
    "listing: expired leases": "IXSCAN `status_1_lockedUntil_1` (bounded to expired leases), then an in-memory SORT of those by `createdAt`",
    "claim by id (findAndModify's query, planned as a find)": "IDHACK: one `_id` index lookup",
    "finish by id (update's q, planned as a find)": "IDHACK: one `_id` index lookup",
    "batch by ids (update's q with _id $in, planned as a find)": "IXSCAN `_id_`: one seek per id",
    "attempt record by id (find)": "IDHACK: one `_id` index lookup",
}
if explain:
    lines += ["", "## Where the store scans", "",
              f"`explain` (query planner only) of each query shape, read while the {explain['jobs']:,}-job backlog waited "
              f"(`troupe-bench explain`). Indexes on `jobs`: {', '.join(f'`{i}`' for i in explain['indexes']) or 'none'}.", "",
              "| query | this store's plan | with GIN indexes on `_id` | MongoDB with these indexes |",
              "|---|---|---|---|"]
    shown = lambda p: (p.get("summary") or f"explain refused: {p.get('error')}").replace("|", "\\|")
    with_gin = {p["query"]: shown(p) for p in (explain_gin or {}).get("plans", [])}
    for p in explain["plans"]:
        lines.append(f"| {p['query']} | {shown(p)} | {with_gin.get(p['query'], 'not run')} | {MONGODB.get(p['query'], '')} |")

for r in troupe:
    for key, name in (("store_commands", "troupe_store_commands_total"), ("driver_commands", "troupe_mongodb_commands_total")):
        c = r.get(key)
        if c and c["by_label"]:
            parts = ", ".join(f"{label} {v}" for label, v in c["by_label"])
            lines += ["", f"Per job, {r['jobs']:,} jobs on {r['instances']} instance(s), `{name}`: {parts}."]

open(out, "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
