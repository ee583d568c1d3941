//! The crate's calls into libc and libgit2's global options, each behind a safe function: the
//! only module allowed `unsafe` code.

use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd};

/// Sends `signal` to the process group `pgid`; a group that is gone (ESRCH) is ignored, as is
/// every other failure. `pgid` must be a group the caller started: 0 would be our own.
pub fn kill_group(pgid: i32, signal: libc::c_int) {
    // SAFETY: killpg takes no pointers and has no memory-safety preconditions.
    unsafe {
        libc::killpg(pgid, signal);
    }
}

/// The effective user id of this process.
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// This host's name (at most 255 bytes, lossily decoded).
pub fn hostname() -> io::Result<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it or
    // truncates, and we stop at the first NUL.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    Ok(String::from_utf8_lossy(&buf[..end]).into_owned())
}

/// Opens `name` inside the directory `dir` with the `open(2)` `flags`, as `openat(2)` does;
/// the error is the OS error of the call.
pub fn openat(dir: BorrowedFd<'_>, name: &CStr, flags: libc::c_int) -> io::Result<File> {
    // The mode is read only with O_CREAT or O_TMPFILE; passing one keeps any flags sound.
    let mode: libc::c_uint = 0;
    // SAFETY: both pointers are valid for the call: a live directory descriptor (borrowed for
    // its duration) and a NUL-terminated name.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags, mode) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by openat and nothing else owns it.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// Sets libgit2's process-wide connect and read timeouts, in milliseconds; failures are
/// ignored. Call it once at start-up, before any git operation runs on another thread, as
/// libgit2 requires for its global options.
pub fn set_git_server_timeouts(connect_ms: libc::c_int, read_ms: libc::c_int) {
    // SAFETY: the caller sets these once at start-up, before any git operation runs on another
    // thread, as libgit2 requires for its global options.
    unsafe {
        let _ = git2::opts::set_server_connect_timeout_in_milliseconds(connect_ms);
        let _ = git2::opts::set_server_timeout_in_milliseconds(read_ms);
    }
}

/// Bounds libgit2's process-wide memory: the size of one pack window it maps, the total it keeps
/// mapped before unmapping the least recently used, and its object cache.
pub fn set_git_memory_bounds(window: usize, mapped: usize, cache: isize) {
    // SAFETY: set once at start-up, before any git operation runs on another thread, as
    // libgit2 requires for its global options.
    unsafe {
        let _ = git2::opts::set_mwindow_size(window);
        let _ = git2::opts::set_mwindow_mapped_limit(mapped);
        let _ = git2::opts::set_cache_max_size(cache);
    }
}

/// Caps the allocator's arenas (glibc's default is eight per core, one per allocating thread),
/// so memory freed by one short-lived blocking task is reused by the next instead of staying
/// resident in an arena of its own. A no-op on other C libraries.
pub fn limit_malloc_arenas(arenas: i32) {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt takes plain integers; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, arenas);
    }
    #[cfg(not(target_env = "gnu"))]
    let _ = arenas;
}

/// Makes this process not dumpable: processes of the same user can no longer ptrace it or
/// read its `/proc/<pid>/mem`, `environ` or the like (only root or `CAP_SYS_PTRACE` can), so an
/// unconfined agent running as the worker's user cannot read the worker's memory or secrets.
pub fn set_not_dumpable() -> io::Result<()> {
    // SAFETY: prctl(PR_SET_DUMPABLE, 0) takes plain integers and touches no memory of ours.
    let rc = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether libgit2 refuses repositories owned by another user (its `safe.directory` check).
/// A root worker turns it off for the checkouts it hands to the agents' user; call it once at
/// start-up, before any git operation runs on another thread.
pub fn set_git_owner_validation(on: bool) {
    // SAFETY: set once at start-up, before any git operation runs on another thread, as
    // libgit2 requires for its global options.
    unsafe {
        let _ = git2::opts::set_verify_owner_validation(on);
    }
}

/// Sets the process's file mode creation mask; returns the previous one.
pub fn set_umask(mask: u32) -> u32 {
    // SAFETY: umask takes a plain integer and cannot fail.
    unsafe { libc::umask(mask as libc::mode_t) as u32 }
}

/// Takes `name` out of the environment: returns its value after overwriting it in place, so
/// that neither a later child nor `/proc/<pid>/environ` (which shows the block the process
/// started with) still holds it. Call it at start-up, before any other thread runs.
pub fn take_env_var(name: &str) -> Option<String> {
    let value = std::env::var(name).ok()?;
    let key = std::ffi::CString::new(name).ok()?;
    // SAFETY: getenv returns NULL or a pointer to the NUL-terminated value inside the
    // environment block, valid until the environment changes; we write only within its length
    // (strlen) and before any other thread exists, so nothing reads it concurrently.
    unsafe {
        let ptr = libc::getenv(key.as_ptr());
        if !ptr.is_null() {
            let len = libc::strlen(ptr);
            std::ptr::write_bytes(ptr, b'*', len);
        }
    }
    std::env::remove_var(name);
    Some(value)
}
