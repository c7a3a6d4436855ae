//! `troupe-bench`: the parts of `scripts/bench` that a shell cannot do well.
//!
//! - `bcrypt COST`: milliseconds for one bcrypt hash at COST on this machine.
//! - `drain URI DB N SECONDS`: insert N `noop` jobs and time the running
//!   service draining them (jobs/s), then time raw loops of sequential
//!   `findOneAndUpdate` claims (sorted, and by id; each for at most SECONDS)
//!   on N documents in a scratch collection of the same server (claims/s):
//!   the store's ceiling for the same work. Prints one JSON line.
//!
//! The pieces `scripts/bench --drain` runs one by one (each prints one JSON
//! line; TAG marks a scenario's jobs, `payload.bench`):
//! - `enqueue URI DB N TAG`: N `noop` jobs due now, in bulk;
//! - `count URI DB TAG`: how many exist and how many are completed;
//! - `latency URI DB TAG [SINCE_MS]`: enqueue→start p50/p99/max, attempts,
//!   completed jobs by instance, and the drain's duration and rate since
//!   SINCE_MS (to the last `completedAt`);
//! - `claims URI DB N SECONDS`: the raw claim loops alone;
//! - `explain URI DB`: the query plans of the queue's queries;
//! - `clear URI DB`: delete every job and attempt record.
//! - `backlog URI DB N`: insert N `noop` jobs due tomorrow (waiting in the
//!   queue, not claimable), for the sign-up-with-backlog scenario.
//! - `unbacklog URI DB`: delete them again.
//! - `dropdb URI DB`: drop a benchmark's (or fuzz run's) database.
//! - `report RESULTS.jsonl OUT.md OUT.svg`: the Markdown table and a bar chart.

mod drain;
mod explain;

use std::time::{Duration, Instant};

use mongodb::bson::{doc, Document};
use serde_json::{json, Value};
use troupe_actors::queue::job::Job;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["bcrypt", cost] => bcrypt_ms(cost.parse()?),
        ["drain", uri, db, n, limit] => {
            let db = database(uri, db).await?;
            print(drain::drain(&db, n.parse()?, Duration::from_secs(limit.parse()?)).await?)
        }
        ["enqueue", uri, db, n, tag] => {
            print(drain::enqueue(&database(uri, db).await?, n.parse()?, tag).await?)
        }
        ["count", uri, db, tag] => {
            let (total, completed) = drain::count(&database(uri, db).await?, tag).await?;
            print(json!({ "total": total, "completed": completed }))
        }
        ["latency", uri, db, tag, since @ ..] if since.len() <= 1 => {
            let since = since.first().map(|s| s.parse()).transpose()?;
            print(drain::latency(&database(uri, db).await?, tag, since).await?)
        }
        ["claims", uri, db, n, limit] => {
            let db = database(uri, db).await?;
            let limit = Duration::from_secs(limit.parse()?);
            print(drain::claim_loops(&db, n.parse()?, limit).await?)
        }
        ["explain", uri, db] => print(explain::explain(&database(uri, db).await?).await?),
        ["clear", uri, db] => drain::clear(&database(uri, db).await?).await,
        ["backlog", uri, db, n] => backlog(uri, db, n.parse()?).await,
        ["unbacklog", uri, db] => {
            let jobs = database(uri, db).await?.collection::<Document>("jobs");
            jobs.delete_many(doc! { "payload.bench": "backlog" })
                .await?;
            Ok(())
        }
        ["dropdb", uri, db] => Ok(database(uri, db).await?.drop().await?),
        ["report", results, md, svg] => report(results, md, svg),
        _ => anyhow::bail!(
            "usage: troupe-bench bcrypt COST | drain URI DB N SECONDS | enqueue URI DB N TAG | \
             count URI DB TAG | latency URI DB TAG [SINCE_MS] | claims URI DB N SECONDS | \
             explain URI DB | clear URI DB | backlog URI DB N | unbacklog URI DB | dropdb URI DB | \
             report RESULTS.jsonl OUT.md OUT.svg"
        ),
    }
}

/// One JSON line on stdout.
fn print(value: Value) -> anyhow::Result<()> {
    println!("{value}");
    Ok(())
}

