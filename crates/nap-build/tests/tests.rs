//! Integration tests: real builds with the real bwrap, python3, pip and npm, offline (pip
//! installs from a wheel made in the test, npm from a `file:` dependency).

mod util;

mod failures;
mod node;
mod python;
