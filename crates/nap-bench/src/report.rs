//! Medians, ratios, targets, and the table.

use std::fmt::Write as _;
use std::time::Duration;

/// What a number is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Unit {
    Seconds,
    MiB,
    KiB,
    /// Requests per second.
    PerSecond,
    /// A latency, in seconds, shown in milliseconds with two decimals.
    Latency,
}

impl Unit {
    pub fn show(self, value: f64) -> String {
        match self {
            Unit::Seconds if value < 1.0 => format!("{:.0} ms", value * 1000.0),
            Unit::Seconds => format!("{value:.2} s"),
            Unit::MiB => format!("{value:.1} MiB"),
            Unit::KiB => format!("{value:.0} KiB"),
            Unit::PerSecond => format!("{value:.0}/s"),
            Unit::Latency => format!("{:.2} ms", value * 1000.0),
        }
    }
}

/// Samples of one side of a figure.
#[derive(Debug, Clone)]
pub struct Measure {
    pub samples: Vec<f64>,
    pub unit: Unit,
}

impl Measure {
    pub fn new(unit: Unit) -> Self {
        Measure {
            samples: Vec::new(),
            unit,
        }
    }

    pub fn push_duration(&mut self, duration: Duration) {
        self.samples.push(duration.as_secs_f64());
    }

    pub fn median(&self) -> f64 {
        median(&self.samples)
    }

    pub fn show_samples(&self) -> String {
        self.samples
            .iter()
            .map(|&v| self.unit.show(v))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

pub fn median(samples: &[f64]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// A figure's target.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    /// nap ÷ reference at most this.
    RatioAtMost(f64),
    /// nap ÷ reference at least this (throughput).
    RatioAtLeast(f64),
    /// No target: the figure is there to explain the others.
    Informational,
    /// reference ÷ nap at least this.
    InverseRatioAtLeast(f64),
    /// nap's value at most this (in its unit).
    AtMost(f64),
}

/// One line of the table.
#[derive(Debug)]
pub struct Row {
    pub figure: String,
    pub outcome: Result<(Measure, Option<Measure>), String>,
    pub target: Target,
    /// Extra lines under the table: sub-timings, method, environment.
    pub notes: Vec<String>,
}

impl Row {
    fn ratio(&self) -> Option<f64> {
        let (nap, reference) = self.outcome.as_ref().ok()?;
        let reference = reference.as_ref()?;
        Some(match self.target {
            Target::InverseRatioAtLeast(_) => reference.median() / nap.median(),
            _ => nap.median() / reference.median(),
        })
    }

    fn verdict(&self) -> &'static str {
        let Ok((nap, _)) = &self.outcome else {
            return "error";
        };
        let pass = match (self.target, self.ratio()) {
            (Target::Informational, _) => return "–",
            (Target::RatioAtMost(t), Some(r)) => r <= t,
            (Target::RatioAtLeast(t), Some(r)) => r >= t,
            (Target::InverseRatioAtLeast(t), Some(r)) => r >= t,
            (Target::AtMost(t), _) => nap.median() <= t,
            _ => false,
        };
        if pass { "pass" } else { "**miss**" }
    }

    fn target_text(&self) -> String {
        match (self.target, &self.outcome) {
            (Target::RatioAtMost(t), _) => format!("nap÷ref ≤ {t}"),
            (Target::RatioAtLeast(t), _) => format!("nap÷ref ≥ {t}"),
            (Target::Informational, _) => "–".to_owned(),
            (Target::InverseRatioAtLeast(t), _) => format!("ref÷nap ≥ {t}"),
            (Target::AtMost(t), Ok((nap, _))) => format!("≤ {}", nap.unit.show(t)),
            (Target::AtMost(t), Err(_)) => format!("≤ {t}"),
        }
    }
}

/// The table and, below it, every sample and note.
pub fn render(header: &str, rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{header}");
    let _ = writeln!(
        out,
        "| figure | nap (median) | reference (median) | ratio | target | result |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    for row in rows {
        let (nap, reference) = match &row.outcome {
            Ok((nap, reference)) => (
                nap.unit.show(nap.median()),
                reference
                    .as_ref()
                    .map_or("–".to_owned(), |r| r.unit.show(r.median())),
            ),
            Err(_) => ("error".to_owned(), "error".to_owned()),
        };
        let ratio = row.ratio().map_or("–".to_owned(), |r| format!("{r:.2}"));
        let _ = writeln!(
            out,
            "| {} | {nap} | {reference} | {ratio} | {} | {} |",
            row.figure,
            row.target_text(),
            row.verdict()
        );
    }
    let _ = writeln!(out, "\nSamples and notes:");
    for row in rows {
        let _ = writeln!(out, "- {}:", row.figure);
        match &row.outcome {
            Ok((nap, reference)) => {
                let _ = writeln!(out, "    nap: {}", nap.show_samples());
                if let Some(reference) = reference {
                    let _ = writeln!(out, "    reference: {}", reference.show_samples());
                }
            }
            Err(error) => {
                let _ = writeln!(out, "    error: {}", error.replace('\n', "\n      "));
            }
        }
        for note in &row.notes {
            let _ = writeln!(out, "    {note}");
        }
    }
    out
}

/// Whether anything was measured at all.
pub fn any_measured(rows: &[Row]) -> bool {
    rows.iter().any(|row| row.outcome.is_ok())
}
