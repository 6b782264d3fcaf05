//! A TCP echo server whose workers block in `accept` and `read`, stopped cleanly.
//!
//! ```sh
//! cargo run --release --example server                    # Ctrl-C to stop
//! cargo run --release --example server -- --stop-after 2  # stops itself after 2 seconds
//! ```
//!
//! Every worker blocks in killable's `accept` or `read`. Ctrl-C (or SIGTERM) runs
//! `killable::shutdown`: each worker's blocked call returns an interrupt error, the worker
//! returns through its own `?`, and the program prints how long each one took to stop. A second
//! Ctrl-C exits at once.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use killable::io::Interruptible;

const WORKERS: usize = 4;
const GRACE: Duration = Duration::from_secs(2);

/// Accepts connections and echoes each one until the peer hangs up; returns only on error
/// (an interrupt included).
fn worker(listener: Arc<Interruptible<TcpListener>>) -> io::Result<()> {
    loop {
        let (conn, peer) = listener.accept()?;
        println!(
            "  {} serves {peer}",
            killable::current().name().unwrap_or("?")
        );
        let mut buf = [0u8; 4096];
        let mut echoed = 0;
        loop {
            let n = (&conn).read(&mut buf)?;
            if n == 0 {
                break;
            }
            (&conn).write_all(&buf[..n])?;
            echoed += n;
        }
        println!("  {peer} hung up after {echoed} bytes");
    }
}

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let stop_after = args
        .iter()
        .position(|a| a == "--stop-after")
        .and_then(|i| args.get(i + 1))
        .map(|s| {
            s.parse::<f64>()
                .expect("--stop-after takes a number of seconds")
        })
        .map(Duration::from_secs_f64);

    let listener = Arc::new(Interruptible::new(TcpListener::bind("127.0.0.1:0")?));
    let addr = listener.get_ref().local_addr()?;
    let signals = killable::shutdown_on_signals(GRACE)?;
    let workers: Vec<_> = (0..WORKERS)
        .map(|i| {
            let listener = listener.clone();
            killable::Builder::new()
                .name(format!("worker-{i}"))
                .spawn(move || worker(listener))
        })
        .collect::<io::Result<_>>()?;
    println!("echo server on {addr} with {WORKERS} workers; Ctrl-C stops it");

    // A client, so that one worker sits in `read` on an open connection while the others
    // wait in `accept`.
    let mut client = TcpStream::connect(addr)?;
    client.write_all(b"hello\n")?;
    let mut line = String::new();
    BufReader::new(&client).read_line(&mut line)?;
    println!(
        "  client got back {:?}; it keeps the connection open",
        line.trim_end()
    );

    let report = match stop_after {
        Some(d) => {
            std::thread::sleep(d);
            println!("stopping after {d:?}");
            killable::shutdown(GRACE)
        }
        None => {
            let report = signals.wait();
            println!("\nsignal {} received", signals.signal().unwrap_or(0));
            report
        }
    };
    for outcome in report.outcomes() {
        println!("  {outcome}");
    }
    for w in workers {
        let name = w.thread().name().unwrap_or("?").to_owned();
        match w.join() {
            Ok(Err(e)) if killable::is_interrupt(&e) => println!("  {name} returned: {e}"),
            Ok(other) => println!("  {name} returned {other:?}"),
            Err(_) => println!("  {name} panicked"),
        }
    }
    drop(client);
    Ok(())
}
