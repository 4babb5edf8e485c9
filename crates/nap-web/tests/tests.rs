//! nap-web's tests: a real server on 127.0.0.1 around a fake backend,
//! driven over real sockets, and once through a real headless Chromium.

mod http;
mod support;
mod webdriver;

mod api;
mod browser;
mod pages;
