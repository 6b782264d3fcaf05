//! Multi-producer, single-consumer channels whose blocking calls are killable, with
//! [`std::sync::mpsc`]'s API: [`channel`], [`sync_channel`], [`Sender`], [`SyncSender`],
//! [`Receiver`].
//!
//! [`Receiver::recv`], [`Receiver::recv_timeout`] and a blocking [`SyncSender::send`] are
//! killable calls: an interrupt (or a passed [`timeout`](crate::timeout)) makes them return an
//! error that converts into an [`io::Error`] recognised by [`is_interrupt`](crate::is_interrupt),
//! and nothing is lost. A value whose send returned `Ok` stays in the channel until it is
//! received; a send that fails hands its value back, and that value is never delivered. Like
//! every killable call they fail at once when an interrupt is pending, even if a message is
//! waiting (it stays for the next `recv`), so a worker draining a busy channel still stops.
//!
//! # Internal workings
//!
//! The queue is std's own channel (`std::sync::mpsc`, since Rust 1.67 a port of
//! crossbeam-channel), used only through its non-blocking calls (`try_recv`, `try_send`). It is
//! well tested, lock-free on its fast paths, and costs no dependency. What std cannot do is wait
//! killably: its blocking calls park in a futex that no signal breaks. So the waiting is
//! killable's own, on two event counts, each a futex word waited on through the race-free
//! system call (`super::futex_wait`), like [`Condvar`](super::Condvar):
//!
//! * `recv_seq`, which the receiver sleeps on. The receiver sets `recv_waiting`, reads
//!   `recv_seq`, tries the queue once more, and only then waits for `recv_seq` to change. A
//!   sender pushes, then clears `recv_waiting`, and bumps `recv_seq` and wakes only if the flag
//!   was set. Both sides change the flag with a read-modify-write (a swap), which makes it a
//!   Dekker pair without fences: the swaps are ordered in the flag's modification order; if the
//!   sender's comes first, the receiver's swap reads its value and so synchronizes with it (the
//!   push is visible to the second try); if the receiver's comes first, the sender sees the flag
//!   and its bump makes the futex wait return. So a sender pays one uncontended atomic swap per
//!   message (a `fence(SeqCst)` and a load cost more), and no system call unless the receiver
//!   sleeps.
//! * `send_seq`, which blocked senders of a bounded channel sleep on, the same way, flagged in
//!   `send_waiting`; the receiver bumps it and wakes them all after taking a message from a
//!   bounded channel when the flag is set, and a dropped receiver does so unconditionally.
//!
//! The waker clears the flag it saw, so that while the sleeper is being woken and scheduled,
//! later messages do not each pay a `futex` wake; the sleeper sets the flag again before its next
//! sleep. With several sleeping senders one wake-all reaches them all (a sender's swap that reads
//! another sender's `true` still synchronizes with the receiver's earlier swap: swaps continue a
//! release sequence).
//!
//! Nothing is lost because a value is only ever in one place: in the sender's hands until
//! `try_send` accepts it (an interrupt before that returns it in the error), then in the queue
//! until `try_recv` takes it (an interrupt of the receiver leaves it there); for a rendezvous,
//! in a slot that exactly one side empties (below).
//!
//! Before it sleeps, a waiting end spins and yields briefly, with the limits std's channel uses
//! for its own `recv` (`Backoff`): without it, a consumer that keeps up with its producer finds
//! the queue empty after nearly every message and sleeps, and each message then costs a
//! `futex` wake, about ten times slower than std's channel.
//!
//! A zero-capacity (rendezvous) channel cannot use std's: its `try_send` succeeds only while a
//! receiver is blocked in std's own `recv`, which ours never is. It is a capacity-one queue of
//! slots: the sender puts its value in a shared slot (`Slot`, a `Mutex<Option<T>>`), queues the
//! slot, and waits (on `send_seq`) until the slot is empty. Whoever empties the slot owns the
//! value, and the lock decides who that is: the receiver (`take`: the value is received, the
//! send returns `Ok`), or the sender itself when it is interrupted or sees the receiver gone
//! before that (the send returns the value in its error, as std's rendezvous `send` does when
//! the receiver is dropped). A receiver that pops a slot its sender already emptied skips it.
//! So a send that returns `Ok` was received, and one that fails was not. The receiver empties the
//! slot, then wakes blocked senders as after any receive (the `send_waiting` Dekker pair orders
//! the emptying before the sender's next look).
//!
//! `try_send` on a rendezvous channel must succeed only if a receiver takes the value (std hands
//! it to a receiver blocked in `recv`). `recv_waiting` says a receiver is about to sleep, but it
//! may be stale (the receiver may be interrupted, or time out, before it looks again), so
//! `try_send` queues a slot only when the flag is set, wakes the receiver, and waits a short
//! bounded time (`TRY_SEND_WAIT`, not killable) for the slot to be emptied; if it is not, it
//! takes the value back and reports `Full`.

