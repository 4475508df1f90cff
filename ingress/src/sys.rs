//! The one system call the server makes itself.

use std::os::fd::RawFd;

/// Wakes every `accept` waiting on a listening socket (it then fails with `EINVAL`), which is how
/// another thread stops a core's accept loop on either monoio driver.
///
/// The caller must pass the descriptor of a listener that is still open: the server's accept
/// loops keep their listener until they have seen the stop flag, which is set before this runs.
pub fn shutdown_listener(fd: RawFd) {
    // SAFETY: `shutdown` only reads its integer arguments; on a descriptor that is open (see the
    // contract above) it affects that socket alone, and an error is harmless and ignored.
    unsafe {
        libc::shutdown(fd, libc::SHUT_RDWR);
    }
}
