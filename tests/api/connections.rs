//! Issue #13 item 6: connection hygiene, attacked over raw TCP — slow or
//! silent clients, idle keep-alive connections, slow and oversized bodies,
//! more connections than the cap. Issue #23 item 2: one address (or idle
//! sockets from many) holding the slots.
//!
//! Other client addresses are other loopback addresses (127.0.0.2, …: all of
//! 127/8 is local on Linux), bound before connecting.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

use crate::helpers::{eventually, spawn_app, spawn_app_with, TestApp};

/// Longest any test here waits for something that must happen.
const DEADLINE: Duration = Duration::from_secs(10);

async fn connect(app: &TestApp) -> TcpStream {
    let addr = app.address.trim_start_matches("http://");
    TcpStream::connect(addr).await.expect("connect")
}

/// A connection to `app` from the loopback address `source`.
async fn connect_from(app: &TestApp, source: [u8; 4]) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind((source, 0).into())
        .expect("bind a loopback source address");
    let addr = app.address.trim_start_matches("http://");
    socket
        .connect(addr.parse().unwrap())
        .await
        .expect("connect")
}

/// Send `GET /health/live` and read the status, or `None` if the server
/// closed the connection instead of answering.
async fn status_of_a_request(stream: &mut TcpStream) -> Option<u16> {
    stream.write_all(GET_LIVE).await.ok()?;
    let mut bytes = Vec::new();
    let mut buf = [0u8; 1024];
    tokio::time::timeout(DEADLINE, async {
        while !bytes.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => bytes.extend_from_slice(&buf[..n]),
            }
        }
        std::str::from_utf8(&bytes[9..12]).ok()?.parse().ok()
    })
    .await
    .expect("an answer or a close in time")
}

/// Read until the server closes the connection (EOF or reset); panic if it
/// is still open after `deadline`. Returns when it closed.
async fn closed_by_server(stream: &mut TcpStream, deadline: Duration) -> Instant {
    let mut buf = [0u8; 4096];
    tokio::time::timeout(deadline, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return Instant::now(),
                Ok(_) => continue, // e.g. an error response before closing
            }
        }
    })
    .await
    .expect("the server closed the connection")
}

/// A response read off a raw connection.
struct RawResponse {
    status: u16,
    headers: String,
    body: String,
}

