//! Serves the in-repo fake of fleet's API on its own, so that the contract
//! suite can be pointed at a separately started fleet the way it would be
//! pointed at a real fleetd:
//!
//! ```text
//! cargo run -p nap-fleet --example fake-fleetd -- 127.0.0.1:49153 100 &
//! NAP_FLEET_ENDPOINT=http://127.0.0.1:49153 cargo test -p nap-fleet contract
//! ```
//!
//! Arguments: the address (default 127.0.0.1:49153) and the page size
//! (default 100, fleetd's). Stops on Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::process::ExitCode;

use nap_fleet::fake::{FAKE, FakeFleet, FakeOptions};

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
    let fake = match FakeFleet::start_at(
        address,
        FakeOptions {
            page_size,
            ..FakeOptions::default()
        },
    )
    .await
    {
        Ok(fake) => fake,
        Err(e) => {
            eprintln!("fake-fleetd: cannot listen on {address}: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("{FAKE} at {} (page size {page_size})", fake.endpoint());
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
