//! Integration tests: the store, the TLS config and the ACME client against
//! real things on 127.0.0.1 — Debian's pebble (ACME with real HTTP-01
//! validation), the openssl CLI (key types, old TLS versions), curl, and
//! rustls and hyper clients and servers in this process.

mod pebble;
mod support;
mod world;

mod acme;
mod protocols;
mod renewal;
mod sni;
mod store;
mod uploads;
