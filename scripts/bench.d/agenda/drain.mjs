// Agenda (npm `agenda`, MongoDB backend) drains a backlog of no-op jobs on the
// store Troupe uses, for `scripts/bench --drain`.
//
//   node drain.mjs URI DB JOBS POOL SECONDS
//
// Enqueues JOBS `noop` jobs with Agenda's own `now()` (one insert each, before
// processing starts), then starts one Agenda process whose concurrency and
// lock limits are all POOL (Troupe's executor pool) and which polls every
// 100 ms, and counts `complete:noop` events until all are done or SECONDS
// have passed. Prints one JSON line (`drained`: distinct jobs completed;
// `runs`: completions, more than `drained` when a job ran twice); drops DB at
// the end.
import { Agenda } from 'agenda';
import { MongoBackend } from '@agendajs/mongo-backend';
import { MongoClient } from 'mongodb';
import { readFileSync } from 'node:fs';

const [uri, dbName, jobsArg, poolArg, secondsArg] = process.argv.slice(2);
const jobs = Number(jobsArg);
const pool = Number(poolArg);
const limitMs = Number(secondsArg) * 1000;
if (!uri || !dbName || !(jobs > 0) || !(pool > 0) || !(limitMs > 0)) {
  console.error('usage: node drain.mjs URI DB JOBS POOL SECONDS');
  process.exit(2);
}

const client = await MongoClient.connect(uri);
const db = client.db(dbName);
const agenda = new Agenda({
  backend: new MongoBackend({ mongo: db }),
  processEvery: 100,
  maxConcurrency: pool,
  defaultConcurrency: pool,
  lockLimit: pool,
  defaultLockLimit: pool,
});
agenda.define('noop', async () => {});
await agenda.ready;

const enqueueStarted = performance.now();
for (let i = 0; i < jobs; i++) await agenda.now('noop', { bench: 'agenda', n: i });
const enqueueSeconds = (performance.now() - enqueueStarted) / 1000;

// FerretDB's findAndModify is not atomic (it reads, then writes by _id), so
// two of Agenda's lock queries can take one job: count distinct jobs, and
// the runs beyond one per job apart.
const done = new Set();
let runs = 0;
let failed = 0;
const finished = new Promise((resolve) => {
  agenda.on('fail:noop', () => { failed += 1; });
  agenda.on('complete:noop', (job) => {
    runs += 1;
    done.add(String(job.attrs._id));
    if (done.size >= jobs) resolve();
  });
});
const started = performance.now();
await agenda.start();
const timedOut = await Promise.race([
  finished.then(() => false),
  new Promise((resolve) => setTimeout(() => resolve(true), limitMs).unref()),
]);
const seconds = (performance.now() - started) / 1000;
const { version } = JSON.parse(
  readFileSync(new URL('./node_modules/agenda/package.json', import.meta.url)),
);
console.log(JSON.stringify({
  version, jobs, drained: done.size, runs, failed, pool, seconds, enqueue_seconds: enqueueSeconds,
  jobs_per_second: done.size / seconds, timed_out: timedOut,
}));
// A time-boxed Agenda still has work in flight after stop() (lock queries,
// unlocks of the jobs it held), which fails once the database is gone: the
// figures are out, so such failures end the process quietly, as does the
// drop (closing the client under them would throw too).
const quit = () => process.exit(0);
process.on('uncaughtException', quit);
process.on('unhandledRejection', quit);
await agenda.stop().catch(() => {});
await db.dropDatabase().catch((err) => console.error(`agenda: drop ${dbName}: ${err.message}`));
quit();
