//! Data integrity under interrupts: a byte stream through a pipe or a TCP loopback connection,
//! with the reader and the writer each interrupted at random and resuming after
//! `clear_interrupt()`. The reader regenerates the writer's stream and compares position by
//! position, so a lost or duplicated byte is a mismatch at the exact place it happened.
//!
//! Used by the reliability benchmark (64 MiB, 10,000 interrupts a side) and by
//! `tests/reliability.rs` (smaller). Uses only killable's public API.

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use killable::Thread;
use killable::io::Interruptible;

#[derive(Debug, Default, Clone, Copy)]
pub struct Integrity {
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Bytes that differed from the stream at their position, plus bytes missing at the end.
    pub mismatches: u64,
    /// Interrupts sent to the reader and to the writer.
    pub reader_interrupts: u64,
    pub writer_interrupts: u64,
    /// Calls that actually returned the interrupt error (the rest landed between calls).
    pub reader_broken: u64,
    pub writer_broken: u64,
}

/// The stream: byte `i` of a xorshift sequence, regenerated identically on both sides.
struct Stream(u64);

impl Stream {
    fn new() -> Stream {
        Stream(0x2545_f491_4f6c_dd1d)
    }
    fn next_byte(&mut self) -> u8 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 24) as u8
    }
    fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            *b = self.next_byte();
        }
    }
}

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 7;
        self.0 ^= self.0 >> 9;
        self.0 % n.max(1)
    }
}

/// A running transfer: a writer thread and a reader thread over one channel.
pub struct Pair {
    pub writer: killable::JoinHandle<io::Result<u64>>,
    pub reader: killable::JoinHandle<io::Result<(u64, u64)>>,
    pub writer_broken: Arc<AtomicU64>,
    pub reader_broken: Arc<AtomicU64>,
}

/// Starts a writer sending up to `total` bytes over `w` (or until `stop` is set) and a reader
/// verifying them from `r`. Both retry after interrupts, clearing them.
pub fn start<R, W>(r: R, w: W, total: u64, stop: Arc<AtomicBool>) -> Pair
where
    R: std::os::fd::AsFd + Send + 'static,
    W: std::os::fd::AsFd + Send + 'static,
{
    let writer_broken = Arc::new(AtomicU64::new(0));
    let wb = writer_broken.clone();
    let writer = killable::Builder::new()
        .name("integrity-writer".into())
        .spawn(move || -> io::Result<u64> {
            let mut w = Interruptible::new(w);
            let mut stream = Stream::new();
            let mut rng = Rng(0x9e37_79b9);
            let mut buf = vec![0u8; 2048];
            let mut sent = 0u64;
            while sent < total && !stop.load(Ordering::Relaxed) {
                let len = (1 + rng.below(2048)).min(total - sent) as usize;
                stream.fill(&mut buf[..len]);
                // Pace the stream so that the transfer lasts as long as the interrupts take to
                // send: every interrupt then lands while data is moving.
                let pause = Instant::now();
                let gap = Duration::from_nanos(rng.below(8_000));
                while pause.elapsed() < gap {
                    std::hint::spin_loop();
                }
                let mut off = 0;
                while off < len {
                    match w.write(&buf[off..len]) {
                        Ok(n) => off += n,
                        Err(e) if killable::is_interrupt(&e) => {
                            wb.fetch_add(1, Ordering::Relaxed);
                            killable::clear_interrupt();
                        }
                        Err(e) => return Err(e),
                    }
                }
                sent += len as u64;
            }
            Ok(sent)
        })
        .expect("spawn writer");
    let reader_broken = Arc::new(AtomicU64::new(0));
    let rb = reader_broken.clone();
    let reader = killable::Builder::new()
        .name("integrity-reader".into())
        .spawn(move || -> io::Result<(u64, u64)> {
            let mut r = Interruptible::new(r);
            let mut stream = Stream::new();
            let mut buf = vec![0u8; 4096];
            let (mut received, mut mismatches) = (0u64, 0u64);
            loop {
                match r.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        for &b in &buf[..n] {
                            if b != stream.next_byte() {
                                mismatches += 1;
                            }
                        }
                        received += n as u64;
                    }
                    Err(e) if killable::is_interrupt(&e) => {
                        rb.fetch_add(1, Ordering::Relaxed);
                        killable::clear_interrupt();
                    }
                    Err(e) => return Err(e),
                }
            }
            Ok((received, mismatches))
        })
        .expect("spawn reader");
    Pair {
        writer,
        reader,
        writer_broken,
        reader_broken,
    }
}

impl Pair {
    /// Joins both (the writer's end closes with its thread, so the reader sees end of file);
    /// returns (sent, received, mismatches), or `None` if either failed or hung.
    pub fn finish(self) -> Option<(u64, u64, u64)> {
        let sent = self
            .writer
            .join_timeout(Duration::from_secs(60))
            .ok()?
            .ok()?
            .ok()?;
        let (received, mismatches) = self
            .reader
            .join_timeout(Duration::from_secs(60))
            .ok()?
            .ok()?
            .ok()?;
        Some((sent, received, mismatches + sent.abs_diff(received)))
    }
}

