//! nap-fleet's tests, one target with a module per area. Real parts: etcd
//! (Debian's `etcd-server`, on 127.0.0.1) and a systemd user manager that
//! runs the rendered units. fleet itself is the in-repo fake unless
//! `NAP_FLEET_ENDPOINT` names a real fleetd; every test says which it used.

mod contract;
mod etcd;
mod harness;
mod machines;
mod render;
mod runtime;
mod sandbox;
mod systemd;
