//! Compiles killable's assembly and C with `cc`. Every symbol is prefixed `killable_`.
//! The Rust side of each file names the file it mirrors; keep the two in sync.

fn main() {
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    // The race-free system call, one file per architecture (same contract in each).
    let stub = match (os.as_str(), arch.as_str()) {
        ("linux", "x86_64") => "src/sys/syscall_x86_64.S",
        ("linux", "aarch64") => "src/sys/syscall_aarch64.S",
        ("linux", "riscv64") => "src/sys/syscall_riscv64.S",
        // src/lib.rs refuses to build with a clear message; nothing to compile here.
        _ => return,
    };
    // The foreign C loops that the tests, benchmarks and examples stop are not part of the
    // library: they are compiled by the dev-only crate in testkit/ (testkit/build.rs).
    // syscall_<arch>.S: the race-free system call (src/syscall.rs).
    // kill.c: kill regions (src/kill.rs).
    // signal_entry.c: the handler's entry point (src/signal.rs).
    let files = [stub, "src/sys/kill.c", "src/sys/signal_entry.c"];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    cc::Build::new().files(files).compile("killable_sys");
}