use std::error::Error;
use std::fmt;
use std::io;
use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

pub use std::sync::mpsc::{TryRecvError, TrySendError};

use crate::errors::Interrupted;
use crate::futex;
use crate::time::abs_deadline;

/// A short spin-then-yield before sleeping, with std's channel's limits (2^6 spins, then
/// yields up to step 10).
struct Backoff(u32);

impl Backoff {
    fn new() -> Backoff {
        Backoff(0)
    }

    /// Waits a little; `false` once it is time to sleep instead.
    #[inline]
    fn snooze(&mut self) -> bool {
        if self.0 <= 6 {
            for _ in 0..1u32 << self.0 {
                std::hint::spin_loop();
            }
        } else if self.0 <= 10 {
            std::thread::yield_now();
        } else {
            return false;
        }
        self.0 += 1;
        true
    }
}

/// A receiver's queue: plain values (`channel`), or values or rendezvous slots
/// (`sync_channel`). Unbounded channels carry the bare value: a wider slot cost them about a
/// tenth of their throughput.
enum Flavor<T> {
    Plain(std_mpsc::Receiver<T>),
    Acked(std_mpsc::Receiver<Msg<T>>),
}

/// What a `sync_channel` carries: the value (bounded), or the slot a rendezvous sender waits on
/// (module docs).
enum Msg<T> {
    Value(T),
    Slot(Arc<Slot<T>>),
}

/// A rendezvous value: taken out by the receiver (received) or by its sender (taken back).
type Slot<T> = Mutex<Option<T>>;

impl<T> Msg<T> {
    /// The value of a message that was not queued (a rendezvous slot is still full then).
    fn into_value(self) -> T {
        match self {
            Msg::Value(v) => v,
            Msg::Slot(slot) => claim(&slot).expect("an unqueued slot is full"),
        }
    }
}

/// Empties a rendezvous slot; `None` if the other side did first.
fn claim<T>(slot: &Slot<T>) -> Option<T> {
    slot.lock().unwrap_or_else(PoisonError::into_inner).take()
}

/// How long a rendezvous `try_send` waits for a receiver that said it was waiting (module docs).
const TRY_SEND_WAIT: Duration = Duration::from_millis(20);

/// The waiting state shared by a channel's ends (module docs).
struct Shared {
    recv_seq: AtomicU32,
    recv_waiting: AtomicBool,
    send_seq: AtomicU32,
    /// Some sender sleeps on `send_seq` (cleared by the one that wakes them all).
    send_waiting: AtomicBool,
    /// A `sync_channel(0)`.
    rendezvous: bool,
    /// The receiver was dropped (for rendezvous senders, which cannot learn it from the queue
    /// without putting their value in it).
    receiver_gone: AtomicBool,
}

impl Shared {
    fn new(rendezvous: bool) -> Arc<Shared> {
        Arc::new(Shared {
            recv_seq: AtomicU32::new(0),
            recv_waiting: AtomicBool::new(false),
            send_seq: AtomicU32::new(0),
            send_waiting: AtomicBool::new(false),
            rendezvous,
            receiver_gone: AtomicBool::new(false),
        })
    }

    /// After a push or a sender's drop: wakes the receiver if it waits (module docs). The swap
    /// both reads the flag and clears it, so only the first sender to see it makes the system
    /// call while the receiver is being woken; the receiver sets it again before it sleeps.
    #[inline]
    fn notify_receiver(&self) {
        if self.recv_waiting.swap(false, Ordering::AcqRel) {
            self.recv_seq.fetch_add(1, Ordering::Release);
            futex::wake(&self.recv_seq, 1);
        }
    }

    /// After a receive from a bounded channel: wakes blocked senders if any wait.
    #[inline]
    fn notify_senders(&self) {
        if self.send_waiting.swap(false, Ordering::AcqRel) {
            self.wake_senders();
        }
    }

