//! Completion refs: the git side of "a finished job is never run twice" (contract 4 item 8).
//!
//! With the final push the worker also pushes `<prefix><job id>` (by default
//! `refs/harness/done/<job id>`) pointing at a commit whose message is the published result
//! body. A later delivery of the job asks [`probe_remote`] before it clones anything; when the
//! ref exists, [`read_completion`] fetches just that commit into a bare scratch repository and
//! the stored result is published again.
//!
//! The completion commit has the empty tree and the work's head as its only parent, so the work
//! stays reachable from the ref even if the branch is later rewritten. It is dated at the
//! result's `finishedAt` (like the head commit when the message has none) rather than "now":
//! the same result over the same head is the same commit, so a push retried after a lost answer
//! finds the ref already there and is a no-op, and a record's age is its commit's date, which
//! [`prune_completion_refs`](super::prune_completion_refs) reads.
//!
//! Pushes are never forced: a second writer of a job id with a different result is rejected,
//! and the first result stands. A ref that already holds the same message counts as written.

use std::fmt::Write as _;
use std::path::Path;

use git2::{
    AutotagOption, Direction, ErrorCode, FetchOptions, Oid, Remote, RemoteRedirect, Repository,
};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use super::credentials::{checkout_remote, supports_shallow, NetState};
use super::push::{non_fast_forward, push_refspecs, rejection, PushAttempt};
use super::{open, GitError, GitRemote, Identity};

/// Longest job-id component kept readable; longer ones are hashed. Loose refs are files, and
/// file names stop at 255 bytes on common file systems (a `.lock` suffix is added on update).
const MAX_COMPONENT_BYTES: usize = 200;

/// Marks a hashed component. The readable encoding never emits a `.`, so the two forms cannot
/// collide.
const HASHED_PREFIX: &str = "sha256.";

/// The completion ref of `job_id`: `prefix` (a `/` is added when it does not end with one)
/// followed by one ref component derived from the id. Ids are never rejected:
///
/// - ASCII letters, digits, `-` and `_` are kept as they are;
/// - every other byte of the UTF-8 id (`.`, `/`, `%`, spaces, `~^:?*[\`, `@`, control
///   characters, non-ASCII) becomes `%XX` (upper-case hex), which is reversible and leaves no
///   `.`, `/`, `..`, `@{` or `.lock` that git refuses in a ref name;
/// - an empty id, or one whose encoding is longer than 200 bytes, becomes `sha256.` and the
///   64 hex digits of the SHA-256 of the id.
///
/// So `job-42` stays `refs/harness/done/job-42` and `a b/c.lock` becomes
/// `refs/harness/done/a%20b%2Fc%2Elock`. Ids differing only in letter case map to refs that
/// differ only in case, which a server storing loose refs on a case-insensitive file system
/// would confuse.
pub fn completion_ref(prefix: &str, job_id: &str) -> String {
    let component = ref_component(job_id);
    let slash = if prefix.is_empty() || prefix.ends_with('/') {
        ""
    } else {
        "/"
    };
    format!("{prefix}{slash}{component}")
}

fn ref_component(job_id: &str) -> String {
    let mut out = String::with_capacity(job_id.len());
    for byte in job_id.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_' {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    if out.is_empty() || out.len() > MAX_COMPONENT_BYTES {
        let digest = Sha256::digest(job_id.as_bytes());
        out.clear();
        out.push_str(HASHED_PREFIX);
        for byte in digest {
            let _ = write!(out, "{byte:02x}");
        }
    }
    out
}

/// What the worker needs to know about the remote before it starts a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteProbe {
    /// `refs/heads/<branch>` exists (false when no branch was asked about).
    pub branch_exists: bool,
    /// The commit the completion ref points at, in hex, when the ref exists.
    pub completion: Option<String>,
}

/// One ls-remote round trip: whether `refs/heads/<branch>` exists (when a branch is given) and
/// where `completion_ref` points.
///
/// Full ref names are compared, so a remote `feature/x` does not make `x` exist.
pub fn probe_remote(
    remote: &GitRemote,
    branch: Option<&str>,
    completion_ref: &str,
    cancel: &CancellationToken,
) -> Result<RemoteProbe, GitError> {
    const OP: &str = "ls-remote";
    let state = NetState::new(remote, cancel);
    state.check_cancel(OP)?;
    require_ref_name(OP, completion_ref)?;
    let mut remote = Remote::create_detached(remote.url()).map_err(|e| state.error(OP, e))?;
    let connection = remote
        .connect_auth(Direction::Fetch, Some(state.callbacks()), None)
        .map_err(|e| state.error(OP, e))?;
    let branch_ref = branch.map(|b| format!("refs/heads/{b}"));
    let mut probe = RemoteProbe {
        branch_exists: false,
        completion: None,
    };
    for head in connection.list().map_err(|e| state.error(OP, e))? {
        if branch_ref.as_deref() == Some(head.name()) {
            probe.branch_exists = true;
        }
        if head.name() == completion_ref {
            probe.completion = Some(head.oid().to_string());
        }
    }
    Ok(probe)
}

