/*
 * killable: the race-free blocking system call, riscv64.
 *
 * long killable_syscall_cp(const volatile uint32_t *state, long nr,
 *                          long a0, long a1, long a2, long a3, long a4, long a5);
 *
 * The same contract as src/sys/syscall_x86_64.S (read its header): the control word is loaded
 * and checked, and the kernel entered, between killable_cp_begin and killable_cp_end; a stop
 * request (1 <= *state <= 0xff) returns -EINTR without entering the kernel; the signal handler
 * moves a program counter in [killable_cp_begin, killable_cp_end) to killable_cp_cancel, which
 * returns -EINTR; a program counter at killable_cp_end (the instruction after `ecall`, where the
 * kernel returns) keeps the system call's result.
 *
 * Arguments (LP64): a0 = state, a1 = nr, a2..a7 = a0..a5. Kernel: a7 = nr, a0..a5, result in
 * a0. t0 and t1 are caller-saved scratch registers.
 *
 * `lw` sign-extends the word and `addiw` keeps a 32-bit result sign-extended, so the unsigned
 * 64-bit comparison below is the 32-bit one of the x86_64 stub: (state - 1) <= 0xfe.
 */
	.equ	KILLABLE_REQUEST_MASK, 0xff

	.section .rodata
	.globl	killable_stub_request_mask
	.hidden	killable_stub_request_mask
	.balign	4
killable_stub_request_mask:
	.word	KILLABLE_REQUEST_MASK

	.text
	.globl	killable_syscall_cp
	.hidden	killable_syscall_cp
	.type	killable_syscall_cp, @function
	.globl	killable_cp_begin
	.hidden	killable_cp_begin
	.globl	killable_cp_end
	.hidden	killable_cp_end
	.globl	killable_cp_cancel
	.hidden	killable_cp_cancel
killable_syscall_cp:
	.cfi_startproc
killable_cp_begin:
	lw	t0, 0(a0)
	addiw	t0, t0, -1
	li	t1, KILLABLE_REQUEST_MASK - 1
	bgeu	t1, t0, killable_cp_cancel
	mv	t1, a1
	mv	a0, a2
	mv	a1, a3
	mv	a2, a4
	mv	a3, a5
	mv	a4, a6
	mv	a5, a7
	mv	a7, t1
	ecall
killable_cp_end:
	ret
killable_cp_cancel:
	li	a0, -4
	ret
	.cfi_endproc
	.size	killable_syscall_cp, .-killable_syscall_cp

	.section .note.GNU-stack, "", @progbits
