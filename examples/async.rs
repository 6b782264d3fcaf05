//! A small tokio server whose handlers do blocking reads in `killable::spawn_blocking`, and whose
//! blocked jobs are aborted when the client goes away or the handler times out.
//!
//! ```sh
//! cargo run --example async
//! ```
//!
//! Each request names a key; the handler looks it up in a slow backend with a blocking read (a
//! stand-in for a blocking client library) run by `spawn_blocking`. Meanwhile the async handler
//! watches the client and a deadline with `select!`: if the client disconnects or the deadline
//! passes first, the handler returns and drops the task, which interrupts the job blocked in its
//! read. Three clients show the three endings; the program then stops by itself.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use killable::io::Interruptible;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

const HANDLER_TIMEOUT: Duration = Duration::from_millis(300);

/// The backend: answers `fast` at once, never answers anything else.
fn backend() -> io::Result<std::net::SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut line = String::new();
            if BufReader::new(&conn).read_line(&mut line).is_err() {
                continue;
            }
            if line.trim() == "fast" {
                let _ = conn.write_all(b"value of fast\n");
            } else {
                held.push(conn); // keeps the connection open, silent
            }
        }
    });
    Ok(addr)
}

/// The blocking job: asks the backend and waits for its answer in a killable read.
fn lookup(
    backend: std::net::SocketAddr,
    key: String,
    done: mpsc::Sender<String>,
) -> io::Result<String> {
    let started = Instant::now();
    let result = (|| {
        let conn = Interruptible::new(TcpStream::connect(backend)?);
        (&conn).write_all(format!("{key}\n").as_bytes())?;
        let mut answer = String::new();
        BufReader::new(&conn).read_line(&mut answer)?; // blocks until answered or aborted
        Ok(answer.trim().to_owned())
    })();
    let how = match &result {
        Ok(_) => "answered".to_owned(),
        Err(e) if killable::is_interrupt(e) => "aborted while blocked in read".to_owned(),
        Err(e) => format!("failed: {e}"),
    };
    let _ = done.send(format!(
        "job for '{key}' on {}: {how} after {:?}",
        killable::current().name().unwrap_or("?"),
        started.elapsed()
    ));
    result
}

async fn handle(
    conn: tokio::net::TcpStream,
    backend: std::net::SocketAddr,
    done: mpsc::Sender<String>,
) -> io::Result<()> {
    let (read_half, mut write_half) = conn.into_split();
    let mut lines = tokio::io::BufReader::new(read_half).lines();
    let Some(key) = lines.next_line().await? else {
        return Ok(());
    };
    let task = killable::spawn_blocking(move || lookup(backend, key, done));
    let reply = tokio::select! {
        r = task => match r {
            Ok(Ok(value)) => value,
            Ok(Err(e)) => format!("error: {e}"),
            Err(_) => "error: the job panicked".to_owned(),
        },
        // Returning from here drops the task, which aborts the blocked job.
        _ = lines.next_line() => return Ok(()), // the client hung up (or sent more)
        _ = tokio::time::sleep(HANDLER_TIMEOUT) => "error: timed out".to_owned(),
    };
    write_half.write_all(format!("{reply}\n").as_bytes()).await
}

async fn client(addr: std::net::SocketAddr, key: &str, hang_up_after: Option<Duration>) -> String {
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(format!("{key}\n").as_bytes()).await.unwrap();
    if let Some(d) = hang_up_after {
        tokio::time::sleep(d).await;
        return format!("client '{key}': hung up after {d:?}");
    }
    let mut answer = String::new();
    tokio::io::BufReader::new(conn)
        .read_line(&mut answer)
        .await
        .unwrap();
    format!("client '{key}': got '{}'", answer.trim())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> io::Result<()> {
    let backend = backend()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    println!("serving on {addr}, handler timeout {HANDLER_TIMEOUT:?}");
    let (done_tx, done) = mpsc::channel();
    tokio::spawn(async move {
        loop {
            let Ok((conn, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(handle(conn, backend, done_tx.clone()));
        }
    });

    let clients = [
        client(addr, "fast", None).await,
        client(addr, "slow", Some(Duration::from_millis(100))).await,
        client(addr, "stuck", None).await,
    ];
    for line in clients {
        println!("{line}");
    }
    // Every job ends, the aborted ones included: wait for their reports (a blocking wait, so in
    // a blocking job too), then stop.
    let reports = killable::spawn_blocking(move || {
        (0..3)
            .map(|_| done.recv_timeout(Duration::from_secs(10)))
            .collect::<Result<Vec<String>, _>>()
    })
    .await
    .expect("the report job does not panic")
    .expect("every job ends");
    for line in reports {
        println!("{line}");
    }
    Ok(())
}
