/*
 * killable's test fixtures (the dev-only crate killable-testkit): foreign loops that the
 * examples, tests and benchmarks stop. They stand for C library code that never returns; the
 * library neither builds nor calls them. Declared for Rust in src/demo.rs: keep the two in sync.
 */
#include <errno.h>
#include <unistd.h>

/* Spins forever, counting in *counter (a volatile unsigned long). */
void killable_demo_spin(void *counter)
{
	volatile unsigned long *c = counter;
	for (;;)
		(*c)++;
}

/* Reads from the file descriptor *fd until end of file, retrying after EINTR, as much C code
 * does: an interrupt alone cannot stop it. */
void killable_demo_read_retrying(void *fd)
{
	char buf[256];
	for (;;) {
		ssize_t n = read(*(int *)fd, buf, sizeof buf);
		if (n == 0)
			return;
		if (n < 0 && errno != EINTR)
			return;
	}
}

/* killable's own (src/sys/kill.c in the killable crate): a kill region entered from C. */
int killable_region_nested(void (*f)(void *), void *arg);

/* A region inside a region, entered from C: arg points to an int that receives the inner
 * region's result (1 when a kill abandoned it); then this outer function returns normally. */
void killable_demo_nested(void *arg)
{
	volatile unsigned long counter = 0;
	*(volatile int *)arg = killable_region_nested(killable_demo_spin, (void *)&counter);
}