    fn wake_senders(&self) {
        self.send_seq.fetch_add(1, Ordering::Release);
        futex::wake(&self.send_seq, i32::MAX);
    }
}

/// Creates an unbounded channel, like [`std::sync::mpsc::channel`].
///
/// # Examples
///
/// ```
/// let (tx, rx) = killable::sync::mpsc::channel();
/// killable::spawn(move || tx.send(42).unwrap());
/// assert_eq!(rx.recv().unwrap(), 42);
/// ```
pub fn channel<T>() -> (Sender<T>, Receiver<T>) {
    let (tx, rx) = std_mpsc::channel();
    let shared = Shared::new(false);
    (
        Sender {
            inner: ManuallyDrop::new(tx),
            shared: shared.clone(),
        },
        Receiver {
            inner: ManuallyDrop::new(Flavor::Plain(rx)),
            shared,
        },
    )
}

/// Creates a channel that holds at most `bound` messages, like
/// [`std::sync::mpsc::sync_channel`]; with `bound` 0 each send waits until its value is
/// received (a rendezvous).
///
/// # Examples
///
/// ```
/// let (tx, rx) = killable::sync::mpsc::sync_channel(1);
/// tx.send(1).unwrap();
/// assert!(tx.try_send(2).is_err()); // full
/// assert_eq!(rx.recv().unwrap(), 1);
/// ```
pub fn sync_channel<T>(bound: usize) -> (SyncSender<T>, Receiver<T>) {
    let (tx, rx) = std_mpsc::sync_channel(bound.max(1));
    let shared = Shared::new(bound == 0);
    (
        SyncSender {
            inner: ManuallyDrop::new(tx),
            shared: shared.clone(),
        },
        Receiver {
            inner: ManuallyDrop::new(Flavor::Acked(rx)),
            shared,
        },
    )
}

/// The sending half of a [`channel`]; cloneable, and `Send` when `T` is.
///
/// # Examples
///
/// ```
/// let (tx, rx) = killable::sync::mpsc::channel();
/// let tx2 = tx.clone();
/// tx.send(1).unwrap();
/// tx2.send(2).unwrap();
/// assert_eq!(rx.iter().take(2).collect::<Vec<_>>(), [1, 2]);
/// ```
pub struct Sender<T> {
    inner: ManuallyDrop<std_mpsc::Sender<T>>,
    shared: Arc<Shared>,
}

/// The sending half of a [`sync_channel`]; cloneable, and `Send` when `T` is.
///
/// # Examples
///
/// ```
/// let (tx, rx) = killable::sync::mpsc::sync_channel(4);
/// std::thread::scope(|s| {
///     s.spawn(|| for i in 0..10 { tx.send(i).unwrap() });
///     assert_eq!(rx.iter().take(10).sum::<i32>(), 45);
/// });
/// ```
pub struct SyncSender<T> {
    inner: ManuallyDrop<std_mpsc::SyncSender<Msg<T>>>,
    shared: Arc<Shared>,
}

/// The receiving half of a channel; `Send` when `T` is, not `Sync` (one consumer).
///
/// # Examples
///
/// ```
/// let (tx, rx) = killable::sync::mpsc::channel::<u8>();
/// drop(tx);
/// assert!(rx.recv().is_err()); // disconnected
/// ```
pub struct Receiver<T> {
    inner: ManuallyDrop<Flavor<T>>,
    shared: Arc<Shared>,
}

/// Why a send failed; the value comes back in either case and is never delivered.
///
/// Converts into an [`io::Error`]: for an interrupt one that
/// [`is_interrupt`](crate::is_interrupt) recognises, otherwise [`io::ErrorKind::BrokenPipe`].
///
/// # Examples
///
/// ```
/// use killable::sync::mpsc::{channel, SendError};
/// let (tx, rx) = channel();
/// drop(rx);
/// let err = tx.send(5).unwrap_err();
/// assert!(matches!(err, SendError::Disconnected(5)));
/// assert_eq!(err.into_inner(), 5);
/// ```
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum SendError<T> {
    /// The receiver is gone.
    Disconnected(T),
    /// The sending thread was interrupted (or its [`timeout`](crate::timeout) passed) while the
    /// channel was full, or, on a zero-capacity channel, before the receiver took the value.
    Interrupted(T, Interrupted),
}

