//! Compiles killable's assembly and C with `cc`. Every symbol is prefixed `killable_`.
//! The Rust side of each file names the file it mirrors; keep the two in sync.

fn main() {
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os != "linux" || arch != "x86_64" {
        // src/lib.rs refuses to build with a clear message; nothing to compile here.
        return;
    }
    // syscall_x86_64.S: the race-free system call (src/syscall.rs).
    // kill.c: kill regions and the signal entry point (src/kill.rs, src/signal.rs).
    // demo.c: foreign loops that the examples and tests stop (not used by the library).
    let files = [
        "src/sys/syscall_x86_64.S",
        "src/sys/kill.c",
        "src/sys/demo.c",
    ];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    cc::Build::new().files(files).compile("killable_sys");
}
