//! Integration tests of nap-git against repositories made and pushed with the real `git`.

mod checkout;
mod commit_file;
mod copy;
mod init;
mod quarantine;
mod read_file;
mod refs;
mod resolve;
mod tarball;
mod util;
