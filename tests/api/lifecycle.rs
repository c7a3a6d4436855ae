//! What `Application::run` promises when it returns: the actors are
//! stopped and every task they spawned is gone, so nothing of the service
//! writes to the stores any more.

use std::time::Duration;

use mongodb::bson::{doc, Document};
use troupe::Application;
use troupe_actors::queue::handlers::JobHandlers;
use troupe_actors::queue::store::JobStore;

use crate::helpers::{observer, remove_stores, test_settings};

/// How long the job below works before its write: well past the grace.
const WORK: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_run_returns_nothing_writes_to_the_stores() {
    let mut settings = test_settings();
    settings.server.shutdown_grace = Duration::from_millis(600);
    settings.queue.executors = 1;
    settings.queue.job_timeout = Duration::from_secs(30);
    let db = observer(&settings).await;
    // A job that writes after working longer than the shutdown grace: if
    // any task of the service outlived `run`, this write would land later.
    let late = db.collection::<Document>("late_writes");
    let uri = {
        use secrecy::ExposeSecret;
        settings.mongodb.uri.expose_secret().to_string()
    };
    let name = settings.mongodb.database.clone();
    let handlers = JobHandlers::new().with("test.late-write", move |_job| {
        let (uri, name) = (uri.clone(), name.clone());
        async move {
            tokio::time::sleep(WORK).await;
            let client = mongodb::Client::with_uri_str(&uri).await?;
            let late = client.database(&name).collection::<Document>("late_writes");
            late.insert_one(doc! { "at": mongodb::bson::DateTime::now() })
                .await?;
            Ok(Document::new())
        }
    });
    let app = Application::build_with_jobs(settings.clone(), handlers)
        .await
        .expect("app builds");
    let commands = app.state().mongo_commands.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    // `run` on this test's runtime, which stays alive after it returns.
    let run = tokio::spawn(app.run(async {
        let _ = stopped.await;
    }));
    let jobs = JobStore::new(&db, "test", settings.queue.max_attempts);
    let id = jobs
        .enqueue("test.late-write", Document::new())
        .await
        .unwrap();
    crate::helpers::eventually(Duration::from_secs(10), "the job to run", || {
        let jobs = db.collection::<Document>("jobs");
        async move {
            let job = jobs.find_one(doc! {"_id": id}).await.ok()??;
            (job.get_str("status").ok()? == "processing").then_some(())
        }
    })
    .await;

    let _ = stop.send(());
    run.await.unwrap().unwrap();
    let sent = commands.total();
    // Absence has to be watched for a while: past the moment the job
    // would have written, and a few poll ticks.
    tokio::time::sleep(WORK + Duration::from_secs(1)).await;
    assert_eq!(
        commands.total(),
        sent,
        "the service sent commands after run returned"
    );
    assert_eq!(
        late.count_documents(doc! {}).await.unwrap(),
        0,
        "a job wrote after run returned"
    );
    // Not lost either: released for another instance — or, when the store
    // was too slow to take the release within the grace (a loaded machine),
    // still `processing` under its lease, reclaimed once the lease expires
    // exactly as after a crash (crash.rs).
    let job = db
        .collection::<Document>("jobs")
        .find_one(doc! {"_id": id})
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(job.get_str("status").unwrap(), "pending" | "processing"),
        "released, or held under its lease: {job}"
    );
    remove_stores(&settings).await;
}