impl<T> SendError<T> {
    /// The value that was not sent.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = killable::sync::mpsc::channel();
    /// drop(rx);
    /// assert_eq!(tx.send("x").unwrap_err().into_inner(), "x");
    /// ```
    pub fn into_inner(self) -> T {
        match self {
            SendError::Disconnected(t) | SendError::Interrupted(t, _) => t,
        }
    }

    /// Whether the send was interrupted (rather than the receiver gone).
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = killable::sync::mpsc::sync_channel(0);
    /// drop(rx);
    /// assert!(!tx.send(1).unwrap_err().is_interrupt());
    /// ```
    pub fn is_interrupt(&self) -> bool {
        matches!(self, SendError::Interrupted(..))
    }
}

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Disconnected(_) => f.write_str("Disconnected(..)"),
            SendError::Interrupted(_, i) => write!(f, "Interrupted(.., {i:?})"),
        }
    }
}

impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Disconnected(_) => f.write_str("sending on a closed channel"),
            SendError::Interrupted(_, i) => write!(f, "sending on a full channel: {i}"),
        }
    }
}

impl<T> Error for SendError<T> {}

impl<T> From<SendError<T>> for io::Error {
    fn from(e: SendError<T>) -> io::Error {
        match e {
            SendError::Disconnected(_) => {
                io::Error::new(io::ErrorKind::BrokenPipe, "sending on a closed channel")
            }
            SendError::Interrupted(_, i) => i.into(),
        }
    }
}

/// Why [`Receiver::recv`] returned no value.
///
/// Converts into an [`io::Error`]: for an interrupt one that
/// [`is_interrupt`](crate::is_interrupt) recognises, otherwise [`io::ErrorKind::BrokenPipe`].
///
/// # Examples
///
/// ```
/// let (tx, rx) = killable::sync::mpsc::channel::<u8>();
/// killable::current().interrupt();
/// let err = std::io::Error::from(rx.recv().unwrap_err());
/// assert!(killable::is_interrupt(&err));
/// killable::clear_interrupt();
/// drop(tx);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RecvError {
    /// Every sender is gone and the channel is empty.
    Disconnected,
    /// The receiving thread was interrupted (or its [`timeout`](crate::timeout) passed).
    Interrupted(Interrupted),
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvError::Disconnected => f.write_str("receiving on a closed channel"),
            RecvError::Interrupted(i) => write!(f, "receiving: {i}"),
        }
    }
}

impl Error for RecvError {}

impl From<RecvError> for io::Error {
    fn from(e: RecvError) -> io::Error {
        match e {
            RecvError::Disconnected => {
                io::Error::new(io::ErrorKind::BrokenPipe, "receiving on a closed channel")
            }
            RecvError::Interrupted(i) => i.into(),
        }
    }
}

/// Why [`Receiver::recv_timeout`] returned no value.
///
/// Converts into an [`io::Error`]: for an interrupt one that
/// [`is_interrupt`](crate::is_interrupt) recognises; [`io::ErrorKind::TimedOut`] for the
/// timeout (not an interrupt); [`io::ErrorKind::BrokenPipe`] for a disconnection.
///
/// # Examples
///
/// ```
/// use killable::sync::mpsc::RecvTimeoutError;
/// let (_tx, rx) = killable::sync::mpsc::channel::<u8>();
/// let err = rx.recv_timeout(std::time::Duration::from_millis(1)).unwrap_err();
/// assert_eq!(err, RecvTimeoutError::Timeout);
/// assert!(!killable::is_interrupt(&err.into()));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RecvTimeoutError {
    /// No message arrived in time.
    Timeout,
    /// Every sender is gone and the channel is empty.
    Disconnected,
    /// The receiving thread was interrupted (or its [`timeout`](crate::timeout) passed).
    Interrupted(Interrupted),
}

impl fmt::Display for RecvTimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvTimeoutError::Timeout => f.write_str("timed out waiting on channel"),
            RecvTimeoutError::Disconnected => {
                f.write_str("channel is empty and sending half is closed")
            }
            RecvTimeoutError::Interrupted(i) => write!(f, "receiving: {i}"),
        }
    }
}

impl Error for RecvTimeoutError {}

impl From<RecvTimeoutError> for io::Error {
    fn from(e: RecvTimeoutError) -> io::Error {
        match e {
            RecvTimeoutError::Timeout => {
                io::Error::new(io::ErrorKind::TimedOut, "timed out waiting on channel")
            }
            RecvTimeoutError::Disconnected => {
                io::Error::new(io::ErrorKind::BrokenPipe, "receiving on a closed channel")
            }
            RecvTimeoutError::Interrupted(i) => i.into(),
        }
    }
}

