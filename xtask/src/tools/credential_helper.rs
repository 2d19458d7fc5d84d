//! Docker credential helpers (`docker-credential-<name> get`): what the docker
//! config's `credHelpers` and `credsStore` name for a registry (ECR, GCR, ACR,
//! Docker Desktop, pass, …), asked through the one process runner. The server
//! goes in on stdin; the secret comes back on stdout and is never shown: a
//! helper's failure names the helper and its status, not what it printed.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use super::process::Cmd;
use crate::oci::auth::Credentials;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Answer {
    username: String,
    secret: String,
}

/// Ask helper `name` for `server`'s credentials: none when it has none.
pub fn get(name: &str, server: &str) -> Result<Option<Credentials>> {
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        bail!("the docker config names the credential helper `{name}`: not a helper name (letters, digits, `-`, `_`, `.`)");
    }
    ask(Path::new(&format!("docker-credential-{name}")), server)
}

/// [`get`] with the helper program given (tests hand a stub).
pub fn ask(program: &Path, server: &str) -> Result<Option<Credentials>> {
    let mut command = Cmd::new(program);
    command.arg("get").stdin_bytes(server.as_bytes().to_vec());
    let output = command.try_output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        // The protocol's answer for "none here" (docker-credential-helpers).
        if stdout.contains("credentials not found") {
            return Ok(None);
        }
        bail!(
            "the credential helper {} failed for {server} ({}): run `echo {server} | {} get` to see why",
            program.display(),
            output.status,
            program.display()
        );
    }
    let answer: Answer = serde_json::from_slice(&output.stdout).with_context(|| {
        format!(
            "the credential helper {} answered for {server} with something that is not its JSON",
            program.display()
        )
    })?;
    if answer.username == "<token>" {
        // An identity token is for docker's own OAuth flow, not a password.
        crate::ui::say!(
            "note: the credential helper {} holds an identity token for {server}: not used (log in with a user and password or a registry token)",
            program.display()
        );
        return Ok(None);
    }
    Ok(Some(Credentials {
        username: answer.username,
        password: answer.secret,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stub helper that knows one server, records what it was asked, and
    /// answers "not found" for the rest.
    fn stub(dir: &Path) -> std::path::PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join("docker-credential-stub");
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\n[ \"$1\" = get ] || exit 2\nread -r server\necho \"$server\" >> {}/asked\ncase \"$server\" in\n  registry.example:5000) echo '{{\"ServerURL\":\"registry.example:5000\",\"Username\":\"robot\",\"Secret\":\"s3cret-from-helper\"}}' ;;\n  token.example) echo '{{\"Username\":\"<token>\",\"Secret\":\"refresh\"}}' ;;\n  broken.example) echo 'garbage'; exit 0 ;;\n  *) echo 'credentials not found in native keychain'; exit 1 ;;\nesac\n",
                dir.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[test]
    fn a_helper_answers_for_its_server_only() {
        let dir = tempfile::tempdir().unwrap();
        let helper = stub(dir.path());
        let found = ask(&helper, "registry.example:5000").unwrap().unwrap();
        assert_eq!(found.username, "robot");
        assert_eq!(found.password, "s3cret-from-helper");
        assert_eq!(ask(&helper, "other.example").unwrap(), None);
        assert_eq!(ask(&helper, "token.example").unwrap(), None);
        let error = ask(&helper, "broken.example").unwrap_err();
        let text = format!("{error:#}");
        assert!(
            text.contains("not its JSON") && !text.contains("garbage"),
            "{text}"
        );
        // The server went in on stdin, one per question.
        let asked = std::fs::read_to_string(dir.path().join("asked")).unwrap();
        assert_eq!(
            asked,
            "registry.example:5000\nother.example\ntoken.example\nbroken.example\n"
        );
    }

    #[test]
    fn helper_names_cannot_be_paths() {
        for bad in ["../../bin/sh", "a/b", "", "x y"] {
            assert!(get(bad, "registry.example").is_err(), "{bad}");
        }
    }
}
