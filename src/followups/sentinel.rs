//! Opening the sentinel the way hostile input requires: by name inside a directory held open
//! since the watcher started, never through a symlink, never blocking, and only when it is a
//! regular file.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use super::FOLLOW_UPS_FILENAME;

/// What is at the sentinel's path.
#[derive(Debug)]
pub(super) enum Sentinel {
    Missing,
    /// A regular file, with its length when it was opened.
    File(File, u64),
    /// Something that must not be read (what it is, for the warning).
    Refused(&'static str),
}

/// The agent's working directory, held open: the sentinel is looked up in this directory
/// whatever later happens to its path (a parent replaced by a symlink cannot redirect it).
#[derive(Debug)]
pub(super) struct WorkDir {
    dir: File,
    name: CString,
}

impl WorkDir {
    pub(super) fn open(dir: &Path) -> io::Result<Self> {
        let dir = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY)
            .open(dir)?;
        let name = CString::new(FOLLOW_UPS_FILENAME)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        Ok(Self { dir, name })
    }

    /// Opens the sentinel if it is a regular file. No symlink is followed (a committed link to
    /// a host file would publish that file), and the open does not wait (a FIFO's open blocks
    /// until a writer comes); the type is then checked on the open descriptor itself.
    pub(super) fn open_sentinel(&self) -> io::Result<Sentinel> {
        let flags =
            libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC;
        let file = match crate::sys::openat(self.dir.as_fd(), &self.name, flags) {
            Ok(file) => file,
            Err(err) => {
                return match err.raw_os_error() {
                    Some(libc::ENOENT) => Ok(Sentinel::Missing),
                    Some(libc::ELOOP) => Ok(Sentinel::Refused("a symbolic link")),
                    // What a socket's open fails with.
                    Some(libc::ENXIO) => Ok(Sentinel::Refused("a socket")),
                    _ => Err(err),
                };
            }
        };
        let meta = file.metadata()?;
        let kind = meta.file_type();
        if kind.is_file() {
            return Ok(Sentinel::File(file, meta.len()));
        }
        Ok(Sentinel::Refused(if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_dir() {
            "a directory"
        } else if kind.is_block_device() || kind.is_char_device() {
            "a device"
        } else if kind.is_socket() {
            "a socket"
        } else {
            "not a regular file"
        }))
    }
}
