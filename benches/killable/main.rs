//! killable's benchmarks: `cargo bench --bench killable [-- [reliability | blocking | mpsc | massstop] --quick] [--json]`.
//!
//! Every figure that compares killable with something else is a ratio measured side by side in
//! one run: the two variants alternate, round after round, and the figure is the median of the
//! pairwise ratios, so a noisy neighbour slows both sides of a pair alike. The table goes to
//! stdout; with `--json` the last line is one JSON object with every figure.
//!
//! The harnesses the tests share (lost wake-ups, integrity, forged signals, forks) and the demo
//! C loops come from the dev-only crate `testkit` (testkit/ in this repository).

mod blocking;
mod floor;
mod interrupt;
mod mpsc;
mod reliability;
mod report;
mod spawn;
mod stop;

use report::Report;
use testkit::forge;

pub struct Opts {
    pub quick: bool,
}

/// A part of the benchmark that `-- <name>` runs alone.
type Part = fn(&Opts, &mut Report);

fn main() {
    // The forged-signal run re-executes this program as the sending child.
    if let Ok(spec) = std::env::var(forge::CHILD_ENV) {
        forge::child_main(&spec);
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = Opts {
        quick: args.iter().any(|a| a == "--quick"),
    };
    let json = args.iter().any(|a| a == "--json");
    let mut report = Report::default();
    let started = std::time::Instant::now();

    // A part run alone: `-- reliability`, `-- blocking`, `-- seal` (the seal against its
    // floor), `-- mpsc` (the channel figure), `-- massstop` (the scaling rounds and the
    // 1,000-thread pairs).
    let parts: [(&str, Part); 5] = [
        ("reliability", reliability::run),
        ("blocking", blocking::run),
        ("seal", floor::seal_floor),
        ("mpsc", mpsc::run),
        ("massstop", |opts, report| {
            stop::mass_stop_scaling(opts, report);
            floor::mass_stop_pairs(opts, report);
        }),
    ];
    if let Some((_, run)) = parts
        .iter()
        .find(|(name, _)| args.iter().any(|a| a == name))
    {
        run(&opts, &mut report);
        report.print_table();
        if json {
            println!("{}", report.json());
        }
        return;
    }
    spawn::run(&opts, &mut report);
    interrupt::run(&opts, &mut report);
    stop::run(&opts, &mut report);
    floor::run(&opts, &mut report);
    blocking::run(&opts, &mut report);
    mpsc::run(&opts, &mut report);
    // Ratios of the forcing figures to the interrupt baseline measured above.
    report.ratio(
        "kill_p50_ratio",
        "kill_p50_us",
        "baseline_p50_us",
        "kill / baseline at p50 (target <= 2)",
    );
    report.ratio(
        "seal_p50_ratio",
        "seal_p50_us",
        "baseline_p50_us",
        "seal / baseline at p50 (target <= 2)",
    );

    report.print_table();
    println!(
        "({} mode, {:.1} s)",
        if opts.quick { "quick" } else { "full" },
        started.elapsed().as_secs_f64()
    );
    if json {
        println!("{}", report.json());
    }
}
