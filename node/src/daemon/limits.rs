//! Process limits the daemon sets at start.
//!
//! The open-file limit: every connection (libp2p peers, control-API clients), content file and
//! database handle is a file descriptor, and many systems start programs with a soft limit of
//! 1024 under a much higher hard limit. The daemon raises its soft limit to the hard limit
//! ([`raise_open_file_limit`]) so that a burst of connections does not make a chunk read or an
//! accept fail with "too many open files"; the control API bounds its own connections
//! (`api_conns.rs`), so raising the limit is not what keeps it safe, only what gives everything
//! else room.
//!
//! Invariant: the hard limit is never changed (an unprivileged process can only lower it).

/// The open-file limit before and after [`raise_open_file_limit`] (`None`: unlimited).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenFileLimit {
    /// The soft limit the process started with.
    pub was: Option<u64>,
    /// The soft limit now.
    pub now: Option<u64>,
    /// The hard limit (unchanged).
    pub hard: Option<u64>,
}

/// Raises the soft open-file limit (`RLIMIT_NOFILE`) to the hard limit; returns both, or the
/// system's error (the limit is then unchanged). On systems without resource limits it does
/// nothing and returns `None`.
pub fn raise_open_file_limit() -> std::io::Result<Option<OpenFileLimit>> {
    #[cfg(unix)]
    {
        use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
        let before = getrlimit(Resource::Nofile);
        if before.current != before.maximum {
            setrlimit(
                Resource::Nofile,
                Rlimit {
                    current: before.maximum,
                    maximum: before.maximum,
                },
            )
            .map_err(|e| {
                std::io::Error::other(format!(
                    "cannot raise the open-file limit from {} to {}: {e}",
                    show(before.current),
                    show(before.maximum)
                ))
            })?;
        }
        let after = getrlimit(Resource::Nofile);
        Ok(Some(OpenFileLimit {
            was: before.current,
            now: after.current,
            hard: after.maximum,
        }))
    }
    #[cfg(not(unix))]
    {
        Ok(None)
    }
}

/// A limit as text: the number, or `unlimited`.
pub fn show(limit: Option<u64>) -> String {
    limit.map_or_else(|| "unlimited".to_owned(), |n| n.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(unix)]
    fn the_soft_limit_ends_at_the_hard_limit() {
        let limit = raise_open_file_limit().unwrap().unwrap();
        assert_eq!(limit.now, limit.hard, "{limit:?}");
        let again = raise_open_file_limit().unwrap().unwrap();
        assert_eq!(again.was, limit.hard, "{again:?}");
    }
}
