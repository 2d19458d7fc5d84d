//! git: the commit time that becomes SOURCE_DATE_EPOCH, and source trees
//! fetched at a tag and accepted only at their pinned commit.

use std::path::Path;

use anyhow::{bail, Context, Result};

use super::process::{Cmd, Env};
use crate::error::fail;

/// The last commit's time, in seconds since the epoch.
pub fn last_commit_time(repository: &Path) -> Result<u64> {
    let mut command = Cmd::new("git");
    command
        .arg("-C")
        .arg(repository)
        .args(["log", "-1", "--format=%ct"]);
    let output = command.read().with_context(|| {
        format!(
            "no git history in {} to take SOURCE_DATE_EPOCH from: commit first, or set SOURCE_DATE_EPOCH=<seconds>",
            repository.display()
        )
    })?;
    output
        .parse()
        .with_context(|| format!("`git log` gave `{output}` as the commit time"))
}

/// The commit checked out at `dir`, when it is a git checkout.
pub fn head_commit(dir: &Path) -> Option<String> {
    resolve(dir, "HEAD").ok()
}

/// The latest release tag (`<stagex-release>-<n>`) before `tag` in the
/// repository at `dir`, when there is one.
pub fn previous_release_tag(dir: &Path, tag: &str) -> Option<String> {
    let mut command = Cmd::new("git");
    command
        .arg("-C")
        .arg(dir)
        .args([
            "describe",
            "--tags",
            "--abbrev=0",
            "--match",
            "[0-9]*.[0-9]*.[0-9]*-[0-9]*",
            "--end-of-options",
        ])
        .arg(format!("{tag}^"));
    command
        .try_output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|t| !t.is_empty())
}

/// The commit `revision` names in the repository at `dir`.
pub fn resolve(dir: &Path, revision: &str) -> Result<String> {
    let mut command = Cmd::new("git");
    command
        .arg("-C")
        .arg(dir)
        .args(["rev-parse", "--verify", "--end-of-options"])
        .arg(format!("{revision}^{{commit}}"));
    command.read()
}

/// `url` at `tag` in `dir`, accepted only when the tag is `commit`. An
/// existing checkout at another commit (an old clone, a moved tag) is fetched
/// again from scratch.
pub fn checkout_pinned(url: &str, tag: &str, commit: &str, dir: &Path, env: &Env) -> Result<()> {
    if dir.join(".git").exists() {
        match resolve(dir, "HEAD") {
            Ok(head) if head == commit => return Ok(()),
            _ => std::fs::remove_dir_all(dir)
                .with_context(|| format!("removing the stale checkout {}", dir.display()))?,
        }
    }
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut clone = Cmd::new("git");
    clone
        .args(["clone", "--quiet", "--depth=1", "--no-tags"])
        .arg(format!("--branch={tag}"))
        .args(["--", url])
        .arg(dir)
        .envs(env);
    clone
        .output()
        .with_context(|| format!("fetching {url} at {tag}"))?;
    let head = resolve(dir, "HEAD")?;
    if head != commit {
        // Leave nothing behind that a later run could mistake for the pinned tree.
        let _ = std::fs::remove_dir_all(dir);
        return fail(format!(
            "{url} tag {tag} is commit {head}, not the pinned {commit}: the tag was moved or the pin is wrong; check the release and update the pin"
        ));
    }
    Ok(())
}

/// A full lowercase hex commit id.
pub fn check_commit_id(commit: &str) -> Result<()> {
    if commit.len() != 40
        || !commit
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        bail!("`{commit}` is not a full git commit id (40 lowercase hex characters)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git(dir: &Path, args: &[&str]) -> String {
        let mut command = Cmd::new("git");
        command.arg("-C").arg(dir).args(args).envs(&Env::from([
            ("GIT_AUTHOR_NAME".into(), "t".into()),
            ("GIT_AUTHOR_EMAIL".into(), "t@example.com".into()),
            ("GIT_COMMITTER_NAME".into(), "t".into()),
            ("GIT_COMMITTER_EMAIL".into(), "t@example.com".into()),
            ("GIT_AUTHOR_DATE".into(), "@1700000000 +0000".into()),
            ("GIT_COMMITTER_DATE".into(), "@1700000000 +0000".into()),
        ]));
        command.read().unwrap()
    }

    /// An upstream with tag v1, cloned by file URL: the pinned commit is
    /// accepted; a moved tag is refused and a stale clone refetched.
    #[test]
    fn sources_are_accepted_only_at_their_commit() {
        let upstream = tempfile::tempdir().unwrap();
        let up = upstream.path();
        git(up, &["init", "--quiet", "--initial-branch=main"]);
        std::fs::write(up.join("a"), "1").unwrap();
        git(up, &["add", "a"]);
        git(up, &["commit", "--quiet", "-m", "one"]);
        git(up, &["tag", "v1"]);
        let first = git(up, &["rev-parse", "HEAD"]);
        assert_eq!(last_commit_time(up).unwrap(), 1_700_000_000);

        let work = tempfile::tempdir().unwrap();
        let dir = work.path().join("src");
        let url = format!("file://{}", up.display());
        checkout_pinned(&url, "v1", &first, &dir, &Env::new()).unwrap();
        assert_eq!(resolve(&dir, "HEAD").unwrap(), first);

        // The tag moves upstream: the old clone is at the pin and stays valid...
        std::fs::write(up.join("a"), "2").unwrap();
        git(up, &["commit", "--quiet", "-am", "two"]);
        git(up, &["tag", "--force", "v1"]);
        checkout_pinned(&url, "v1", &first, &dir, &Env::new()).unwrap();
        // ...but a fresh fetch sees the moved tag and refuses it.
        std::fs::remove_dir_all(&dir).unwrap();
        let error = checkout_pinned(&url, "v1", &first, &dir, &Env::new()).unwrap_err();
        assert!(error.to_string().contains("the tag was moved"), "{error}");
        assert!(!dir.exists());

        // A clone at another commit (pinned to the new one now) is refetched.
        let second = git(up, &["rev-parse", "HEAD"]);
        std::fs::create_dir_all(&dir).unwrap();
        git(
            work.path(),
            &["clone", "--quiet", &url, dir.to_str().unwrap()],
        );
        git(&dir, &["checkout", "--quiet", &first]);
        checkout_pinned(&url, "v1", &second, &dir, &Env::new()).unwrap();
        assert_eq!(resolve(&dir, "HEAD").unwrap(), second);

        assert!(check_commit_id(&first).is_ok());
        assert!(check_commit_id("v1").is_err());
    }
}
