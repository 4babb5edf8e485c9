//! Tests of `nap-profile` through its public API only, one module per area.

mod memory;
mod parse;
mod properties;
mod replace;
