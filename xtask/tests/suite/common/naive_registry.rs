//! A registry that trusts its clients: it stores whatever bytes an upload
//! session received under whatever digest the commit names, never checking.
//! Whatever reaches it committed is the client's responsibility, which is what
//! tests of our own digest checks need. It keeps a log of what happened.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct Store {
    blobs: BTreeMap<String, Vec<u8>>,
    manifests: BTreeMap<String, Vec<u8>>,
    sessions: BTreeMap<String, Vec<u8>>,
    next: usize,
    /// `commit <digest> <bytes>`, `cancel <session>`, `manifest <ref>`, …
    events: Vec<String>,
}

#[derive(Clone)]
pub struct NaiveRegistry {
    pub address: String,
    store: Arc<Mutex<Store>>,
}

impl NaiveRegistry {
    pub fn start() -> NaiveRegistry {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let registry = NaiveRegistry {
            address: listener.local_addr().unwrap().to_string(),
            store: Arc::new(Mutex::new(Store::default())),
        };
        let store = registry.store.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let store = store.clone();
                std::thread::spawn(move || serve(client, &store));
            }
        });
        registry
    }

    pub fn events(&self) -> Vec<String> {
        self.store.lock().unwrap().events.clone()
    }

    pub fn has_blob(&self, digest: &str) -> bool {
        self.store.lock().unwrap().blobs.contains_key(digest)
    }

    pub fn manifests(&self) -> usize {
        self.store.lock().unwrap().manifests.len()
    }
}

fn reply(client: &mut TcpStream, status: u16, headers: &[(&str, String)], body: &[u8]) {
    let mut head = format!("HTTP/1.1 {status} X\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    let _ = client.write_all(head.as_bytes());
    let _ = client.write_all(body);
}

fn serve(mut client: TcpStream, store: &Mutex<Store>) {
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let mut request = String::new();
    if reader.read_line(&mut request).unwrap_or(0) == 0 {
        return;
    }
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    // Whatever arrives, even when the client stops early.
    let mut body = Vec::new();
    let _ = reader.by_ref().take(length as u64).read_to_end(&mut body);
    let mut words = request.split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut store = store.lock().unwrap();
    let parts: Vec<&str> = path.trim_start_matches("/v2/").split('/').collect();
    let json = [("Content-Type", "application/json".to_string())];
    match (method, parts.as_slice()) {
        ("GET", [""]) => reply(&mut client, 200, &json, b"{}"),
        (_, [.., "manifests", reference]) => {
            let reference = reference.to_string();
            match method {
                "PUT" => {
                    let digest = format!("sha256:{}", xtask::hash::hex_sha256(&body));
                    store.events.push(format!("manifest {reference}"));
                    store.manifests.insert(reference, body.clone());
                    store.manifests.insert(digest.clone(), body);
                    reply(&mut client, 201, &[("Docker-Content-Digest", digest)], b"");
                }
                _ => match store.manifests.get(&reference).cloned() {
                    Some(bytes) => {
                        let digest = format!("sha256:{}", xtask::hash::hex_sha256(&bytes));
                        let headers = [
                            ("Docker-Content-Digest", digest),
                            (
                                "Content-Type",
                                "application/vnd.oci.image.manifest.v1+json".into(),
                            ),
                        ];
                        let shown: &[u8] = if method == "HEAD" { b"" } else { &bytes };
                        reply(&mut client, 200, &headers, shown)
                    }
                    None => reply(
                        &mut client,
                        404,
                        &json,
                        br#"{"errors":[{"code":"MANIFEST_UNKNOWN"}]}"#,
                    ),
                },
            }
        }
        ("HEAD" | "GET", [.., "blobs", digest]) => match store.blobs.get(*digest).cloned() {
            Some(bytes) => reply(
                &mut client,
                200,
                &[],
                if method == "HEAD" { b"" } else { &bytes },
            ),
            None => reply(
                &mut client,
                404,
                &json,
                br#"{"errors":[{"code":"BLOB_UNKNOWN"}]}"#,
            ),
        },
        ("POST", [name @ .., "blobs", "uploads", ""]) => {
            store.next += 1;
            let session = format!("s{}", store.next);
            store.sessions.insert(session.clone(), Vec::new());
            let location = format!("/v2/{}/blobs/uploads/{session}", name.join("/"));
            reply(&mut client, 202, &[("Location", location)], b"");
        }
        ("PATCH", [name @ .., "blobs", "uploads", session]) => {
            let received = body.len();
            store.events.push(format!("patch {session} {received}"));
            if let Some(data) = store.sessions.get_mut(*session) {
                data.extend_from_slice(&body);
            }
            let location = format!("/v2/{}/blobs/uploads/{session}", name.join("/"));
            reply(&mut client, 202, &[("Location", location)], b"");
        }
        ("PUT", [.., "blobs", "uploads", session]) => {
            let digest = query
                .split('&')
                .find_map(|p| p.strip_prefix("digest="))
                .unwrap_or("")
                .replace("%3A", ":");
            let mut data = store.sessions.remove(*session).unwrap_or_default();
            data.extend_from_slice(&body);
            store.events.push(format!("commit {digest} {}", data.len()));
            store.blobs.insert(digest, data);
            reply(&mut client, 201, &[], b"");
        }
        ("DELETE", [.., "blobs", "uploads", session]) => {
            store.events.push(format!("cancel {session}"));
            store.sessions.remove(*session);
            reply(&mut client, 204, &[], b"");
        }
        _ => reply(&mut client, 404, &json, b"{}"),
    }
}
