/*
 * killable: the race-free blocking system call, x86_64.
 *
 * long killable_syscall_cp(const volatile uint32_t *state, long nr,
 *                          long a0, long a1, long a2, long a3, long a4, long a5);
 *
 * Loads the thread's control word and enters the kernel, both between the labels
 * killable_cp_begin and killable_cp_end. If the word asks for a stop (a request bit set and no
 * deferral: 1 <= *state <= 0xff), it returns -EINTR without entering the kernel. killable's
 * signal handler moves a program counter found in [killable_cp_begin, killable_cp_end) to
 * killable_cp_cancel, which also returns -EINTR: so a signal that lands after the check but
 * before the syscall instruction cannot be lost. A program counter at killable_cp_end means the
 * syscall completed; its result is kept.
 *
 * Declared in src/syscall.rs. The control word's layout is src/control.rs's: REQUEST_MASK below
 * is exported as killable_stub_request_mask, and a unit test there checks it.
 *
 * Arguments (SysV): rdi = state, rsi = nr, rdx, rcx, r8, r9 = a0..a3, 8(%rsp) = a4,
 * 16(%rsp) = a5. Kernel: rax = nr, rdi, rsi, rdx, r10, r8, r9. syscall clobbers rcx and r11,
 * which are caller-saved anyway.
 */
	.equ	KILLABLE_REQUEST_MASK, 0xff

	.section .rodata
	.globl	killable_stub_request_mask
	.hidden	killable_stub_request_mask
	.balign	4
killable_stub_request_mask:
	.long	KILLABLE_REQUEST_MASK

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
	mov	(%rdi), %eax
	dec	%eax
	cmp	$(KILLABLE_REQUEST_MASK - 1), %eax
	jbe	killable_cp_cancel
	mov	%rsi, %rax
	mov	%rdx, %rdi
	mov	%rcx, %rsi
	mov	%r8, %rdx
	mov	%r9, %r10
	mov	8(%rsp), %r8
	mov	16(%rsp), %r9
	syscall
killable_cp_end:
	ret
killable_cp_cancel:
	mov	$-4, %rax
	ret
	.cfi_endproc
	.size	killable_syscall_cp, .-killable_syscall_cp

	.section .note.GNU-stack, "", @progbits
