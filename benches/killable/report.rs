//! Collects figures and prints them as a table and as one JSON line.

use std::time::Duration;

#[derive(Default)]
pub struct Report {
    rows: Vec<(String, String, String)>,
    json: Vec<(String, String)>,
}

impl Report {
    /// A figure: shown in the table with its explanation, and put in the JSON line.
    pub fn figure(&mut self, key: &str, value: f64, what: &str) {
        let shown = if value.fract() == 0.0 && value.abs() < 1e15 {
            format!("{}", value as i64)
        } else {
            format!("{value:.3}")
        };
        self.rows
            .push((key.to_owned(), shown.clone(), what.to_owned()));
        self.json.push((key.to_owned(), shown));
    }

    /// A figure computed as the ratio of two figures already reported.
    pub fn ratio(&mut self, key: &str, num: &str, den: &str, what: &str) {
        let get = |k: &str| {
            self.json
                .iter()
                .find(|(j, _)| j == k)
                .and_then(|(_, v)| v.parse::<f64>().ok())
        };
        if let (Some(n), Some(d)) = (get(num), get(den)) {
            self.figure(key, n / d, what);
        }
    }

    /// A line of context in the table only.
    pub fn note(&mut self, label: &str, text: String) {
        self.rows.push((label.to_owned(), text, String::new()));
    }

    pub fn print_table(&self) {
        let w0 = self.rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
        let w1 = self.rows.iter().map(|r| r.1.len()).max().unwrap_or(0);
        println!("{:<w0$}  {:>w1$}  meaning", "figure", "value");
        println!("{}", "-".repeat(w0 + w1 + 30));
        for (k, v, what) in &self.rows {
            println!("{k:<w0$}  {v:>w1$}  {what}");
        }
    }

    pub fn json(&self) -> String {
        let body: Vec<String> = self
            .json
            .iter()
            .map(|(k, v)| format!("\"{k}\":{v}"))
            .collect();
        format!("{{{}}}", body.join(","))
    }
}

/// Runs `ours` and `theirs` alternately, `rounds` times each after one warm-up of both,
/// swapping which goes first every round, and returns each round's pair of durations. Side by
/// side like this, a noisy neighbour slows both halves of a pair alike.
pub fn paired(
    rounds: usize,
    mut ours: impl FnMut() -> Duration,
    mut theirs: impl FnMut() -> Duration,
) -> Vec<(Duration, Duration)> {
    ours();
    theirs();
    (0..rounds)
        .map(|round| {
            if round % 2 == 0 {
                let o = ours();
                (o, theirs())
            } else {
                let t = theirs();
                (ours(), t)
            }
        })
        .collect()
}

/// The median of `ours / theirs` over the pairs.
pub fn median_ratio(pairs: &[(Duration, Duration)]) -> f64 {
    let mut ratios: Vec<f64> = pairs
        .iter()
        .map(|(o, t)| o.as_secs_f64() / t.as_secs_f64())
        .collect();
    median(&mut ratios)
}

/// The median of a list of numbers (sorted in place).
pub fn median(v: &mut [f64]) -> f64 {
    percentile(v, 50.0)
}

/// The `p`th percentile, nearest rank (sorted in place).
pub fn percentile(v: &mut [f64], p: f64) -> f64 {
    assert!(!v.is_empty());
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

pub fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
