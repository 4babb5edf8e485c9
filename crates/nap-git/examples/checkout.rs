//! Check a commit of a repository out into a new directory and say how long it took.
//!
//! ```text
//! cargo run --release -p nap-git --example checkout -- REPO REV DEST
//! ```
//!
//! Used to compare nap's checkout with `git archive REV | tar -x -C DEST`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [repo, rev, dest] = &args[..] else {
        eprintln!("usage: checkout REPO REV DEST");
        return ExitCode::from(2);
    };
    let started = Instant::now();
    let result = nap_git::open(&PathBuf::from(repo), &nap_git::Quarantine::from_env())
        .map_err(|error| error.to_string())
        .and_then(|repo| {
            repo.checkout(rev, &PathBuf::from(dest))
                .map_err(|error| error.to_string())
        });
    match result {
        Ok(stats) => {
            println!(
                "{} files, {} bytes in {:.1} ms",
                stats.files,
                stats.bytes,
                started.elapsed().as_secs_f64() * 1000.0
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
