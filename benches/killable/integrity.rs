//! Data integrity under interrupts: a byte stream through a pipe or a TCP loopback connection,
//! with the reader and the writer each interrupted at random and resuming after
//! `clear_interrupt()`. The reader regenerates the writer's stream and compares position by
//! position, so a lost or duplicated byte is a mismatch at the exact place it happened.
//!
//! Shared, through `#[path]`, by the reliability benchmark (64 MiB, 10,000 interrupts a side)
//! and by `tests/reliability.rs` (smaller). Uses only killable's public API.

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

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

/// Sends `total` bytes from a writer thread to a reader thread over (`r`, `w`) while this
/// thread interrupts both at random, `per_side` times each (or until the transfer ends).
pub fn run<R, W>(r: R, w: W, total: u64, per_side: u64) -> Integrity
where
    R: std::os::fd::AsFd + Send + 'static,
    W: std::os::fd::AsFd + Send + 'static,
{
    let done = Arc::new(AtomicBool::new(false));
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
            while sent < total {
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
    let d2 = done.clone();
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
            d2.store(true, Ordering::SeqCst);
            Ok((received, mismatches))
        })
        .expect("spawn reader");

    let mut rng = Rng(0x5851_f42d);
    let (mut to_reader, mut to_writer) = (0u64, 0u64);
    let start = Instant::now();
    while !done.load(Ordering::SeqCst) && (to_reader < per_side || to_writer < per_side) {
        if writer.is_finished() && to_reader >= per_side {
            break;
        }
        if rng.below(2) == 0 && to_reader < per_side {
            reader.interrupt();
            to_reader += 1;
        } else if to_writer < per_side && !writer.is_finished() {
            writer.interrupt();
            to_writer += 1;
        }
        let pause = Instant::now();
        let gap = Duration::from_nanos(rng.below(20_000));
        while pause.elapsed() < gap {
            std::hint::spin_loop();
        }
        assert!(start.elapsed() < Duration::from_secs(600), "transfer hung");
    }
    let sent = writer
        .join()
        .expect("writer panicked")
        .expect("writer failed");
    // The writer's end closes when its thread ends (it owned it): the reader sees EOF.
    let (received, mismatches) = reader
        .join()
        .expect("reader panicked")
        .expect("reader failed");
    Integrity {
        bytes_sent: sent,
        bytes_received: received,
        mismatches: mismatches + sent.abs_diff(received),
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
