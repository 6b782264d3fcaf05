//! Compiles the demo C loops (src/demo.c) that killable's tests, benchmarks and examples stop.
//! Every symbol is prefixed `killable_demo_`; their Rust declarations are in src/demo.rs, keep
//! the two in sync. They are test fixtures: killable itself neither builds nor calls them.

fn main() {
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os != "linux" || !matches!(arch.as_str(), "x86_64" | "aarch64" | "riscv64") {
        // killable refuses to build there with a clear message; nothing to compile here.
        return;
    }
    // demo.c calls killable_region_nested, which killable's own static library provides:
    // the linker finds it because this crate depends on killable.
    let file = "src/demo.c";
    println!("cargo:rerun-if-changed={file}");
    cc::Build::new().file(file).compile("killable_testkit_demo");
}
