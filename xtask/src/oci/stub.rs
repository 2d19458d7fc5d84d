//! A registry on loopback for unit tests (the registry client's, signing's):
//! each request is answered by the test's function (a whole HTTP response,
//! one connection each) and kept, so a test sees what was asked and with
//! what. The suite's hostile registries are its own (tests/suite/common).

use std::io::{BufRead, BufReader, Read, Write};
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone)]
pub struct Asked {
    pub method: String,
    /// Path and query.
    pub target: String,
    headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Asked {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// `METHOD target`, for comparing a run's requests.
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.target)
    }
}

pub struct Stub {
    pub host: String,
    asked: Arc<Mutex<Vec<Asked>>>,
}

impl Stub {
    pub fn asked(&self) -> Vec<Asked> {
        self.asked.lock().unwrap().clone()
    }

    pub fn lines(&self) -> Vec<String> {
        self.asked().iter().map(Asked::line).collect()
    }
}

pub fn serve(answer: impl Fn(&Asked, &str) -> String + Send + 'static) -> Stub {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let asked = Arc::new(Mutex::new(Vec::new()));
    let log = asked.clone();
    let own = host.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            let Some(request) = read_request(&mut stream) else {
                continue;
            };
            let response = answer(&request, &own);
            log.lock().unwrap().push(request);
            let _ = stream.write_all(response.as_bytes());
        }
    });
    Stub { host, asked }
}

fn read_request(stream: &mut std::net::TcpStream) -> Option<Asked> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut first = String::new();
    reader.read_line(&mut first).ok()?;
    let mut words = first.split_whitespace();
    let (method, target) = (words.next()?.to_string(), words.next()?.to_string());
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (key, value) = line.split_once(':')?;
        headers.push((key.trim().to_string(), value.trim().to_string()));
    }
    let mut asked = Asked {
        method,
        target,
        headers,
        body: Vec::new(),
    };
    if asked.header("transfer-encoding") == Some("chunked") {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).ok()?;
            let size = usize::from_str_radix(size.trim(), 16).ok()?;
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).ok()?;
            if size == 0 {
                break;
            }
            asked.body.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(length) = asked.header("content-length") {
        let mut body = vec![0; length.parse().ok()?];
        reader.read_exact(&mut body).ok()?;
        asked.body = body;
    }
    Some(asked)
}

/// A whole response: status line, `headers`, `body`, then close.
pub fn answer(status: &str, headers: &[(&str, &str)], body: &str) -> String {
    let mut text = format!("HTTP/1.1 {status}\r\n");
    for (key, value) in headers {
        text.push_str(&format!("{key}: {value}\r\n"));
    }
    text.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    ));
    text
}
