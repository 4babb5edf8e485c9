//! Integration tests: the router on 127.0.0.1 in front of real servers —
//! hyper servers in this process, python processes killed with SIGKILL, and
//! hand-written TCP servers and clients for what HTTP libraries won't do.

mod support;

mod balancing;
mod draining;
mod early;
mod errors;
mod failover;
mod forwarding;
mod framing;
mod https;
mod limits;
mod upgrade;
mod wire;
