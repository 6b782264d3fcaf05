//! Compiles killable's assembly (and, later, C) with `cc`. Every symbol is prefixed `killable_`.
//! The Rust side of each file names the file it mirrors; keep the two in sync.

fn main() {
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os != "linux" || arch != "x86_64" {
        // src/lib.rs refuses to build with a clear message; nothing to compile here.
        return;
    }
    let files = ["src/sys/syscall_x86_64.S"];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    cc::Build::new().files(files).compile("killable_sys");
}
