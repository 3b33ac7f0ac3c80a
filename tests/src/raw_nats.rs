//! A minimal NATS client speaking the text protocol over a blocking TCP stream: enough to
//! inject arbitrary bytes (garbage, truncated slots, bad headers) and to ask the JetStream
//! API a question, without going through the bridge under test.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A connection to one server.
#[derive(Debug)]
pub struct RawClient {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    next_sid: u32,
}

impl RawClient {
    /// Connects to `nats://127.0.0.1:<port>` and completes the handshake.
    pub fn connect(url: &str) -> std::io::Result<RawClient> {
        let addr = url.trim_start_matches("nats://");
        let stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let writer = stream.try_clone()?;
        let mut client = RawClient {
            reader: BufReader::new(stream),
            writer,
            next_sid: 1,
        };
        let info = client.read_line()?;
        assert!(info.starts_with("INFO"), "expected INFO, got {info:?}");
        client.writer.write_all(
            b"CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true,\"no_responders\":true,\"protocol\":1}\r\nPING\r\n",
        )?;
        client.expect_pong()?;
        Ok(client)
    }

    fn read_line(&mut self) -> std::io::Result<String> {
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        Ok(line.trim_end().to_owned())
    }

    fn expect_pong(&mut self) -> std::io::Result<()> {
        loop {
            let line = self.read_line()?;
            if line == "PONG" {
                return Ok(());
            }
            if line.starts_with("-ERR") {
                return Err(std::io::Error::other(line));
            }
        }
    }

    /// Publishes `payload` on `subject`, with `headers` if given; returns once the server
    /// has processed it (a PING/PONG round trip).
    pub fn publish(
        &mut self,
        subject: &str,
        headers: Option<&[(&str, &str)]>,
        payload: &[u8],
    ) -> std::io::Result<()> {
        match headers {
            None => {
                write!(self.writer, "PUB {subject} {}\r\n", payload.len())?;
            }
            Some(headers) => {
                let mut block = String::from("NATS/1.0\r\n");
                for (k, v) in headers {
                    block.push_str(&format!("{k}: {v}\r\n"));
                }
                block.push_str("\r\n");
                write!(
                    self.writer,
                    "HPUB {subject} {} {}\r\n{block}",
                    block.len(),
                    block.len() + payload.len()
                )?;
            }
        }
        self.writer.write_all(payload)?;
        self.writer.write_all(b"\r\nPING\r\n")?;
        self.expect_pong()
    }

    /// Sends a request and returns the first reply's payload.
    pub fn request(&mut self, subject: &str, payload: &[u8]) -> std::io::Result<Vec<u8>> {
        let sid = self.next_sid;
        self.next_sid += 1;
        let inbox = format!("_INBOX.raw.{sid}");
        write!(self.writer, "SUB {inbox} {sid}\r\nUNSUB {sid} 1\r\n")?;
        write!(self.writer, "PUB {subject} {inbox} {}\r\n", payload.len())?;
        self.writer.write_all(payload)?;
        self.writer.write_all(b"\r\n")?;
        loop {
            let line = self.read_line()?;
            if line == "PING" {
                self.writer.write_all(b"PONG\r\n")?;
                continue;
            }
            let words: Vec<&str> = line.split(' ').collect();
            let (total, header_len) = match words.first().copied() {
                Some("MSG") => (words.last().and_then(|n| n.parse::<usize>().ok()), 0),
                Some("HMSG") => (
                    words.last().and_then(|n| n.parse::<usize>().ok()),
                    words
                        .get(words.len().saturating_sub(2))
                        .and_then(|n| n.parse::<usize>().ok())
                        .unwrap_or(0),
                ),
                _ => continue,
            };
            let total = total.ok_or_else(|| std::io::Error::other(line.clone()))?;
            let mut body = vec![0; total + 2];
            self.reader.read_exact(&mut body)?;
            body.truncate(total);
            return Ok(body.split_off(header_len));
        }
    }

    /// The number of messages in a JetStream stream (from `$JS.API.STREAM.INFO`).
    pub fn stream_messages(&mut self, stream: &str) -> std::io::Result<u64> {
        let reply = self.request(&format!("$JS.API.STREAM.INFO.{stream}"), b"")?;
        let text = String::from_utf8_lossy(&reply);
        let at = text
            .find("\"messages\":")
            .ok_or_else(|| std::io::Error::other(text.to_string()))?;
        let digits: String = text[at + 11..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits
            .parse()
            .map_err(|_| std::io::Error::other(text.to_string()))
    }
}