/// Read one response with a `Content-Length` body, within `deadline`.
async fn read_response(stream: &mut (impl AsyncRead + Unpin), deadline: Duration) -> RawResponse {
    tokio::time::timeout(deadline, async {
        let mut bytes = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let text = String::from_utf8_lossy(&bytes).into_owned();
            if let Some(end) = text.find("\r\n\r\n") {
                let headers = text[..end].to_ascii_lowercase();
                let length: usize = headers
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().unwrap());
                if bytes.len() >= end + 4 + length {
                    let status = headers[9..12].parse().unwrap();
                    let body = text[end + 4..end + 4 + length].to_owned();
                    return RawResponse {
                        status,
                        headers,
                        body,
                    };
                }
            }
            let n = stream.read(&mut buf).await.expect("read");
            assert!(n > 0, "closed before a full response: {text:?}");
            bytes.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("a response in time")
}

fn assert_problem(response: &RawResponse, status: u16) -> Value {
    assert_eq!(response.status, status, "{}", response.body);
    assert!(
        response
            .headers
            .contains("content-type: application/problem+json"),
        "{}",
        response.headers
    );
    let body: Value = serde_json::from_str(&response.body).unwrap();
    assert_eq!(body["status"], status);
    body
}

const GET_LIVE: &[u8] = b"GET /health/live HTTP/1.1\r\nHost: troupe\r\n\r\n";

#[tokio::test]
async fn a_client_sending_half_a_head_is_disconnected_after_the_header_timeout() {
    let timeout = Duration::from_millis(400);
    let app = spawn_app_with(|s| s.server.header_read_timeout = timeout).await;
    let mut stream = connect(&app).await;
    let sent = Instant::now();
    stream
        .write_all(b"GET /health/live HTTP/1.1\r\nHost: troupe\r\n")
        .await
        .unwrap();
    let closed = closed_by_server(&mut stream, DEADLINE).await;
    assert!(closed - sent >= timeout - Duration::from_millis(50));
}

#[tokio::test]
async fn a_client_sending_nothing_is_disconnected_after_the_header_timeout() {
    let timeout = Duration::from_millis(400);
    let app = spawn_app_with(|s| s.server.header_read_timeout = timeout).await;
    let opened = Instant::now();
    let mut stream = connect(&app).await;
    let closed = closed_by_server(&mut stream, DEADLINE).await;
    assert!(closed - opened >= timeout - Duration::from_millis(50));
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout() {
    let timeout = Duration::from_millis(400);
    let app = spawn_app_with(|s| s.server.header_read_timeout = timeout).await;
    let mut stream = connect(&app).await;
    // Keep-alive works: two requests on one connection.
    for _ in 0..2 {
        stream.write_all(GET_LIVE).await.unwrap();
        assert_eq!(read_response(&mut stream, DEADLINE).await.status, 200);
    }
    let answered = Instant::now();
    let closed = closed_by_server(&mut stream, DEADLINE).await;
    assert!(closed - answered >= timeout - Duration::from_millis(50));
}

#[tokio::test]
async fn a_trickling_body_gets_408_problem_json_before_the_request_timeout() {
    let body_timeout = Duration::from_millis(500);
    let app = spawn_app_with(|s| s.server.body_timeout = body_timeout).await;
    let stream = connect(&app).await;
    let (mut reader, mut writer) = stream.into_split();
    let started = Instant::now();
    writer
        .write_all(
            b"POST /users/login HTTP/1.1\r\nHost: troupe\r\nContent-Type: application/json\r\n\
              Content-Length: 1000\r\n\r\n{",
        )
        .await
        .unwrap();
    // The attack: a byte every 100 ms, so no single read ever waits long.
    let trickle = async {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if writer.write_all(b" ").await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    };
    let response = tokio::select! {
        response = read_response(&mut reader, DEADLINE) => response,
        () = trickle => unreachable!("the trickle never ends"),
    };
    let elapsed = started.elapsed();
    let body = assert_problem(&response, 408);
    assert!(body["detail"].as_str().unwrap().contains("body"), "{body}");
    assert!(elapsed >= body_timeout, "{elapsed:?}");
    assert!(elapsed < app.settings.server.request_timeout, "{elapsed:?}");
}

#[tokio::test]
async fn a_declared_body_over_the_limit_gets_413_without_being_read() {
    let app = spawn_app().await;
    let mut stream = connect(&app).await;
    // Ten megabytes announced, none sent: the answer cannot wait for them.
    stream
        .write_all(
            b"POST /users/signup HTTP/1.1\r\nHost: troupe\r\nContent-Type: application/json\r\n\
              Content-Length: 10000000\r\n\r\n",
        )
        .await
        .unwrap();
    let response = read_response(&mut stream, Duration::from_secs(2)).await;
    assert_problem(&response, 413);
}

#[tokio::test]
async fn connections_past_the_cap_wait_until_one_closes() {
    let app = spawn_app_with(|s| {
        s.server.max_connections = 2;
        s.server.header_read_timeout = Duration::from_secs(60);
    })
    .await;
    // Two silent connections take both slots (the kernel hands connections
    // to accept in the order they were made).
    let first = connect(&app).await;
    let _second = connect(&app).await;
    let mut third = connect(&app).await;
    third.write_all(GET_LIVE).await.unwrap();
    // Unserved while both slots are held: nothing to wait for but time
    // (less than the second after which idle connections give way at the
    // cap: see the test of that below).
    let mut byte = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(500), third.read(&mut byte)).await;
    assert!(early.is_err(), "the third connection was served: {early:?}");
    // One slot frees: the waiting connection is served.
    drop(first);
    let response = read_response(&mut third, DEADLINE).await;
    assert_eq!(response.status, 200);
}

#[tokio::test]
async fn shutdown_finishes_an_in_flight_request_and_closes_idle_connections() {
    use secrecy::ExposeSecret;
    let mut app = spawn_app().await;
    // In flight: a login whose UserActor message is held up for a while (an
    // injected delay, well inside the shutdown grace).
    let delay = json!({"kind": "delay", "delayMs": 1500});
    let armed = app
        .client
        .post(app.url("/ops/actors/user/fault"))
        .bearer_auth(app.settings.ops.token.expose_secret())
        .json(&delay)
        .send()
        .await
        .unwrap();
    assert!(armed.status().is_success(), "{}", armed.status());
    let body = br#"{"email":"nobody@example.com","password":"not the password"}"#;
    let mut busy = connect(&app).await;
    let head = format!(
        "POST /users/login HTTP/1.1\r\nHost: troupe\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    busy.write_all(head.as_bytes()).await.unwrap();
    busy.write_all(body).await.unwrap();
    // Wait until the request is in the actor (taken, not yet handled): the
    // app runs on threads of its own, so nothing else orders it.
    eventually(DEADLINE, "the login to be in flight", || async {
        let user: Value = app.get_ops("/ops/actors/user").await.json().await.ok()?;
        (user["inFlight"].as_u64()? >= 1).then_some(())
    })
    .await;
    let mut idle = connect(&app).await;
    idle.write_all(GET_LIVE).await.unwrap();
    assert_eq!(read_response(&mut idle, DEADLINE).await.status, 200);
    let stop = async {
        tokio::time::timeout(DEADLINE, app.stop())
            .await
            .expect("run() returns")
            .expect("clean shutdown")
    };
    let requests = async {
        closed_by_server(&mut idle, DEADLINE).await;
        read_response(&mut busy, DEADLINE).await
    };
    let ((), response) = tokio::join!(stop, requests);
    // Answered (an unknown account), not cut off.
    assert_problem(&response, 401);
    closed_by_server(&mut busy, DEADLINE).await;
}

#[tokio::test]
async fn one_address_over_its_cap_keeps_no_other_address_waiting() {
    let app = spawn_app_with(|s| {
        s.server.max_connections = 8;
        s.server.max_connections_per_address = 3;
        s.server.header_read_timeout = Duration::from_secs(60);
    })
    .await;
    // The attack, scaled down: more idle sockets from one address than the
    // whole server has slots.
    let mut attacker = Vec::new();
    for _ in 0..12 {
        attacker.push(connect_from(&app, [127, 0, 0, 2]).await);
    }
    let started = Instant::now();
    let mut other = connect_from(&app, [127, 0, 0, 3]).await;
    other.write_all(GET_LIVE).await.unwrap();
    let response = read_response(&mut other, Duration::from_secs(2)).await;
    assert_eq!(response.status, 200);
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_millis(500),
        "served after {waited:?}"
    );
    // The attacker kept its cap and no more: the rest were closed at once.
    let mut served = 0;
    for stream in &mut attacker {
        if status_of_a_request(stream).await == Some(200) {
            served += 1;
        }
    }
    assert_eq!(served, 3);
}

#[tokio::test]
async fn a_trusted_proxy_is_not_held_to_the_per_address_cap() {
    let app = spawn_app_with(|s| {
        s.server.max_connections_per_address = 1;
        s.server.trusted_proxies = "127.0.0.4".parse().unwrap();
        s.server.header_read_timeout = Duration::from_secs(60);
    })
    .await;
    let mut proxy = Vec::new();
    for _ in 0..3 {
        proxy.push(connect_from(&app, [127, 0, 0, 4]).await);
    }
    for stream in &mut proxy {
        assert_eq!(status_of_a_request(stream).await, Some(200));
    }
    // Anyone else: one.
    let mut first = connect_from(&app, [127, 0, 0, 5]).await;
    let mut second = connect_from(&app, [127, 0, 0, 5]).await;
    assert_eq!(status_of_a_request(&mut first).await, Some(200));
    assert_eq!(status_of_a_request(&mut second).await, None);
}

#[tokio::test]
async fn at_the_connection_cap_idle_connections_give_way_to_an_active_client() {
    let app = spawn_app_with(|s| {
        s.server.max_connections = 4;
        s.server.max_connections_per_address = 2;
        s.server.header_read_timeout = Duration::from_secs(60);
    })
    .await;
    // Idle sockets from two addresses, each within its cap, fill every slot.
    let mut idle = Vec::new();
    for source in [[127, 0, 0, 6], [127, 0, 0, 7]] {
        for _ in 0..2 {
            idle.push(connect_from(&app, source).await);
        }
    }
    let started = Instant::now();
    let mut active = connect_from(&app, [127, 0, 0, 8]).await;
    active.write_all(GET_LIVE).await.unwrap();
    // Served once the idle ones have idled for a second (not after the
    // 60 s header timeout).
    let response = read_response(&mut active, Duration::from_secs(5)).await;
    assert_eq!(response.status, 200);
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(3), "served after {waited:?}");
    // An idle connection gave way: whichever the server's idle timers closed
    // first (once a slot is free, the cap no longer presses the others).
    let closes = idle
        .iter_mut()
        .map(|stream| Box::pin(closed_by_server(stream, DEADLINE)));
    futures::future::select_all(closes).await;
}
