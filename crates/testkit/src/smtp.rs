//! A real SMTP server for tests: it speaks the protocol over a socket (RFC 5321: greeting,
//! EHLO/HELO, MAIL, RCPT, DATA with dot-unstuffing, RSET, NOOP, QUIT) and keeps what it
//! receives in memory. No TLS and no AUTH: tests use `smtp://127.0.0.1:<port>`.
//!
//! It can be stopped and started again on the same port, so a test can show that mail sent
//! while the server was down is delivered once it is back.

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// One message as the server received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMail {
    /// The envelope sender (`MAIL FROM`).
    pub from: String,
    /// The envelope recipients (`RCPT TO`).
    pub to: Vec<String>,
    /// The message as sent (headers and body), dot-unstuffed, lines ending in CRLF.
    pub data: String,
}

impl ReceivedMail {
    /// The value of header `name` (case-insensitive) of the message, unfolded.
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next().unwrap_or("");
        let unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ");
        unfolded.split("\r\n").find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name)
                .then(|| value.trim().to_owned())
        })
    }

    /// The plain-text part, its transfer encoding (7bit, quoted-printable or base64) undone.
    ///
    /// # Panics
    /// When the message has no plain-text part (a failed test).
    pub fn text(&self) -> String {
        self.part("text/plain")
    }

    /// The HTML part, decoded as [`text`](Self::text) is.
    ///
    /// # Panics
    /// When the message has no HTML part.
    pub fn html(&self) -> String {
        self.part("text/html")
    }

    fn part(&self, content_type: &str) -> String {
        for part in self.data.split("\r\n--") {
            let Some((head, body)) = part.split_once("\r\n\r\n") else {
                continue;
            };
            let head = head.to_ascii_lowercase();
            if !head.contains(&format!("content-type: {content_type}")) {
                continue;
            }
            if head.contains("content-transfer-encoding: quoted-printable") {
                return decode_quoted_printable(body);
            }
            if head.contains("content-transfer-encoding: base64") {
                return decode_base64(body);
            }
            return body.to_owned();
        }
        panic!("no {content_type} part in:\n{}", self.data);
    }
}

fn decode_quoted_printable(body: &str) -> String {
    let joined = body.replace("=\r\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'='
            && i + 2 < bytes.len() + 1
            && let Some(hex) = joined.get(i + 1..i + 3)
            && let Ok(byte) = u8::from_str_radix(hex, 16)
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn decode_base64(body: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut buffer, mut bits) = (0_u32, 0);
    for byte in body.bytes() {
        let Some(value) = ALPHABET.iter().position(|&c| c == byte) else {
            continue; // line breaks, padding, the closing boundary's dashes
        };
        buffer = (buffer << 6) | u32::try_from(value).unwrap_or(0);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((buffer >> bits) & 0xff).unwrap_or(0));
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A running SMTP sink; stopped on drop.
pub struct SmtpSink {
    address: SocketAddr,
    received: Arc<Mutex<Vec<ReceivedMail>>>,
    running: Option<Running>,
}

struct Running {
    stop: Arc<AtomicBool>,
    accept: JoinHandle<()>,
    connections: Arc<Mutex<Vec<TcpStream>>>,
}

impl SmtpSink {
    /// A sink on a free port of 127.0.0.1.
    ///
    /// # Panics
    /// When no port can be bound (a test set-up failure).
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind an SMTP port");
        let address = listener.local_addr().expect("the SMTP port");
        let received = Arc::new(Mutex::new(Vec::new()));
        let running = Some(serve(listener, Arc::clone(&received)));
        Self {
            address,
            received,
            running,
        }
    }

    /// `smtp://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("smtp://{}", self.address)
    }

    /// Everything received so far, oldest first.
    pub fn received(&self) -> Vec<ReceivedMail> {
        self.received
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Stops listening and closes every open connection: clients see a refused connection.
    pub fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            running.stop.store(true, Ordering::SeqCst);
            // Wakes the blocking accept so that it sees the flag.
            let _ = TcpStream::connect(self.address);
            let _ = running.accept.join();
            for stream in running
                .connections
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .drain(..)
            {
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
    }

    /// Listens again on the same port (after [`stop`](Self::stop)), keeping what was received.
    ///
    /// # Panics
    /// When the port was taken meanwhile.
    pub fn start_again(&mut self) {
        if self.running.is_none() {
            let listener = TcpListener::bind(self.address).expect("bind the SMTP port again");
            self.running = Some(serve(listener, Arc::clone(&self.received)));
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve(listener: TcpListener, received: Arc<Mutex<Vec<ReceivedMail>>>) -> Running {
    let stop = Arc::new(AtomicBool::new(false));
    let connections = Arc::new(Mutex::new(Vec::new()));
    let accept = {
        let stop = Arc::clone(&stop);
        let connections = Arc::clone(&connections);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                if let Ok(clone) = stream.try_clone() {
                    connections
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push(clone);
                }
                let received = Arc::clone(&received);
                std::thread::spawn(move || {
                    let _ = session(stream, &received);
                });
            }
        })
    };
    Running {
        stop,
        accept,
        connections,
    }
}

fn session(stream: TcpStream, received: &Mutex<Vec<ReceivedMail>>) -> std::io::Result<()> {
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    writer.write_all(b"220 keel-test-smtp ESMTP\r\n")?;
    let (mut from, mut to) = (String::new(), Vec::new());
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let command = line.trim_end().to_owned();
        let upper = command.to_ascii_uppercase();
        let reply: &[u8] = if upper.starts_with("EHLO") {
            b"250-keel-test-smtp\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n"
        } else if upper.starts_with("HELO") || upper.starts_with("NOOP") {
            b"250 OK\r\n"
        } else if upper.starts_with("MAIL FROM:") {
            from = address(&command["MAIL FROM:".len()..]);
            to.clear();
            b"250 OK\r\n"
        } else if upper.starts_with("RCPT TO:") {
            to.push(address(&command["RCPT TO:".len()..]));
            b"250 OK\r\n"
        } else if upper == "DATA" {
            writer.write_all(b"354 end with <CRLF>.<CRLF>\r\n")?;
            let mut data = String::new();
            loop {
                line.clear();
                if reader.read_line(&mut line)? == 0 {
                    return Ok(());
                }
                if line == ".\r\n" || line == ".\n" {
                    break;
                }
                data.push_str(line.strip_prefix('.').unwrap_or(&line));
            }
            received
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(ReceivedMail {
                    from: std::mem::take(&mut from),
                    to: std::mem::take(&mut to),
                    data,
                });
            b"250 OK: queued\r\n"
        } else if upper.starts_with("RSET") {
            from.clear();
            to.clear();
            b"250 OK\r\n"
        } else if upper.starts_with("QUIT") {
            writer.write_all(b"221 bye\r\n")?;
            return Ok(());
        } else {
            b"502 command not implemented\r\n"
        };
        writer.write_all(reply)?;
    }
}

/// `<ada@example.com> SIZE=123` -> `ada@example.com`.
fn address(argument: &str) -> String {
    let argument = argument.trim();
    match (argument.find('<'), argument.find('>')) {
        (Some(start), Some(end)) if start < end => argument[start + 1..end].to_owned(),
        _ => argument.split_whitespace().next().unwrap_or("").to_owned(),
    }
}
