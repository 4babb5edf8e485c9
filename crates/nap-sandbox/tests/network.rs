//! The app listens on the host's loopback, where the router and health checks reach it.

use std::io::{BufRead, BufReader, Write};

use crate::both_modes;
use crate::util::{Fixture, free_port};

// SO_REUSEADDR, as Python's own http.server sets it: `free_port` checks with std's listener,
// which sets it too, and without it a port that an earlier test's connection left in
// TIME_WAIT would pass that check and fail this bind (seen once in 15 runs).
const SERVER: &str = "
import os, socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', int(os.environ['PORT'])))
s.listen()
print('listening', flush=True)
conn, _ = s.accept()
conn.sendall(b'hello from ' + os.environ['NAP_APP'].encode() + b'\\n')
conn.close()
";

both_modes! {
    async fn it_answers_on_port_from_the_host(fx: Fixture) {
        let port = free_port();
        let policy = fx.policy(&[("PORT", &port.to_string()), ("NAP_APP", "myapp")]);
        let mut running = fx.start(&policy, &["/usr/bin/python3", "-c", SERVER]).await;
        assert_eq!(running.line().await, "listening");
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream.flush().expect("flush");
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).expect("read");
        assert_eq!(line, "hello from myapp\n");
        running.finish().await.ok();
    }
}
