/*
 * killable: kill regions and the signal entry point.
 *
 * A kill region is a call into foreign code that another thread may abandon. The sigsetjmp,
 * the call and the siglongjmp all happen here, in C, so no Rust frame is ever jumped over
 * (RFC 2945: longjmp across Rust frames is undefined behaviour).
 *
 * killable_signal_entry is the handler registered for killable's signal. It asks the Rust side
 * (src/signal.rs, through the pointer set by killable_set_rust_handler) what to do; the Rust
 * side has already returned when this C function jumps, so only this frame, the kernel's signal
 * frame and the region's foreign frames are abandoned.
 *
 * Keep in sync with src/kill.rs (declarations) and src/interrupt.rs (KILL = 4, REQUEST_MASK =
 * 0xff, DEFER_ONE = 0x100 in the control word).
 */
#include <setjmp.h>
#include <signal.h>
#include <stddef.h>
#include <string.h>
#include <ucontext.h>

#define KILLABLE_KILL 4u
#define KILLABLE_DEFER_SHIFT 8

typedef void (*killable_region_fn)(void *);
typedef int (*killable_rust_handler)(int, siginfo_t *, void *);

struct killable_region {
	sigjmp_buf env;
	struct killable_region *outer;
	volatile unsigned *state;
	volatile int finished;
	/* The signal mask the region's own code runs with, saved at entry. */
	sigset_t mask;
};

/* The innermost region of this thread. initial-exec: a plain %fs-relative access, safe in a
 * signal handler (no lazy TLS allocation). */
static __thread struct killable_region *killable_region_top
	__attribute__((tls_model("initial-exec")));

/* Non-zero while a region is being entered: its jump buffer is set but it is not published
 * yet, so a kill must not jump (it would land in the outer region); the entry re-checks the
 * control word after publishing. */
static __thread volatile int killable_region_entering
	__attribute__((tls_model("initial-exec")));

static killable_rust_handler killable_rust;

void killable_set_rust_handler(killable_rust_handler h)
{
	killable_rust = h;
}

/* What a kill signal may do, given the interrupted context `ctx` (a ucontext_t):
 *   0: no region to abandon (none, one being entered: its entry sees the bit, or one whose
 *      function has returned: the interrupt bit, set with the kill, stops the thread);
 *   1: abandon the innermost region;
 *   2: a region is running, but the interrupted code is not the region's own: its signal
 *      mask differs from the one saved at entry, because a signal handler runs on top of the
 *      region (the kernel adds the handler's signal to the mask) or the region's code changed
 *      the mask. Jumping would skip that handler's frames, which may be Rust: wait.
 * Only the kernel's part of the mask (the first 64 signals) is compared: the rest of a C
 * library sigset_t is not part of the kernel's signal frame. */
int killable_region_verdict(void *ctx)
{
	struct killable_region *r = killable_region_top;
	if (r == NULL || killable_region_entering || r->finished)
		return 0;
	const ucontext_t *uc = ctx;
	return memcmp(&uc->uc_sigmask, &r->mask, 8) == 0 ? 1 : 2;
}

/* Runs f(arg). Returns 0 if f returned, 1 if the region was abandoned (or never entered because
 * a kill was already pending). `state` is the thread's control word. */
int killable_region_enter(killable_region_fn f, void *arg, volatile unsigned *state)
{
	struct killable_region r;
	r.outer = killable_region_top;
	r.state = state;
	r.finished = 0;
	/* The mask is saved here and restored after a jump by hand rather than by sigsetjmp(env, 1):
	 * the same two system calls, and the handler can compare against it. */
	pthread_sigmask(SIG_SETMASK, NULL, &r.mask);
	killable_region_entering = 1;
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	if (sigsetjmp(r.env, 0)) {
		/* Abandoned: the handler's mask (killable's signal blocked) is still in force. */
		pthread_sigmask(SIG_SETMASK, &r.mask, NULL);
		killable_region_top = r.outer;
		return r.finished ? 0 : 1;
	}
	killable_region_top = &r;
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	killable_region_entering = 0;
	/* Publish the region before looking at the word: a kill whose signal came before this
	 * point left its bit set (seen below); one whose signal comes after finds the region. */
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	unsigned s = __atomic_load_n(state, __ATOMIC_ACQUIRE);
	if ((s & KILLABLE_KILL) && (s >> KILLABLE_DEFER_SHIFT) == 0) {
		/* Consume the kill, as the handler does when it jumps. */
		__atomic_fetch_and(state, ~KILLABLE_KILL, __ATOMIC_SEQ_CST);
		killable_region_top = r.outer;
		return 1;
	}
	f(arg);
	r.finished = 1;
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	killable_region_top = r.outer;
	return 0;
}

/* For C code running inside a region: runs f(arg) in a nested region of the same thread.
 * A kill abandons the innermost region only. Returns 0, 1 (abandoned) or -1 (not in a region). */
int killable_region_nested(killable_region_fn f, void *arg)
{
	if (killable_region_top == NULL)
		return -1;
	return killable_region_enter(f, arg, killable_region_top->state);
}

void killable_signal_entry(int sig, siginfo_t *info, void *ctx)
{
	if (killable_rust(sig, info, ctx) && killable_region_top != NULL)
		siglongjmp(killable_region_top->env, 1);
}