/// Sends `total` bytes from a writer thread to a reader thread over (`r`, `w`) while this
/// thread interrupts both at random, `per_side` times each (or until the transfer ends).
pub fn run<R, W>(r: R, w: W, total: u64, per_side: u64) -> Integrity
where
    R: std::os::fd::AsFd + Send + 'static,
    W: std::os::fd::AsFd + Send + 'static,
{
    let pair = start(r, w, total, Arc::new(AtomicBool::new(false)));
    let mut rng = Rng(0x5851_f42d);
    let (mut to_reader, mut to_writer) = (0u64, 0u64);
    let started = Instant::now();
    while !pair.reader.is_finished() && (to_reader < per_side || to_writer < per_side) {
        if pair.writer.is_finished() && to_reader >= per_side {
            break;
        }
        if rng.below(2) == 0 && to_reader < per_side {
            pair.reader.interrupt();
            to_reader += 1;
        } else if to_writer < per_side && !pair.writer.is_finished() {
            pair.writer.interrupt();
            to_writer += 1;
        }
        let pause = Instant::now();
        let gap = Duration::from_nanos(rng.below(20_000));
        while pause.elapsed() < gap {
            std::hint::spin_loop();
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "transfer hung"
        );
    }
    let (writer_broken, reader_broken) = (pair.writer_broken.clone(), pair.reader_broken.clone());
    let (sent, received, mismatches) = pair.finish().expect("the transfer failed or hung");
    Integrity {
        bytes_sent: sent,
        bytes_received: received,
        mismatches,
        reader_interrupts: to_reader,
        writer_interrupts: to_writer,
        reader_broken: reader_broken.load(Ordering::Relaxed),
        writer_broken: writer_broken.load(Ordering::Relaxed),
    }
}

/// Through a pipe.
pub fn pipe(total: u64, per_side: u64) -> Integrity {
    let (r, w) = io::pipe().expect("pipe");
    run(r, w, total, per_side)
}

/// Through a TCP connection on 127.0.0.1.
pub fn tcp(total: u64, per_side: u64) -> Integrity {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let client =
        std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
    let (server, _) = listener.accept().expect("accept");
    run(server, client, total, per_side)
}

/// How a storm ended.
#[derive(Debug, Default, Clone, Copy)]
pub struct Storm {
    pub transfers: u64,
    pub bytes: u64,
    pub interrupts: u64,
    /// Transfers whose bytes differed, went missing, or whose threads failed or hung.
    pub failures: u64,
    pub mismatches: u64,
}

/// `pairs` transfers (half through pipes, half through TCP), 2 threads each, run for
/// `duration` while `interrupters` threads interrupt them at random.
pub fn storm(pairs: usize, interrupters: usize, duration: Duration) -> Storm {
    let stop = Arc::new(AtomicBool::new(false));
    let transfers: Vec<Pair> = (0..pairs)
        .map(|i| {
            if i % 2 == 0 {
                let (r, w) = io::pipe().expect("pipe");
                start(r, w, u64::MAX, stop.clone())
            } else {
                let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
                let client = std::net::TcpStream::connect(listener.local_addr().expect("addr"))
                    .expect("connect");
                let (server, _) = listener.accept().expect("accept");
                start(server, client, u64::MAX, stop.clone())
            }
        })
        .collect();
    let targets: Arc<Vec<Thread>> = Arc::new(
        transfers
            .iter()
            .flat_map(|p| [p.writer.thread().clone(), p.reader.thread().clone()])
            .collect(),
    );
    let deadline = Instant::now() + duration;
    let senders: Vec<_> = (0..interrupters)
        .map(|i| {
            let targets = targets.clone();
            killable::Builder::new()
                .name(format!("storm-{i}"))
                .spawn(move || {
                    let mut rng = Rng(0x1234_5678 + i as u64 * 7919);
                    let mut sent = 0u64;
                    while Instant::now() < deadline {
                        targets[rng.below(targets.len() as u64) as usize].interrupt();
                        sent += 1;
                        let pause = Instant::now();
                        let gap = Duration::from_nanos(rng.below(50_000));
                        while pause.elapsed() < gap {
                            std::hint::spin_loop();
                        }
                    }
                    sent
                })
                .expect("spawn interrupter")
        })
        .collect();
    let interrupts: u64 = senders
        .into_iter()
        .map(|h| h.join().expect("interrupter panicked"))
        .sum();
    stop.store(true, Ordering::SeqCst);
    let mut s = Storm {
        transfers: pairs as u64,
        interrupts,
        ..Storm::default()
    };
    for p in transfers {
        match p.finish() {
            Some((_, received, mismatches)) => {
                s.bytes += received;
                s.mismatches += mismatches;
                if mismatches > 0 {
                    s.failures += 1;
                }
            }
            None => s.failures += 1,
        }
    }
    s
}
