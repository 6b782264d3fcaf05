/*
 * killable: the race-free blocking system call, aarch64.
 *
 * long killable_syscall_cp(const volatile uint32_t *state, long nr,
 *                          long a0, long a1, long a2, long a3, long a4, long a5);
 *
 * The same contract as src/sys/syscall_x86_64.S (read its header): the control word is loaded
 * and checked, and the kernel entered, between killable_cp_begin and killable_cp_end; a stop
 * request (1 <= *state <= 0xff) returns -EINTR without entering the kernel; the signal handler
 * moves a program counter in [killable_cp_begin, killable_cp_end) to killable_cp_cancel, which
 * returns -EINTR; a program counter at killable_cp_end (the instruction after `svc`, where the
 * kernel returns) keeps the system call's result.
 *
 * Arguments (AAPCS64): x0 = state, x1 = nr, x2..x7 = a0..a5. Kernel: x8 = nr, x0..x5, result
 * in x0. x9 is a caller-saved scratch register.
 */
	.equ	KILLABLE_REQUEST_MASK, 0xff

	.section .rodata
	.globl	killable_stub_request_mask
	.hidden	killable_stub_request_mask
	.balign	4
killable_stub_request_mask:
	.word	KILLABLE_REQUEST_MASK

	.text
	.balign	4
	.globl	killable_syscall_cp
	.hidden	killable_syscall_cp
	.type	killable_syscall_cp, %function
	.globl	killable_cp_begin
	.hidden	killable_cp_begin
	.globl	killable_cp_end
	.hidden	killable_cp_end
	.globl	killable_cp_cancel
	.hidden	killable_cp_cancel
killable_syscall_cp:
	.cfi_startproc
killable_cp_begin:
	ldr	w9, [x0]
	sub	w9, w9, #1
	cmp	w9, #(KILLABLE_REQUEST_MASK - 1)
	b.ls	killable_cp_cancel
	mov	x8, x1
	mov	x0, x2
	mov	x1, x3
	mov	x2, x4
	mov	x3, x5
	mov	x4, x6
	mov	x5, x7
	svc	#0
killable_cp_end:
	ret
killable_cp_cancel:
	mov	x0, #-4
	ret
	.cfi_endproc
	.size	killable_syscall_cp, .-killable_syscall_cp

	.section .note.GNU-stack, "", %progbits