/// The message of the commit `completion_ref` points at on the remote, byte for byte.
///
/// A bare repository is initialised at `scratch_dir` (created when missing; an earlier scratch
/// repository there is reused) and only that one ref is fetched, depth 1 where the transport
/// allows it (not libgit2's local transport): no work tree, no branch, no tags. The remote is
/// anonymous, so the scratch repository's config names no URL and holds no credential. The
/// caller removes `scratch_dir`. A ref missing on the remote is an error: the caller asks
/// after [`probe_remote`] found it.
pub fn read_completion(
    remote: &GitRemote,
    completion_ref: &str,
    scratch_dir: &Path,
    cancel: &CancellationToken,
) -> Result<String, GitError> {
    const OP: &str = "fetch";
    let state = NetState::new(remote, cancel);
    state.check_cancel(OP)?;
    require_ref_name(OP, completion_ref)?;
    let repo = Repository::init_bare(scratch_dir).map_err(|e| GitError::local(OP, e))?;
    let shallow = supports_shallow(remote.url());
    let mut remote = checkout_remote(&repo, remote, OP)?;
    let oid =
        fetch_ref(&repo, &mut remote, completion_ref, shallow, &state, OP)?.ok_or_else(|| {
            GitError::Git {
                op: OP,
                message: format!("{completion_ref} does not exist on the remote"),
            }
        })?;
    commit_message(&repo, oid, OP)
}

/// In the checkout `dir`, commits `message` over the empty tree with parent `head` and pushes
/// it to `completion_ref` on `remote`, never forced.
///
/// Ok when the remote accepted the update, or when the ref already holds a commit with the same
/// message (a retry of the same write). A ref holding another message gives
/// [`GitError::Rejected`] and is left as it is.
pub fn push_completion(
    dir: &Path,
    remote: &GitRemote,
    head: &str,
    completion_ref: &str,
    message: &str,
    id: &Identity,
    cancel: &CancellationToken,
) -> Result<(), GitError> {
    const OP: &str = "push";
    let auth = remote.auth();
    let state = NetState::new(remote, cancel);
    state.check_cancel(OP)?;
    require_ref_name(OP, completion_ref)?;
    let repo = open(OP, dir)?;
    let head = Oid::from_str(head).map_err(|e| GitError::local(OP, e))?;
    let commit = completion_commit(&repo, head, message, id, OP)?;
    let refspec = format!("{commit}:{completion_ref}");
    match push_refspecs(&repo, remote, &state, OP, &[refspec])? {
        PushAttempt::NotFastForward(why) => {
            match existing_completion(&repo, remote, &state.renewed(), completion_ref, message, OP)?
            {
                Existing::Same => Ok(()),
                Existing::Different => Err(holds_another_result(completion_ref)),
                Existing::Missing => Err(non_fast_forward(completion_ref.to_owned(), &why, auth)),
            }
        }
        PushAttempt::Sent(report) => match report.rejected.into_iter().next() {
            None => Ok(()),
            Some((refname, reason)) => {
                let refused = rejection(&state, auth, refname, reason);
                // The rejection stands unless the ref provably holds our result.
                match existing_completion(
                    &repo,
                    remote,
                    &state.renewed(),
                    completion_ref,
                    message,
                    OP,
                ) {
                    Ok(Existing::Same) => Ok(()),
                    Ok(Existing::Different | Existing::Missing) | Err(_) => Err(refused),
                }
            }
        },
    }
}

fn holds_another_result(completion_ref: &str) -> GitError {
    GitError::Rejected {
        refname: completion_ref.to_owned(),
        reason: "the completion ref already exists with a different result".to_owned(),
    }
}

/// What the remote completion ref holds compared with the message we meant to write.
enum Existing {
    Missing,
    Same,
    Different,
}

