//! Binding the listeners, then dropping every capability.
//!
//! The shipped unit grants `CAP_NET_BIND_SERVICE` (and nothing else) so that an
//! operator may listen on a port below 1024. c2cd binds its listeners first, on
//! the main thread before any other thread exists (capabilities are per thread),
//! and then clears all its capability sets: the capability serves the bind and
//! nothing after it, and a config without a low port never uses it.

use std::net::{SocketAddr, TcpListener};

use caps::CapSet;
use socket2::{Domain, Socket, Type};

/// Connections waiting to be accepted, per listener.
const BACKLOG: i32 = 1024;

/// Binds `addr` for accepting, non-blocking, ready for tokio.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Clears every capability set of the calling thread (the only one). Call after
/// binding and before starting any thread.
pub fn drop_all() -> Result<(), caps::errors::CapsError> {
    // SECURITY: nothing c2cd does after binding needs a capability.
    for set in [
        CapSet::Ambient,
        CapSet::Effective,
        CapSet::Inheritable,
        CapSet::Permitted,
    ] {
        caps::clear(None, set)?;
    }
    Ok(())
}

/// Whether any capability is left in the effective or permitted set.
pub fn any_left() -> bool {
    [CapSet::Effective, CapSet::Permitted]
        .into_iter()
        .any(|s| caps::read(None, s).map(|c| !c.is_empty()).unwrap_or(true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_an_ephemeral_port() {
        let l = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        assert_ne!(l.local_addr().unwrap().port(), 0);
    }
}
