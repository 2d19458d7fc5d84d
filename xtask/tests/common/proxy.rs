//! A misbehaving HTTP proxy in front of a real registry: one request per
//! connection, forwarded as it came (but `Connection: close`), the answer
//! copied back byte for byte. Tests tell it to hold requests back until
//! released, or to answer some with an error status instead of forwarding.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};

#[derive(Default)]
struct Rules {
    /// Requests whose line contains one of these wait until released.
    held: Vec<String>,
    /// (substring, status, how many more times): answered with that status.
    failing: Vec<(String, u16, usize)>,
    /// Every request line seen, in order.
    seen: Vec<String>,
}

#[derive(Clone)]
pub struct Proxy {
    /// `127.0.0.1:<port>`
    pub address: String,
    state: Arc<(Mutex<Rules>, Condvar)>,
}

impl Proxy {
    pub fn start(upstream: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let proxy = Proxy {
            address,
            state: Arc::new((Mutex::new(Rules::default()), Condvar::new())),
        };
        let upstream = upstream.to_string();
        let state = proxy.state.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (upstream, state) = (upstream.clone(), state.clone());
                std::thread::spawn(move || serve(client, &upstream, &state));
            }
        });
        proxy
    }

    /// Hold back every request whose line contains `pattern` until `release`.
    pub fn hold(&self, pattern: &str) {
        self.state.0.lock().unwrap().held.push(pattern.to_string());
    }

    pub fn release(&self) {
        self.state.0.lock().unwrap().held.clear();
        self.state.1.notify_all();
    }

    /// Answer the next `times` requests containing `pattern` with `status`.
    pub fn fail(&self, pattern: &str, status: u16, times: usize) {
        let mut rules = self.state.0.lock().unwrap();
        rules.failing.push((pattern.to_string(), status, times));
    }

    pub fn seen(&self) -> Vec<String> {
        self.state.0.lock().unwrap().seen.clone()
    }
}

fn serve(mut client: TcpStream, upstream: &str, state: &(Mutex<Rules>, Condvar)) {
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let mut head = Vec::new();
    let mut request_line = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        if request_line.is_empty() {
            request_line = line.trim_end().to_string();
        }
        let lower = line.to_ascii_lowercase();
        let end = line == "\r\n";
        if !end && !lower.starts_with("connection:") && !lower.starts_with("keep-alive:") {
            head.extend_from_slice(line.as_bytes());
        }
        if end {
            break;
        }
    }
    head.extend_from_slice(b"Connection: close\r\n\r\n");
    let (lock, wake) = state;
    let mut rules = lock.lock().unwrap();
    rules.seen.push(request_line.clone());
    if let Some(rule) = rules
        .failing
        .iter_mut()
        .find(|(pattern, _, left)| *left > 0 && request_line.contains(pattern.as_str()))
    {
        rule.2 -= 1;
        let status = rule.1;
        drop(rules);
        let _ = write!(
            client,
            "HTTP/1.1 {status} Injected\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        return;
    }
    while rules.held.iter().any(|p| request_line.contains(p.as_str())) {
        rules = wake.wait(rules).unwrap();
    }
    drop(rules);
    // Requests through the proxy carry no body (GET and HEAD of a source).
    let Ok(mut server) = TcpStream::connect(upstream) else {
        return;
    };
    if server.write_all(&head).is_err() {
        return;
    }
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        match server.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if client.write_all(&buffer[..n]).is_err() {
                    break;
                }
            }
        }
    }
}
