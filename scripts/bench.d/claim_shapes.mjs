// The shapes a batch take could have, timed against each other on one store
// (results/claim-shapes-*.md). Needs the `mongodb` npm package: run it from
// scripts/bench --drain's Agenda install, e.g.
//   cp scripts/bench.d/claim_shapes.mjs ~/.cache/troupe-bench/agenda-*/ &&
//   node ~/.cache/troupe-bench/agenda-*/claim_shapes.mjs mongodb://127.0.0.1:27100 mydb_shapes 10000 3
// It drops and refills `jobs` in DB (use a database of your own) with TOTAL
// pending noop jobs, then, ROUNDS times, interleaved, takes batches of 8 and
// 32 jobs each way; prints the median per batch and per job, one JSON line each.
import { MongoClient, ObjectId } from 'mongodb';

const [uri, dbName, total, rounds] = [process.argv[2], process.argv[3], +process.argv[4], +process.argv[5]];
const client = new MongoClient(uri, { maxPoolSize: 16 });
const jobs = client.db(dbName).collection('jobs');
await jobs.drop().catch(() => {});
const created = new Date(Date.now() - 1000);
for (let i = 0; i < total; i += 1000) {
  const docs = Array.from({ length: Math.min(1000, total - i) }, () => ({
    _id: new ObjectId(), type: 'noop', payload: {}, status: 'pending', attempts: 0, maxAttempts: 5,
    runAt: created, createdAt: created, updatedAt: created, rank: created, priority: 0, lockedBy: null, lockedUntil: null,
  }));
  await jobs.insertMany(docs, { ordered: false });
}
const all = (await jobs.find({}).project({ _id: 1 }).toArray()).map(d => d._id);
let next = 0;
const batchOf = n => all.slice(next, (next += n));
// The single take's filter and update (queue::store::claim), with a token.
const fence = extra => ({ ...extra, status: 'pending', attempts: 0, runAt: { $lte: new Date() }, type: { $in: ['noop', 'sleep'] } });
const take = token => ({
  $set: { status: 'processing', lockedBy: 'shapes', lockedUntil: new Date(Date.now() + 30000), updatedAt: new Date(), claim: token },
  $inc: { attempts: 1 },
});
const shapes = {
  'findAndModify by _id, 8 in flight': async (ids) => {
    let i = 0;
    await Promise.all(Array.from({ length: 8 }, async () => {
      while (i < ids.length) await jobs.findOneAndUpdate(fence({ _id: ids[i++] }), take('each'), { returnDocument: 'after' });
    }));
    return ids.length;
  },
  'one update of a statement per job, then find by token': async (ids, token) => {
    await jobs.bulkWrite(ids.map(id => ({ updateOne: { filter: fence({ _id: id }), update: take(token) } })), { ordered: false });
    return (await jobs.find({ claim: token }).toArray()).length;
  },
  'one updateMany _id $in, then find by token': async (ids, token) => {
    await jobs.updateMany(fence({ _id: { $in: ids } }), take(token));
    return (await jobs.find({ claim: token }).toArray()).length;
  },
};
const times = {};
for (let round = 0; round < rounds; round++) {
  for (const n of [8, 32]) {
    for (const [shape, run] of Object.entries(shapes)) {
      const ids = batchOf(n);
      const started = performance.now();
      const got = await run(ids, `t${round}-${n}-${shape.length}`);
      const ms = performance.now() - started;
      if (got !== n) console.error(`${shape}: took ${got} of ${n}`);
      (times[`${n}\t${shape}`] ||= []).push(ms);
    }
  }
}
for (const [key, list] of Object.entries(times)) {
  const [n, shape] = key.split('\t');
  list.sort((a, b) => a - b);
  const median = list[list.length >> 1];
  console.log(JSON.stringify({ jobs: total, batch: +n, shape, median_ms: Math.round(median), per_job_ms: +(median / n).toFixed(1), runs: list.length }));
}
await jobs.drop();
await client.close();
