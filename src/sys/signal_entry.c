/*
 * killable: the signal handler's entry point, the function registered with sigaction for
 * killable's signal (src/signal.rs installs it and explains the protocol).
 *
 * It asks the Rust half of the handler (src/signal.rs, `handler`, set once with
 * killable_set_rust_handler before the entry is installed) what to do. The Rust half has
 * returned before this function jumps, so a kill's siglongjmp (src/sys/kill.c) passes over only
 * this C frame, the kernel's signal frame and the kill region's foreign frames: never a Rust
 * frame (RFC 2945).
 */
#include <signal.h>

typedef int (*killable_rust_handler)(int, siginfo_t *, void *);

void killable_region_abandon(void) __attribute__((noreturn));

static killable_rust_handler killable_rust;

void killable_set_rust_handler(killable_rust_handler h)
{
	killable_rust = h;
}

void killable_signal_entry(int sig, siginfo_t *info, void *ctx)
{
	if (killable_rust(sig, info, ctx))
		killable_region_abandon();
}
