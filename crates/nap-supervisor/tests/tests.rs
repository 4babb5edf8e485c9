//! Integration tests: real processes, real sockets on 127.0.0.1, real cgroups where the
//! machine has them.

mod util;

mod health;
mod instances;
mod logs;
mod memory;
mod orphans;
mod restarts;
mod runtime;
mod sandbox;
