//! The test helper itself: a real nats-server starts on a loopback ephemeral port, comes
//! back on the same port after a kill, and a server that cannot start fails loudly.

use std::io::Read;
use std::net::TcpStream;

use dreamnet_bus_tests::nats_server::{temp_dir, NatsServer};

fn greets(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let mut buf = [0; 4];
    s.read_exact(&mut buf).is_ok() && &buf == b"INFO"
}

#[test]
fn starts_on_loopback_restarts_on_the_same_port_and_cleans_up() {
    let mut server = NatsServer::start();
    let port = server.port();
    assert!(server.url().starts_with("nats://127.0.0.1:"));
    assert!(greets(port));
    server.kill();
    assert!(!server.is_running());
    assert!(!greets(port));
    server.restart();
    assert_eq!(server.port(), port);
    assert!(greets(port));
    let dir = server.dir().to_path_buf();
    assert!(dir.exists());
    drop(server);
    assert!(!dir.exists(), "the store is removed on drop");
    assert!(!greets(port), "the server is killed on drop");
}

#[test]
fn a_server_that_cannot_start_fails_the_test() {
    let dir = temp_dir("bad");
    let result = std::panic::catch_unwind(|| {
        NatsServer::start_in(dir, true, vec!["--no-such-flag".to_owned()])
    });
    let message = match result {
        Ok(_) => panic!("a server with a bad flag started"),
        Err(p) => p.downcast_ref::<String>().cloned().unwrap_or_default(),
    };
    assert!(message.contains("exited at start"), "{message}");
}
