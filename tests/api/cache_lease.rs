//! Coherence paid by the writer, with an instance gone silent: three real
//! binaries on one Redis, writes on one, reads on the others, and one reader
//! SIGSTOPped during the rounds. Every write still completes within one
//! lease (and a margin): the writer stops waiting for the silent instance's
//! acknowledgement once its lease has run out. Once resumed, that instance
//! serves no profile older than the last acknowledged update: its lease ran
//! out while it was stopped, so it reads Redis until a renewal, which comes
//! after every invalidation it missed, has been read in order.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{eventually, free_port, spawn_app, start_binary, unique_email, Process};

/// One binary of the fleet, and where it listens.
struct Instance {
    process: Process,
    base: String,
}

impl Instance {
    fn start(settings: &troupe::config::Settings) -> Self {
        let port = free_port();
        Self {
            process: start_binary(settings, port, "30s"),
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    /// Send `signal` (`STOP`, `CONT`) to the process.
    fn signal(&self, signal: &str) {
        let pid = self.process.child.id().to_string();
        let status = std::process::Command::new("kill")
            .args([format!("-{signal}"), pid])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal}");
    }
}

/// The profile's name as `instance` serves it.
async fn name_on(client: &reqwest::Client, instance: &Instance, path: &str) -> String {
    let response = client
        .get(format!("{}{path}", instance.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    body["name"].as_str().unwrap().to_owned()
}

/// A `troupe_…` counter of `instance`'s /metrics.
async fn counter(client: &reqwest::Client, instance: &Instance, name: &str) -> u64 {
    let text = client
        .get(format!("{}/metrics", instance.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = format!("troupe_{name}_total ");
    text.lines()
        .find_map(|l| l.strip_prefix(&line))
        .map_or(0, |v| v.parse().unwrap())
}

#[tokio::test]
async fn a_sigstopped_instance_holds_writes_up_one_lease_at_most_and_serves_no_stale_profile_when_resumed(
) {
    const BEFORE: usize = 5; // rounds with every instance up
    const STOPPED: usize = 5; // rounds while the reader is stopped
    const AFTER: usize = 5;
    let app = spawn_app().await;
    if !app.settings.redis.cluster_urls.is_empty() {
        return; // no in-process tier on a cluster: nothing to lease
    }
    let bound = app.settings.cache.ack_bound();
    let fleet: Vec<Instance> = (0..3).map(|_| Instance::start(&app.settings)).collect();
    let (writer, reader, victim) = (&fleet[0], &fleet[1], &fleet[2]);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    // Ready, and its tier served (a lease held).
    for instance in &fleet {
        eventually(
            Duration::from_secs(30),
            "the binary to hold a lease",
            || {
                let metrics = client.get(format!("{}/metrics", instance.base));
                async move {
                    let text = metrics.send().await.ok()?.text().await.ok()?;
                    text.contains("troupe_cache_local_tracking 1").then_some(())
                }
            },
        )
        .await;
    }
    let tokens = app.signup(&unique_email()).await;
    let id = app.user_id(&tokens.access_token).await;
    let path = format!("/users/{id}");

    let mut slowest = Duration::ZERO;
    let mut stale = vec![];
    for round in 0..BEFORE + STOPPED + AFTER {
        if round == BEFORE {
            victim.signal("STOP");
        }
        if round == BEFORE + STOPPED {
            victim.signal("CONT");
            // At once, racing the invalidations it has yet to read: the
            // last acknowledged update, not the profile its tier held.
            let served = name_on(&client, victim, &path).await;
            let acknowledged = format!("round {}", round - 1);
            if served != acknowledged {
                stale.push((round, 2, served));
            }
        }
        let name = format!("round {round}");
        let started = Instant::now();
        let response = client
            .patch(format!("{}/users/profile", writer.base))
            .bearer_auth(&tokens.access_token)
            .json(&json!({ "name": name }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        slowest = slowest.max(started.elapsed());
        let stopped = (BEFORE..BEFORE + STOPPED).contains(&round);
        // Twice: a miss (loaded and filled), then a hit in the tier.
        for _ in 0..2 {
            for (index, instance) in [(1, reader), (2, victim)] {
                if index == 2 && stopped {
                    continue;
                }
                let served = name_on(&client, instance, &path).await;
                if served != name {
                    stale.push((round, index, served));
                }
            }
        }
    }
    let waited = counter(&client, writer, "cache_lease_waits").await;
    eprintln!(
        "slowest write {slowest:?} (bound {bound:?}), writes that waited out a lease: {waited}"
    );
    assert!(
        stale.is_empty(),
        "stale reads (round, instance, name): {stale:?}"
    );
    assert!(waited >= 1, "no write waited for the stopped instance");
    // One lease and its margin, plus the request's own work on a loaded
    // machine (MongoDB's update, the fence) well within a second.
    assert!(
        slowest < bound + Duration::from_secs(1),
        "a write took {slowest:?}, more than one lease ({bound:?}) and a second"
    );
}
