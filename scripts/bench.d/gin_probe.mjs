// What one command by `_id` costs on FerretDB v1 with and without GIN indexes on `_id`
// (results/gin-*.md). Needs the `mongodb` npm package: run it from scripts/bench --drain's Agenda install, e.g.
//   cp scripts/bench.d/gin_probe.mjs ~/.cache/troupe-bench/agenda-*/ &&
//   node ~/.cache/troupe-bench/agenda-*/gin_probe.mjs mongodb://127.0.0.1:27017 mydb_gin 2000,10000 200
// For each TOTAL it drops and refills `jobs` and `job_attempts` in DB (use a database of your own) with TOTAL
// pending noop jobs and as many attempt records, then, without and with the GIN indexes, twice each, interleaved
// (scripts/ferretdb-gin-indexes DB), times OPS sequential commands of each shape the queue sends per job, each on
// a job not touched before; prints the median per command, one JSON line each. Drops both collections at the end.
import { execFileSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MongoClient, ObjectId } from 'mongodb';

const [uri, dbName, totals, ops] = [process.argv[2], process.argv[3], process.argv[4].split(',').map(Number), +process.argv[5]];
// Beside this file in the repository, or in the repository given by TROUPE_ROOT (the copy in the npm cache).
const root = process.env.TROUPE_ROOT || join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const gin = (...args) => execFileSync(join(root, 'scripts', 'ferretdb-gin-indexes'), [...args, dbName], { stdio: 'ignore' });
const client = new MongoClient(uri, { maxPoolSize: 4 });
const db = client.db(dbName);
const jobs = db.collection('jobs');
const attempts = db.collection('job_attempts');

async function fill(total) {
  await jobs.drop().catch(() => {});
  await attempts.drop().catch(() => {});
  const created = new Date(Date.now() - 1000);
  const ids = [];
  for (let i = 0; i < total; i += 1000) {
    const docs = Array.from({ length: Math.min(1000, total - i) }, () => ({
      _id: new ObjectId(), type: 'noop', payload: {}, status: 'pending', attempts: 0, maxAttempts: 5,
      runAt: created, createdAt: created, updatedAt: created, rank: created, priority: 0, lockedBy: null, lockedUntil: null,
    }));
    await jobs.insertMany(docs, { ordered: false });
    await attempts.insertMany(docs.map(d => ({ _id: `${d._id}:0`, jobId: d._id, attempt: 0, startedAt: created })), { ordered: false });
    ids.push(...docs.map(d => d._id));
  }
  return ids;
}

// The shapes: the claim (queue::store::claim), the end's two updates (queue::store::finish), a record read.
const shapes = {
  'findAndModify jobs by _id (the claim)': id => jobs.findOneAndUpdate(
    { _id: id, status: 'pending', attempts: 0, runAt: { $lte: new Date() }, type: { $in: ['noop', 'sleep'] } },
    { $set: { status: 'processing', lockedBy: 'probe', lockedUntil: new Date(Date.now() + 30000) }, $inc: { attempts: 1 } },
    { returnDocument: 'after' }),
  'update jobs by _id (the end)': id => jobs.updateOne({ _id: id, attempts: 1, status: 'processing' },
    { $set: { status: 'completed', completedAt: new Date(), lockedBy: null, lockedUntil: null } }),
  'update job_attempts by _id (the end)': id => attempts.updateOne({ _id: `${id}:0` }, { $set: { outcome: 'completed', endedAt: new Date() } }),
  'find job_attempts by _id': id => attempts.findOne({ _id: `${id}:0` }),
};

for (const total of totals) {
  const ids = await fill(total);
  let next = 0;
  // Interleaved: without, with, without, with (the machine is shared; a slow spell hits both alike).
  for (const indexed of [false, true, false, true]) {
    if (indexed) gin();
    const slice = ids.slice(next, (next += ops));
    for (const [shape, run] of Object.entries(shapes)) {
      const times = [];
      for (const id of slice) {
        const started = performance.now();
        await run(id);
        times.push(performance.now() - started);
      }
      times.sort((a, b) => a - b);
      const median = times[times.length >> 1];
      console.log(JSON.stringify({ jobs: total, gin: indexed, shape, median_ms: +median.toFixed(2), p90_ms: +times[Math.floor(times.length * 0.9)].toFixed(2), ops: times.length }));
    }
    if (indexed) gin('--drop');
  }
}
await jobs.drop();
await attempts.drop();
await client.close();