impl<T> Sender<T> {
    /// Sends a value; it never blocks, like std's. Fails only when the receiver is gone,
    /// handing the value back.
    ///
    /// # Errors
    ///
    /// [`SendError::Disconnected`] with the value if the receiver was dropped.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = killable::sync::mpsc::channel();
    /// tx.send('a').unwrap();
    /// assert_eq!(rx.recv().unwrap(), 'a');
    /// ```
    pub fn send(&self, value: T) -> Result<(), SendError<T>> {
        match self.inner.send(value) {
            Ok(()) => {
                self.shared.notify_receiver();
                Ok(())
            }
            Err(e) => Err(SendError::Disconnected(e.0)),
        }
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Sender<T> {
        Sender {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        // SAFETY: dropped once, here; `inner` is not used afterwards.
        unsafe { ManuallyDrop::drop(&mut self.inner) };
        // The last sender gone makes the queue disconnected: a waiting receiver must look.
        self.shared.notify_receiver();
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender").finish_non_exhaustive()
    }
}

impl<T> SyncSender<T> {
    /// Sends a value, waiting (killable) while the channel is full; on a zero-capacity channel
    /// it waits until the value has been received.
    ///
    /// Like every killable call it fails at once if an interrupt is pending, even when there is
    /// room.
    ///
    /// # Errors
    ///
    /// * [`SendError::Disconnected`] with the value if the receiver was dropped.
    /// * [`SendError::Interrupted`] with the value if the thread was interrupted (or its
    ///   [`timeout`](crate::timeout) passed) before the value went into the channel; on a
    ///   zero-capacity channel, before the receiver took it. On a zero-capacity channel `Ok`
    ///   means the value was received, and a receiver dropped before taking it makes the send
    ///   return [`SendError::Disconnected`] with the value, as std's does.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = killable::sync::mpsc::sync_channel(1);
    /// tx.send(1).unwrap();
    /// // Full: this send blocks until interrupted, and hands the value back.
    /// let blocked = killable::spawn(move || tx.send(2).map_err(|e| e.into_inner()));
    /// blocked.interrupt();
    /// assert_eq!(blocked.join().unwrap(), Err(2));
    /// assert_eq!(rx.recv().unwrap(), 1);
    /// assert!(rx.try_recv().is_err()); // 2 was never delivered
    /// ```
    pub fn send(&self, value: T) -> Result<(), SendError<T>> {
        if let Err(i) = crate::interrupt::check() {
            return Err(SendError::Interrupted(value, i));
        }
        let (mut msg, slot) = if self.shared.rendezvous {
            let slot = Arc::new(Mutex::new(Some(value)));
            (Msg::Slot(slot.clone()), Some(slot))
        } else {
            (Msg::Value(value), None)
        };
        loop {
            match self.inner.try_send(msg) {
                Ok(()) => {
                    self.shared.notify_receiver();
                    break;
                }
                Err(std_mpsc::TrySendError::Disconnected(m)) => {
                    return Err(SendError::Disconnected(m.into_value()));
                }
                Err(std_mpsc::TrySendError::Full(m)) => msg = m,
            }
            // Full: spin and yield a little (as std does), then wait for the receiver to take
            // something (module docs).
            let mut backoff = Backoff::new();
            while backoff.snooze() {
                match self.inner.try_send(msg) {
                    Ok(()) => {
                        self.shared.notify_receiver();
                        return self.sent(slot);
                    }
                    Err(std_mpsc::TrySendError::Disconnected(m)) => {
                        return Err(SendError::Disconnected(m.into_value()));
                    }
                    Err(std_mpsc::TrySendError::Full(m)) => msg = m,
                }
            }
            let shared = &*self.shared;
            shared.send_waiting.swap(true, Ordering::AcqRel);
            let seq = shared.send_seq.load(Ordering::Acquire);
            let again = self.inner.try_send(msg);
            let waited = match &again {
                Err(std_mpsc::TrySendError::Full(_)) => {
                    Some(super::futex_wait(&shared.send_seq, seq, None))
                }
                _ => None,
            };
            match again {
                Ok(()) => {
                    self.shared.notify_receiver();
                    break;
                }
                Err(std_mpsc::TrySendError::Disconnected(m)) => {
                    return Err(SendError::Disconnected(m.into_value()));
                }
                Err(std_mpsc::TrySendError::Full(m)) => {
                    if let Some(Err(i)) = waited {
                        return Err(SendError::Interrupted(m.into_value(), i));
                    }
                    msg = m;
                }
            }
        }
        self.sent(slot)
    }

    /// The message is in the queue: a rendezvous sender waits until its value is received.
    #[inline]
    fn sent(&self, slot: Option<Arc<Slot<T>>>) -> Result<(), SendError<T>> {
        match slot {
            Some(slot) => self.wait_taken(&slot),
            None => Ok(()),
        }
    }

    /// A rendezvous sender waits until the receiver has emptied its slot; interrupted, or with
    /// the receiver gone, it takes the value back if it still can (module docs).
    fn wait_taken(&self, slot: &Slot<T>) -> Result<(), SendError<T>> {
        let shared = &*self.shared;
        loop {
            shared.send_waiting.swap(true, Ordering::AcqRel);
            let seq = shared.send_seq.load(Ordering::Acquire);
            if slot
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .is_none()
            {
                return Ok(());
            }
            if shared.receiver_gone.load(Ordering::Acquire) {
                return match claim(slot) {
                    Some(v) => Err(SendError::Disconnected(v)),
                    None => Ok(()),
                };
            }
            if let Err(i) = super::futex_wait(&shared.send_seq, seq, None) {
                return match claim(slot) {
                    Some(v) => Err(SendError::Interrupted(v, i)),
                    None => Ok(()),
                };
            }
        }
    }

    /// Sends a value if there is room now, like std's `try_send`; on a zero-capacity channel,
    /// only to a receiver waiting in [`recv`](Receiver::recv) that takes it: it then waits (not
    /// killable, at most about 20 ms) for the receiver to take the value, and takes it back and
    /// returns [`TrySendError::Full`] if it does not, so that `Ok` means received, as in std.
    ///
    /// # Errors
    ///
    /// [`TrySendError::Full`] or [`TrySendError::Disconnected`], with the value.
    ///
    /// # Examples
    ///
    /// ```
    /// use killable::sync::mpsc::{sync_channel, TrySendError};
    /// let (tx, rx) = sync_channel(1);
    /// tx.try_send(1).unwrap();
    /// assert_eq!(tx.try_send(2), Err(TrySendError::Full(2)));
    /// drop(rx);
    /// assert_eq!(tx.try_send(3), Err(TrySendError::Disconnected(3)));
    /// ```
    pub fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        if !self.shared.rendezvous {
            return match self.inner.try_send(Msg::Value(value)) {
                Ok(()) => {
                    self.shared.notify_receiver();
                    Ok(())
                }
                Err(std_mpsc::TrySendError::Full(m)) => Err(TrySendError::Full(m.into_value())),
                Err(std_mpsc::TrySendError::Disconnected(m)) => {
                    Err(TrySendError::Disconnected(m.into_value()))
                }
            };
        }
        let shared = &*self.shared;
        if !shared.recv_waiting.load(Ordering::SeqCst) {
            // Nobody to hand it to now.
            return Err(if shared.receiver_gone.load(Ordering::Acquire) {
                TrySendError::Disconnected(value)
            } else {
                TrySendError::Full(value)
            });
        }
        // The flag may be stale: hand the value over only if the receiver takes it within a
        // short bounded wait, else take it back (module docs).
        let slot = Arc::new(Mutex::new(Some(value)));
        match self.inner.try_send(Msg::Slot(slot.clone())) {
            Ok(()) => shared.notify_receiver(),
            Err(std_mpsc::TrySendError::Full(m)) => return Err(TrySendError::Full(m.into_value())),
            Err(std_mpsc::TrySendError::Disconnected(m)) => {
                return Err(TrySendError::Disconnected(m.into_value()));
            }
        }
        let deadline = abs_deadline(Some(TRY_SEND_WAIT));
        loop {
            shared.send_waiting.swap(true, Ordering::AcqRel);
            let seq = shared.send_seq.load(Ordering::Acquire);
            if slot
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .is_none()
            {
                return Ok(());
            }
            let gone = shared.receiver_gone.load(Ordering::Acquire);
            if gone || !futex::wait(&shared.send_seq, seq, deadline.as_ref()) {
                return match claim(&slot) {
                    Some(v) if gone => Err(TrySendError::Disconnected(v)),
                    Some(v) => Err(TrySendError::Full(v)),
                    None => Ok(()),
                };
            }
        }
    }
}

impl<T> Clone for SyncSender<T> {
    fn clone(&self) -> SyncSender<T> {
        SyncSender {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for SyncSender<T> {
    fn drop(&mut self) {
        // SAFETY: dropped once, here; `inner` is not used afterwards.
        unsafe { ManuallyDrop::drop(&mut self.inner) };
        self.shared.notify_receiver();
    }
}

impl<T> fmt::Debug for SyncSender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SyncSender").finish_non_exhaustive()
    }
}

impl<T> Receiver<T> {
    /// Takes a message out of the queue, if there is one; acknowledges a rendezvous.
    #[inline]
    fn take(&self) -> Result<T, TryRecvError> {
        match &*self.inner {
            Flavor::Plain(rx) => rx.try_recv(),
            Flavor::Acked(rx) => loop {
                let value = match rx.try_recv()? {
                    Msg::Value(v) => Some(v),
                    // Emptied under the lock before the senders are told (module docs).
                    Msg::Slot(slot) => claim(&slot),
                };
                self.shared.notify_senders();
                if let Some(v) = value {
                    return Ok(v);
                }
                // Its sender took it back: the next one, if any.
            },
        }
    }

