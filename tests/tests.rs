//! End-to-end tests: the real `nap` binary, real `git`, the real OpenSSH
//! client and `ssh-keygen`, sockets on 127.0.0.1. One module per area.

mod harness;
#[path = "../crates/nap-certs/tests/pebble.rs"]
mod pebble;
#[path = "../crates/nap-web/tests/webdriver.rs"]
mod webdriver;

mod architecture;
mod cli;
mod deploy;
mod faults;
mod faults_load;
mod fleet;
mod from_url;
mod https;
mod isolation;
mod operate;
mod pipeline;
mod properties;
mod run;
mod serve;
mod similar;
mod ssh_front_door;
mod web;
