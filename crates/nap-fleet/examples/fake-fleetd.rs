//! Serves the in-repo fake of fleet's API on its own, so that the contract
//! suite can be pointed at a separately started fleet the way it would be
//! pointed at a real fleetd:
//!
//! ```text
//! cargo run -p nap-fleet --example fake-fleetd -- 127.0.0.1:49153 100 &
//! NAP_FLEET_ENDPOINT=http://127.0.0.1:49153 cargo test -p nap-fleet contract
//! ```
//!
//! Arguments: the address (default 127.0.0.1:49153), the page size
//! (default 100, fleetd's), and optionally a number of machines at
//! 127.0.0.1 and a directory for them to run the units in (see
//! `nap_fleet::fake`'s Machines), for nap's end-to-end test:
//!
//! ```text
//! cargo run -p nap-fleet --example fake-fleetd -- 127.0.0.1:49153 100 1 /tmp/machines &
//! NAP_FLEET_ENDPOINT=http://127.0.0.1:49153 cargo test -p nap --test tests fleet::
//! ```
//!
//! Stops on Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::process::ExitCode;

use nap_fleet::fake::{FAKE, FakeFleet, FakeMachine, FakeOptions, RUNS_UNITS};

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let address = args.next().unwrap_or_else(|| "127.0.0.1:49153".to_owned());
    let Ok(address) = address.parse::<SocketAddr>() else {
        eprintln!("fake-fleetd: {address:?} is not an address (HOST:PORT)");
        return ExitCode::from(2);
    };
    let page_size = match args.next().map(|s| s.parse::<u16>()) {
        None => 100,
        Some(Ok(size)) if size > 0 => size,
        Some(_) => {
            eprintln!("fake-fleetd: the page size must be a number above 0");
            return ExitCode::from(2);
        }
    };
    let mut options = FakeOptions {
        page_size,
        ..FakeOptions::default()
    };
    if let Some(count) = args.next() {
        let Ok(count) = count.parse::<u8>() else {
            eprintln!("fake-fleetd: the number of machines must be a number from 0 to 255");
            return ExitCode::from(2);
        };
        options.machines = (1..=count)
            .map(|n| FakeMachine::new(&format!("{n:032x}"), "127.0.0.1"))
            .collect();
        options.run_units_in = args.next().map(std::path::PathBuf::from);
    }
    let runs = options.run_units_in.is_some();
    let fake = match FakeFleet::start_at(address, options).await {
        Ok(fake) => fake,
        Err(e) => {
            eprintln!("fake-fleetd: cannot listen on {address}: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("{FAKE} at {} (page size {page_size})", fake.endpoint());
    if runs {
        println!("{RUNS_UNITS}");
    }
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(e) => {
                eprintln!("fake-fleetd: {e}");
                return ExitCode::FAILURE;
            }
        };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    ExitCode::SUCCESS
}
