//! Listening sockets: one per worker per address, sharing the port with `SO_REUSEPORT`.
//!
//! Each worker has its own listening socket for every address, all bound to the same port
//! with `SO_REUSEPORT`, so the kernel spreads new connections across the workers' accept
//! queues and no two loops ever contend for one socket. Everything is bound in the main
//! thread before any worker starts, so a bad address is reported once, with exit status 1.
//!
//! `SO_REUSEPORT` has a trap: a second weir (same user) could join the first one's group and
//! silently share its port instead of failing. Before binding a group we therefore bind a
//! *probe* socket with `SO_REUSEADDR` but without `SO_REUSEPORT`: Linux refuses it if anything
//! is listening on the address, which is exactly "address in use". The probe also resolves
//! port 0 to a concrete port, so that every worker's socket joins the same group. (Another
//! process could take the port in the instant between probe and group; the group's bind then
//! fails, which is still reported.)

use std::io;
use std::net::SocketAddr;

use mio::net::TcpListener;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// Length of each listening socket's accept queue.
pub const BACKLOG: i32 = 1024;

/// Why an address could not be listened on.
#[derive(Debug)]
pub struct BindError {
    /// The address as asked for.
    pub addr: SocketAddr,
    /// What the OS said.
    pub error: io::Error,
}

impl std::fmt::Display for BindError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot listen on {}: {}", self.addr, self.error)
    }
}

/// The bound sockets: `sockets[worker][listener]`, and each listener's actual address.
#[derive(Debug)]
pub struct Bound {
    /// Per worker, one listening socket per address, in listen-list order (`ListenerId`).
    pub sockets: Vec<Vec<TcpListener>>,
    /// The addresses actually bound (port 0 resolved), in listen-list order.
    pub addrs: Vec<SocketAddr>,
}

/// Binds `workers` listening sockets for every address in `addrs`.
pub fn bind_all(addrs: &[SocketAddr], workers: usize) -> Result<Bound, BindError> {
    let mut sockets: Vec<Vec<TcpListener>> = (0..workers).map(|_| Vec::new()).collect();
    let mut bound = Vec::with_capacity(addrs.len());
    for &addr in addrs {
        let fail = |error| BindError { addr, error };
        let actual = probe(addr).map_err(fail)?;
        for per_worker in &mut sockets {
            per_worker.push(bind_one(actual, true).map_err(fail)?);
        }
        bound.push(actual);
    }
    Ok(Bound {
        sockets,
        addrs: bound,
    })
}

/// Checks that nothing listens on `addr` and returns it with its port resolved.
fn probe(addr: SocketAddr) -> io::Result<SocketAddr> {
    let socket = new_socket(addr, false)?;
    socket.bind(&SockAddr::from(addr))?;
    let local = socket
        .local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not an internet address"))?;
    Ok(local)
}

/// A non-blocking listening socket on `addr`.
fn bind_one(addr: SocketAddr, reuse_port: bool) -> io::Result<TcpListener> {
    let socket = new_socket(addr, reuse_port)?;
    socket.bind(&SockAddr::from(addr))?;
    socket.listen(BACKLOG)?;
    Ok(TcpListener::from_std(socket.into()))
}

fn new_socket(addr: SocketAddr, reuse_port: bool) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // SO_REUSEADDR: restart at once even while old connections sit in TIME_WAIT.
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    if addr.is_ipv6() {
        // `[::]:80` means IPv6 only; IPv4 is listed separately if wanted (nginx does the
        // same), so both can be given without a conflict.
        socket.set_only_v6(true)?;
    }
    // Responses are written whole chunks at a time; Nagle would only delay their tails.
    // Accepted sockets inherit the option on Linux, so it costs no system call per
    // connection.
    socket.set_nodelay(true)?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_zero_resolves_to_one_shared_port() {
        let addr: SocketAddr = "127.0.0.1:0".parse().expect("literal address");
        let bound = bind_all(&[addr], 3).expect("loopback is bindable");
        assert_eq!(bound.sockets.len(), 3);
        let port = bound.addrs[0].port();
        assert_ne!(port, 0);
        for per_worker in &bound.sockets {
            assert_eq!(per_worker.len(), 1);
            assert_eq!(
                per_worker[0].local_addr().expect("bound socket").port(),
                port
            );
        }
    }

    #[test]
    fn an_address_in_use_is_refused_even_by_another_weir() {
        let addr: SocketAddr = "127.0.0.1:0".parse().expect("literal address");
        let first = bind_all(&[addr], 2).expect("loopback is bindable");
        let err = bind_all(&first.addrs, 2).expect_err("the port is taken");
        assert_eq!(err.error.kind(), io::ErrorKind::AddrInUse);
        assert!(err.to_string().starts_with("cannot listen on 127.0.0.1:"));
    }
}