    /// Waits, killable, for a message until the absolute `deadline`: `Ok(None)` on timeout.
    fn recv_until(&self, deadline: Option<&libc::timespec>) -> Result<Option<T>, RecvError> {
        crate::interrupt::check().map_err(RecvError::Interrupted)?;
        let shared = &*self.shared;
        loop {
            // Spin and yield a little first, as std's own `recv` does: a message that arrives
            // within microseconds then costs neither side a system call.
            let mut backoff = Backoff::new();
            loop {
                match self.take() {
                    Ok(v) => return Ok(Some(v)),
                    Err(TryRecvError::Disconnected) => return Err(RecvError::Disconnected),
                    Err(TryRecvError::Empty) => {}
                }
                if !backoff.snooze() {
                    break;
                }
            }
            shared.recv_waiting.swap(true, Ordering::AcqRel);
            let seq = shared.recv_seq.load(Ordering::Acquire);
            let again = self.take();
            let waited = match again {
                Err(TryRecvError::Empty) => super::futex_wait(&shared.recv_seq, seq, deadline),
                _ => Ok(true),
            };
            shared.recv_waiting.store(false, Ordering::Relaxed);
            match again {
                Ok(v) => return Ok(Some(v)),
                Err(TryRecvError::Disconnected) => return Err(RecvError::Disconnected),
                Err(TryRecvError::Empty) => {}
            }
            match waited {
                Err(i) => return Err(RecvError::Interrupted(i)),
                Ok(false) => {
                    // Time is up; a message that came at the last moment is still taken.
                    return match self.take() {
                        Ok(v) => Ok(Some(v)),
                        Err(TryRecvError::Disconnected) => Err(RecvError::Disconnected),
                        Err(TryRecvError::Empty) => Ok(None),
                    };
                }
                Ok(true) => {}
            }
        }
    }

