//! A misbehaving HTTP proxy in front of a real registry: one request per
//! connection, forwarded as it came (but `Connection: close`), the answer
//! copied back byte for byte. Tests tell it to hold requests back until
//! released, to answer some itself (errors, challenges, tokens), to demand
//! credentials, to flip a byte of what the registry answers, or to stall in
//! the middle of an answer for good; it keeps every request head it saw.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};

/// An answer the proxy gives itself.
#[derive(Clone, Default)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

#[derive(Clone)]
struct Rule {
    /// Applies to request lines containing this.
    pattern: String,
    /// Does not apply when the request's Authorization starts with this.
    unless_authorization: Option<String>,
    answer: Answer,
    /// How many more times it applies (`None`: always).
    left: Option<usize>,
}

#[derive(Default)]
struct State {
    held: Vec<String>,
    rules: Vec<Rule>,
    corrupt: Vec<String>,
    stall: Vec<String>,
    /// Every request head seen, in order.
    heads: Vec<String>,
}

#[derive(Clone)]
pub struct Proxy {
    /// `127.0.0.1:<port>`
    pub address: String,
    state: Arc<(Mutex<State>, Condvar)>,
}

impl Proxy {
    pub fn start(upstream: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let proxy = Proxy {
            address,
            state: Arc::new((Mutex::new(State::default()), Condvar::new())),
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

    fn add(&self, rule: Rule) {
        self.state.0.lock().unwrap().rules.push(rule);
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
        self.add(Rule {
            pattern: pattern.into(),
            unless_authorization: None,
            answer: Answer {
                status,
                ..Answer::default()
            },
            left: Some(times),
        });
    }

    /// Answer every request containing `pattern` with `answer`.
    pub fn answer(&self, pattern: &str, answer: Answer) {
        self.add(Rule {
            pattern: pattern.into(),
            unless_authorization: None,
            answer,
            left: None,
        });
    }

    /// Answer 401 with `WWW-Authenticate: challenge` to every request
    /// containing `pattern` whose Authorization does not start with `accepted`.
    pub fn challenge(&self, pattern: &str, accepted: &str, challenge: &str) {
        self.answer_unless(
            pattern,
            accepted,
            Answer {
                status: 401,
                headers: vec![("WWW-Authenticate".into(), challenge.into())],
                body: br#"{"errors":[{"code":"UNAUTHORIZED"}]}"#.to_vec(),
            },
        );
    }

    /// Answer every request containing `pattern` whose Authorization does
    /// not start with `authorization` (none does not) with `answer`.
    pub fn answer_unless(&self, pattern: &str, authorization: &str, answer: Answer) {
        self.add(Rule {
            pattern: pattern.into(),
            unless_authorization: Some(authorization.into()),
            answer,
            left: None,
        });
    }

    /// Forward requests containing `pattern`, then send the registry's
    /// answer head (its Content-Length included) and one byte of its body,
    /// and nothing more, ever: the connection stays open.
    pub fn stall(&self, pattern: &str) {
        self.state.0.lock().unwrap().stall.push(pattern.into());
    }

    /// Flip one byte of the body the registry answers to requests containing `pattern`.
    pub fn corrupt(&self, pattern: &str) {
        self.state.0.lock().unwrap().corrupt.push(pattern.into());
    }

    /// The request lines seen.
    pub fn seen(&self) -> Vec<String> {
        self.heads()
            .iter()
            .map(|h| h.lines().next().unwrap_or("").to_string())
            .collect()
    }

    /// Every request head seen (request line and headers).
    pub fn heads(&self) -> Vec<String> {
        self.state.0.lock().unwrap().heads.clone()
    }
}

fn respond(client: &mut TcpStream, answer: &Answer) {
    let mut head = format!("HTTP/1.1 {} Injected\r\n", answer.status);
    for (name, value) in &answer.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        answer.body.len()
    ));
    let _ = client.write_all(head.as_bytes());
    let _ = client.write_all(&answer.body);
}

fn serve(mut client: TcpStream, upstream: &str, state: &(Mutex<State>, Condvar)) {
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let mut forwarded = Vec::new();
    let mut head = String::new();
    let mut authorization = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        head.push_str(&line);
        let lower = line.to_ascii_lowercase();
        if lower.starts_with("authorization:") {
            authorization = line["authorization:".len()..].trim().to_string();
        }
        let end = line == "\r\n";
        if !end && !lower.starts_with("connection:") && !lower.starts_with("keep-alive:") {
            forwarded.extend_from_slice(line.as_bytes());
        }
        if end {
            break;
        }
    }
    let request_line = head.lines().next().unwrap_or("").to_string();
    let content_length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    forwarded.extend_from_slice(b"Connection: close\r\n\r\n");
    let (lock, wake) = state;
    let mut rules = lock.lock().unwrap();
    rules.heads.push(head.clone());
    let applies = |rule: &Rule| {
        rule.left != Some(0)
            && request_line.contains(rule.pattern.as_str())
            && !rule
                .unless_authorization
                .as_ref()
                .is_some_and(|accepted| authorization.starts_with(accepted.as_str()))
    };
    if let Some(rule) = rules.rules.iter_mut().find(|rule| applies(rule)) {
        if let Some(left) = &mut rule.left {
            *left -= 1;
        }
        let answer = rule.answer.clone();
        drop(rules);
        // Read what the client sends before answering, so it sees the answer.
        let mut body = vec![0u8; content_length];
        let _ = reader.read_exact(&mut body);
        respond(&mut client, &answer);
        return;
    }
    while rules.held.iter().any(|p| request_line.contains(p.as_str())) {
        rules = wake.wait(rules).unwrap();
    }
    let corrupt = rules
        .corrupt
        .iter()
        .any(|p| request_line.contains(p.as_str()));
    let stall = rules
        .stall
        .iter()
        .any(|p| request_line.contains(p.as_str()));
    drop(rules);
    let Ok(mut server) = TcpStream::connect(upstream) else {
        return;
    };
    if server.write_all(&forwarded).is_err() {
        return;
    }
    // A request body (uploads through the proxy) follows its head.
    if content_length > 0 {
        let mut body = vec![0u8; content_length];
        if reader.read_exact(&mut body).is_err() || server.write_all(&body).is_err() {
            return;
        }
    }
    let mut answer = Vec::new();
    if server.read_to_end(&mut answer).is_err() {
        return;
    }
    if corrupt {
        if let Some(split) = answer.windows(4).position(|w| w == b"\r\n\r\n") {
            let at = split + 4 + 10;
            if at < answer.len() {
                answer[at] ^= 0x01;
            }
        }
    }
    if stall {
        if let Some(split) = answer.windows(4).position(|w| w == b"\r\n\r\n") {
            let _ = client.write_all(&answer[..(split + 5).min(answer.len())]);
            let _ = client.flush();
            // Hold the connection open, silent, for as long as the test runs.
            loop {
                std::thread::park();
            }
        }
    }
    let _ = client.write_all(&answer);
}
