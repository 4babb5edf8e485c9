//! The sandbox's price per instance start: the same `nap scale APP 4` (from 3) until the
//! new instance answers, on a daemon that sandboxes its instances (the default) and on one
//! with `--isolation none`, alternating run by run so that both see the same load.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::Options;
use crate::cleanup::kill_processes_in;
use crate::figures::{Outcome, ms, nap_deploy, ports_of, wait_answer};
use crate::report::{Measure, Unit, median};
use crate::servers::{Client, NapServer};

/// Instance ports of the two daemons: above the kernel's ephemeral range, apart from the
/// other figures' (61000-61848).
const SANDBOXED_PORTS: &str = "61900-61949";
const UNSANDBOXED_PORTS: &str = "61950-61999";

/// The app: `busybox httpd` starts in a few milliseconds, so the sandbox's share shows.
const APP: &str = "start";

/// Sandboxed ÷ unsandboxed start of one instance, and the difference in a note.
pub(crate) fn figure(
    options: &Options,
    bin: &Path,
    client: &Client,
    fast_repo: &Path,
    dir: &Path,
) -> Outcome {
    let mut none_args = options.serve_args.clone();
    none_args.extend(["--isolation".to_owned(), "none".to_owned()]);
    let mut sandboxed = NapServer::start(
        bin,
        &dir.join("sandboxed"),
        client,
        SANDBOXED_PORTS,
        &options.serve_args,
    )?;
    let mut unsandboxed = NapServer::start(
        bin,
        &dir.join("unsandboxed"),
        client,
        UNSANDBOXED_PORTS,
        &none_args,
    )?;
    let result = measure(options, client, fast_repo, &sandboxed, &unsandboxed);
    for nap in [&mut sandboxed, &mut unsandboxed] {
        nap.stop();
    }
    kill_processes_in(dir);
    result
}

fn measure(
    options: &Options,
    client: &Client,
    fast_repo: &Path,
    sandboxed: &NapServer,
    unsandboxed: &NapServer,
) -> Outcome {
    for nap in [sandboxed, unsandboxed] {
        nap.add_key(client)?;
        nap_deploy(nap, fast_repo, APP, 3)?;
    }
    let mut with = Measure::new(Unit::Seconds);
    let mut without = Measure::new(Unit::Seconds);
    // Run 0 is a warm-up of each side, not counted.
    for run in 0..=options.runs {
        let first_sandboxed = run % 2 == 0;
        for sandbox in [first_sandboxed, !first_sandboxed] {
            let nap = if sandbox { sandboxed } else { unsandboxed };
            let elapsed = start_one(nap)?;
            eprintln!(
                "nap-bench: sandbox run {run}: {} {}",
                if sandbox {
                    "sandboxed"
                } else {
                    "isolation: none"
                },
                ms(elapsed.as_secs_f64())
            );
            if run > 0 {
                if sandbox {
                    with.push_duration(elapsed);
                } else {
                    without.push_duration(elapsed);
                }
            }
        }
    }
    let difference = with.median() - without.median();
    let notes = vec![
        format!(
            "the sandbox adds {:+.1} ms per instance start (median − median; goal ≤ +15 ms)",
            difference * 1000.0
        ),
        "one instance start: `nap scale start 4` (from 3, `busybox httpd`) until the new instance answers `GET /`, then back to 3; the sandboxed daemon and one with `--isolation none` alternate, one warm-up each".to_owned(),
        format!(
            "medians: sandboxed {}, isolation: none {}",
            ms(median(&with.samples)),
            ms(median(&without.samples))
        ),
    ];
    Ok((with, Some(without), notes))
}

/// `nap scale APP 4` from 3 until all four answer; then back to 3.
fn start_one(nap: &NapServer) -> anyhow::Result<Duration> {
    let started = Instant::now();
    nap.cli(&["scale", APP, "4"])?;
    let ports = ports_of(nap, APP, 4)?;
    wait_answer(&ports, Duration::from_secs(60))?;
    let elapsed = started.elapsed();
    nap.cli(&["scale", APP, "3"])?;
    Ok(elapsed)
}