    /// Waits, killable, for a message, like std's `recv`.
    ///
    /// # Errors
    ///
    /// * [`RecvError::Disconnected`] once every sender is gone and the queue is empty.
    /// * [`RecvError::Interrupted`] if the thread is interrupted (or its
    ///   [`timeout`](crate::timeout) passes) before a message is taken, also when one is waiting:
    ///   the messages stay in the channel.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = killable::sync::mpsc::channel::<u32>();
    /// let worker = killable::spawn(move || rx.recv());
    /// worker.interrupt(); // no message will ever come
    /// let err = std::io::Error::from(worker.join().unwrap().unwrap_err());
    /// assert!(killable::is_interrupt(&err));
    /// drop(tx);
    /// ```
    pub fn recv(&self) -> Result<T, RecvError> {
        self.recv_until(None)
            .map(|v| v.expect("no deadline, so no timeout"))
    }

    /// Like [`recv`](Receiver::recv), giving up after `timeout`.
    ///
    /// # Errors
    ///
    /// As [`recv`](Receiver::recv), and [`RecvTimeoutError::Timeout`] when the time is up.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let (tx, rx) = killable::sync::mpsc::channel();
    /// tx.send(1).unwrap();
    /// assert_eq!(rx.recv_timeout(Duration::from_secs(1)), Ok(1));
    /// assert!(rx.recv_timeout(Duration::from_millis(1)).is_err());
    /// ```
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        let deadline = abs_deadline(Some(timeout));
        match self.recv_until(deadline.as_ref()) {
            Ok(Some(v)) => Ok(v),
            Ok(None) => Err(RecvTimeoutError::Timeout),
            Err(RecvError::Disconnected) => Err(RecvTimeoutError::Disconnected),
            Err(RecvError::Interrupted(i)) => Err(RecvTimeoutError::Interrupted(i)),
        }
    }

