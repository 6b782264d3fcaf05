/*
 * killable: kill regions.
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
 * Declared in src/kill.rs. The control word's layout is src/control.rs's; a unit test there
 * checks the constants below.
 */
#include <setjmp.h>
#include <signal.h>
#include <stddef.h>
#include <string.h>
#include <ucontext.h>

/* The control word's layout, defined in src/control.rs; the exported copies below let its unit
 * test (the_c_and_assembly_layouts_match) check these against the Rust definition. */
#define KILLABLE_KILL 4u
#define KILLABLE_DEFER_SHIFT 8

const unsigned killable_c_kill = KILLABLE_KILL;
const unsigned killable_c_defer_shift = KILLABLE_DEFER_SHIFT;

typedef void (*killable_region_fn)(void *);

struct killable_region {
	sigjmp_buf env;
	struct killable_region *outer;
	volatile unsigned *state;
	/* The signal mask the region's own code runs with, saved at entry. */
	sigset_t mask;
};

/* The innermost region of this thread. initial-exec: a plain access relative to the thread
 * pointer (%fs, tpidr_el0, tp), safe in a signal handler (no lazy TLS allocation). */
static __thread struct killable_region *killable_region_top
	__attribute__((tls_model("initial-exec")));

/* Non-zero while a region is being entered: its jump buffer is set but it is not published
 * yet, so a kill must not jump (it would land in the outer region); the entry re-checks the
 * control word after publishing. */
static __thread volatile int killable_region_entering
	__attribute__((tls_model("initial-exec")));

/* Set by the handler when it postponed a kill by blocking killable's signal in the interrupted
 * context (src/signal.rs, postpone_kill). If that context was the region's own code (which had
 * changed its mask) rather than another handler, nothing else would ever unblock the signal:
 * the region's exit restores its entry mask. */
static __thread volatile int killable_region_postponed
	__attribute__((tls_model("initial-exec")));

void killable_region_note_postponed(void)
{
	killable_region_postponed = 1;
}

/* What a kill signal may do, given the interrupted context `ctx` (a ucontext_t):
 *   0: no region to abandon (none, or one being entered: its entry sees the bit);
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
	if (r == NULL || killable_region_entering)
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
	/* The mask is saved here and restored after a jump by hand rather than by sigsetjmp(env, 1):
	 * the same two system calls, and the handler can compare against it. */
	pthread_sigmask(SIG_SETMASK, NULL, &r.mask);
	killable_region_entering = 1;
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	if (sigsetjmp(r.env, 0)) {
		/* Abandoned: the handler's mask (killable's signal blocked) is still in force. The
		 * region is popped before the mask is restored, so a second kill already pending
		 * lands on the outer region, which is now the innermost. */
		killable_region_top = r.outer;
		__atomic_signal_fence(__ATOMIC_SEQ_CST);
		killable_region_postponed = 0;
		pthread_sigmask(SIG_SETMASK, &r.mask, NULL);
		return 1;
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
	/* Popped at once: from here a kill is for the outer region (or for none). A kill that
	 * lands between f's return and this store abandons this region, which is still the
	 * innermost: the caller sees Killed for a call that had just completed. */
	killable_region_top = r.outer;
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	if (killable_region_postponed) {
		killable_region_postponed = 0;
		pthread_sigmask(SIG_SETMASK, &r.mask, NULL);
	}
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

/* Called by the signal entry (signal_entry.c) when the Rust handler answered "abandon": jumps
 * to the innermost region's entry. The verdict was 1, so that region exists and is not being
 * entered. */
void killable_region_abandon(void) __attribute__((noreturn));
void killable_region_abandon(void)
{
	siglongjmp(killable_region_top->env, 1);
}