fn bcrypt_ms(cost: u32) -> anyhow::Result<()> {
    let _ = bcrypt::hash("warm-up", cost)?;
    let runs = 5;
    let started = Instant::now();
    for _ in 0..runs {
        let _ = bcrypt::hash("correct horse battery", cost)?;
    }
    println!(
        "{:.2}",
        started.elapsed().as_secs_f64() * 1000.0 / runs as f64
    );
    Ok(())
}

async fn database(uri: &str, db: &str) -> mongodb::error::Result<mongodb::Database> {
    Ok(mongodb::Client::with_uri_str(uri).await?.database(db))
}

async fn backlog(uri: &str, db: &str, n: usize) -> anyhow::Result<()> {
    let jobs = database(uri, db).await?.collection::<Job>("jobs");
    let tomorrow = mongodb::bson::DateTime::from_millis(
        mongodb::bson::DateTime::now().timestamp_millis() + 86_400_000,
    );
    let batch: Vec<Job> = (0..n)
        .map(|_| Job {
            run_at: tomorrow,
            ..Job::new("noop", doc! { "bench": "backlog" }, 5)
        })
        .collect();
    for chunk in batch.chunks(1000) {
        jobs.insert_many(chunk).await?;
    }
    Ok(())
}

/// One scenario's line in RESULTS.jsonl.
fn field(v: &Value, key: &str) -> String {
    match &v[key] {
        Value::Null => "–".into(),
        Value::Number(n) => {
            let f = n.as_f64().unwrap_or(0.0);
            if f.fract() == 0.0 {
                format!("{f:.0}")
            } else {
                format!("{f:.1}")
            }
        }
        other => other
            .as_str()
            .map_or_else(|| other.to_string(), str::to_owned),
    }
}

fn report(results: &str, md: &str, svg: &str) -> anyhow::Result<()> {
    let rows: Vec<Value> = std::fs::read_to_string(results)?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let mut out = String::from(
        "| scenario | concurrency | duration s | req/s | p50 ms | p95 ms | p99 ms | errors | peak RSS MB | service CPU % | store CPU % |\n|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows.iter().filter(|r| r["rps"].is_number()) {
        out += &format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            field(r, "scenario"),
            field(r, "connections"),
            field(r, "seconds"),
            field(r, "rps"),
            field(r, "p50_ms"),
            field(r, "p95_ms"),
            field(r, "p99_ms"),
            field(r, "errors"),
            field(r, "peak_rss_mb"),
            field(r, "cpu_percent"),
            field(r, "store_cpu_percent"),
        );
    }
    std::fs::write(md, out)?;

    // A horizontal bar chart of requests/s on a log scale (the bcrypt-bound
    // scenarios are three orders of magnitude below the bare route). Written
    // as plain SVG rather than with plotters: plotters lays text out with a
    // font file (font-kit or ab_glyph), which a fresh machine may not have,
    // whereas SVG `<text>` is laid out by whatever displays the chart.
    let bars: Vec<(String, f64)> = rows
        .iter()
        .filter_map(|r| Some((field(r, "scenario"), r["rps"].as_f64()?)))
        .collect();
    let max = bars.iter().map(|(_, v)| *v).fold(1.0, f64::max);
    let (width, row, left) = (820.0, 28.0, 230.0);
    let height = 50.0 + row * bars.len() as f64;
    let mut chart = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"13\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"10\" y=\"22\" font-size=\"15\">Troupe: requests per second by scenario (log scale)</text>\n"
    );
    for (i, (name, value)) in bars.iter().enumerate() {
        let y = 40.0 + row * i as f64;
        let w = (width - left - 90.0) * (1.0 + value).ln() / (1.0 + max).ln();
        chart += &format!(
            "<text x=\"10\" y=\"{}\">{name}</text><rect x=\"{left}\" y=\"{}\" width=\"{w:.1}\" height=\"18\" fill=\"#4c78a8\"/><text x=\"{:.1}\" y=\"{}\">{value:.0}</text>\n",
            y + 14.0,
            y,
            left + w + 6.0,
            y + 14.0
        );
    }
    chart += "</svg>\n";
    std::fs::write(svg, chart)?;
    Ok(())
}