    /// Takes a message if one is waiting, without blocking (not a killable call: it ignores
    /// interrupts), like std's `try_recv`.
    ///
    /// # Errors
    ///
    /// [`TryRecvError::Empty`], or [`TryRecvError::Disconnected`] once every sender is gone
    /// and the queue is empty.
    ///
    /// # Examples
    ///
    /// ```
    /// use killable::sync::mpsc::{channel, TryRecvError};
    /// let (tx, rx) = channel::<i32>();
    /// assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    /// drop(tx);
    /// assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
    /// ```
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        self.take()
    }

    /// An iterator that [`recv`](Receiver::recv)s until the channel is disconnected or the
    /// thread is interrupted.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = killable::sync::mpsc::channel();
    /// killable::spawn(move || for i in 1..=3 { tx.send(i).unwrap() });
    /// assert_eq!(rx.iter().collect::<Vec<_>>(), [1, 2, 3]);
    /// ```
    pub fn iter(&self) -> Iter<'_, T> {
        Iter { rx: self }
    }

    /// An iterator over the messages waiting now, without blocking.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = killable::sync::mpsc::channel();
    /// tx.send(1).unwrap();
    /// tx.send(2).unwrap();
    /// assert_eq!(rx.try_iter().collect::<Vec<_>>(), [1, 2]);
    /// ```
    pub fn try_iter(&self) -> TryIter<'_, T> {
        TryIter { rx: self }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        // SAFETY: dropped once, here; `inner` is not used afterwards.
        unsafe { ManuallyDrop::drop(&mut self.inner) };
        self.shared.receiver_gone.store(true, Ordering::Release);
        // Blocked senders must see the disconnection (and rendezvous senders stop waiting for
        // an acknowledgement that cannot come).
        self.shared.wake_senders();
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver").finish_non_exhaustive()
    }
}

/// The iterator of [`Receiver::iter`].
///
/// # Examples
///
/// ```
/// let (tx, rx) = killable::sync::mpsc::channel();
/// tx.send(1).unwrap();
/// drop(tx);
/// let it: killable::sync::mpsc::Iter<'_, i32> = rx.iter();
/// assert_eq!(it.count(), 1);
/// ```
#[derive(Debug)]
pub struct Iter<'a, T> {
    rx: &'a Receiver<T>,
}

impl<T> Iterator for Iter<'_, T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.rx.recv().ok()
    }
}

/// The iterator of [`Receiver::try_iter`].
///
/// # Examples
///
/// ```
/// let (_tx, rx) = killable::sync::mpsc::channel::<u8>();
/// assert_eq!(rx.try_iter().next(), None);
/// ```
#[derive(Debug)]
pub struct TryIter<'a, T> {
    rx: &'a Receiver<T>,
}

impl<T> Iterator for TryIter<'_, T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.rx.try_recv().ok()
    }
}

/// The iterator of `Receiver`'s `into_iter`.
///
/// # Examples
///
/// ```
/// let (tx, rx) = killable::sync::mpsc::channel();
/// tx.send(7).unwrap();
/// drop(tx);
/// assert_eq!(rx.into_iter().collect::<Vec<_>>(), [7]);
/// ```
#[derive(Debug)]
pub struct IntoIter<T> {
    rx: Receiver<T>,
}

impl<T> Iterator for IntoIter<T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.rx.recv().ok()
    }
}

impl<'a, T> IntoIterator for &'a Receiver<T> {
    type Item = T;
    type IntoIter = Iter<'a, T>;
    fn into_iter(self) -> Iter<'a, T> {
        self.iter()
    }
}

impl<T> IntoIterator for Receiver<T> {
    type Item = T;
    type IntoIter = IntoIter<T>;
    fn into_iter(self) -> IntoIter<T> {
        IntoIter { rx: self }
    }
}
