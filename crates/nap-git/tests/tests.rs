//! Integration tests of nap-git against repositories made and pushed with the real `git`.

mod checkout;
mod init;
mod quarantine;
mod read_file;
mod resolve;
mod util;