/// Fetches the remote completion ref into the checkout (objects only: the local ref used for it
/// is removed again) and compares its message with `message`.
fn existing_completion(
    repo: &Repository,
    remote: &GitRemote,
    state: &NetState<'_>,
    completion_ref: &str,
    message: &str,
    op: &'static str,
) -> Result<Existing, GitError> {
    let mut remote = checkout_remote(repo, remote, op)?;
    // Not shallow: a depth would graft the fetched commit into the checkout's history.
    let fetched = fetch_ref(repo, &mut remote, completion_ref, false, state, op);
    let found = match fetched {
        Ok(Some(oid)) => Ok(Some(commit_message(repo, oid, op)?)),
        Ok(None) => Ok(None),
        Err(e) => Err(e),
    };
    remove_local_ref(repo, completion_ref, op)?;
    Ok(match found? {
        None => Existing::Missing,
        Some(existing) if existing == message => Existing::Same,
        Some(_) => Existing::Different,
    })
}

/// Fetches `refname` from `remote` into the same local ref name and returns where it points,
/// or `None` when the remote has no such ref. A stale local copy is removed first, so `None`
/// is the remote's answer.
fn fetch_ref(
    repo: &Repository,
    remote: &mut Remote<'_>,
    refname: &str,
    shallow: bool,
    state: &NetState<'_>,
    op: &'static str,
) -> Result<Option<Oid>, GitError> {
    remove_local_ref(repo, refname, op)?;
    let mut fetch = FetchOptions::new();
    fetch
        .remote_callbacks(state.callbacks())
        .follow_redirects(RemoteRedirect::Initial)
        .download_tags(AutotagOption::None)
        .update_fetchhead(false);
    if shallow {
        fetch.depth(1);
    }
    let refspec = format!("+{refname}:{refname}");
    remote
        .fetch(&[&refspec], Some(&mut fetch), None)
        .map_err(|e| state.error(op, e))?;
    match repo.refname_to_id(refname) {
        Ok(oid) => Ok(Some(oid)),
        Err(e) if e.code() == ErrorCode::NotFound => Ok(None),
        Err(e) => Err(GitError::local(op, e)),
    }
}

fn remove_local_ref(repo: &Repository, refname: &str, op: &'static str) -> Result<(), GitError> {
    match repo.find_reference(refname) {
        Ok(mut reference) => reference.delete().map_err(|e| GitError::local(op, e)),
        Err(e) if e.code() == ErrorCode::NotFound => Ok(()),
        Err(e) => Err(GitError::local(op, e)),
    }
}

/// The full message of commit `oid`, which must be UTF-8 (it is a JSON body).
fn commit_message(repo: &Repository, oid: Oid, op: &'static str) -> Result<String, GitError> {
    let commit = repo.find_commit(oid).map_err(|e| GitError::local(op, e))?;
    String::from_utf8(commit.message_raw_bytes().to_vec()).map_err(|_| GitError::Git {
        op,
        message: format!("the completion commit {oid} has a message that is not UTF-8"),
    })
}

/// The completion commit: empty tree, parent `head`, dated like `head` (see the module doc).
fn completion_commit(
    repo: &Repository,
    head: Oid,
    message: &str,
    id: &Identity,
    op: &'static str,
) -> Result<Oid, GitError> {
    let local = |e| GitError::local(op, e);
    let parent = repo.find_commit(head).map_err(local)?;
    let tree_id = repo
        .treebuilder(None)
        .and_then(|t| t.write())
        .map_err(local)?;
    let tree = repo.find_tree(tree_id).map_err(local)?;
    let when = record_time(message).unwrap_or_else(|| parent.committer().when());
    let signature = git2::Signature::new(&id.name, &id.email, &when).map_err(local)?;
    repo.commit(None, &signature, &signature, message, &tree, &[&parent])
        .map_err(local)
}

/// The result's `finishedAt` (milliseconds) as the completion commit's time, so a record's
/// age can be read off its commit when old records are pruned. A message that is not a result
/// body has none.
fn record_time(message: &str) -> Option<git2::Time> {
    let body: serde_json::Value = serde_json::from_str(message).ok()?;
    let ms = body.get("finishedAt")?.as_u64()?;
    let secs = i64::try_from(ms / 1000).ok()?;
    Some(git2::Time::new(secs, 0))
}

/// A completion ref must be a full, valid ref name: it is used verbatim in refspecs.
fn require_ref_name(op: &'static str, refname: &str) -> Result<(), GitError> {
    if refname.starts_with("refs/") && git2::Reference::is_valid_name(refname) {
        return Ok(());
    }
    Err(GitError::Git {
        op,
        message: format!("{refname:?} is not a valid ref name"),
    })
}

#[cfg(test)]
#[path = "completion_tests.rs"]
mod tests;
