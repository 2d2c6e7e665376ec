//! [`PortForwarder`]: TCP from host ports into a sandbox's own network
//! namespace, as docker's userland proxy but without a bridge: accept on
//! the host, connect to `127.0.0.1:<port>` from inside the namespace.
//!
//! A socket belongs to the network namespace of the thread that creates
//! it, and setns(2) with `CLONE_NEWNET` changes only the calling thread.
//! So one *connector* thread joins the sandbox's namespace once and makes
//! every inside socket; acceptor threads stay in the host's namespace and
//! hand it connection requests. Two sandboxes can both listen on port 80:
//! each has its own namespace, and only the host ports must differ.

use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::error::{io_err, SandboxError};

/// One forwarded port: a bound host listener and the port inside.
#[derive(Debug)]
pub struct PortMapping {
    pub listener: TcpListener,
    pub container_port: u16,
}

/// Bind a host address for a [`PortMapping`]; port 0 picks a free port
/// (read it back with `listener.local_addr()`). A port in use fails here,
/// before anything is started.
pub fn bind_host_port(addr: SocketAddr) -> Result<TcpListener, SandboxError> {
    TcpListener::bind(addr).map_err(|source| SandboxError::Bind { addr, source })
}

type ConnectRequest = (u16, Sender<io::Result<TcpStream>>);

/// Running forwarders; [`stop`](PortForwarder::stop) (or drop) closes the
/// host listeners, so the host ports are free again.
#[derive(Debug)]
pub struct PortForwarder {
    stopping: Arc<AtomicBool>,
    listeners: Vec<RawFd>,
    acceptors: Vec<JoinHandle<()>>,
    _keep: Vec<Arc<TcpListener>>,
}

impl PortForwarder {
    /// Forward every mapping into the network namespace of process `pid`
    /// (the sandbox's pid 1).
    pub fn start(pid: u32, mappings: Vec<PortMapping>) -> Result<PortForwarder, SandboxError> {
        let ns_path = PathBuf::from(format!("/proc/{pid}/ns/net"));
        let ns = File::open(&ns_path).map_err(io_err("opening the namespace", &ns_path))?;
        let (tx, rx) = channel::<ConnectRequest>();
        let (ready_tx, ready_rx) = channel::<Result<(), SandboxError>>();
        std::thread::Builder::new()
            .name("forge-connector".to_owned())
            .spawn(move || {
                // SAFETY: setns on a namespace descriptor we opened; it
                // changes this thread only.
                if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } < 0 {
                    let _ = ready_tx.send(Err(SandboxError::Syscall {
                        call: "setns(net)",
                        source: nix::errno::Errno::last(),
                    }));
                    return;
                }
                drop(ns);
                let _ = ready_tx.send(Ok(()));
                for (port, reply) in rx {
                    let _ = reply.send(TcpStream::connect((Ipv4Addr::LOCALHOST, port)));
                }
            })
            .map_err(io_err("spawning a thread", "forge-connector"))?;
        ready_rx.recv().map_err(|_| SandboxError::Syscall {
            call: "setns(net)",
            source: nix::errno::Errno::ECHILD,
        })??;

        let stopping = Arc::new(AtomicBool::new(false));
        let mut fwd = PortForwarder {
            stopping: stopping.clone(),
            listeners: Vec::new(),
            acceptors: Vec::new(),
            _keep: Vec::new(),
        };
        for m in mappings {
            let listener = Arc::new(m.listener);
            fwd.listeners.push(listener.as_raw_fd());
            fwd._keep.push(listener.clone());
            let tx = tx.clone();
            let stopping = stopping.clone();
            let port = m.container_port;
            let h = std::thread::Builder::new()
                .name("forge-accept".to_owned())
                .spawn(move || accept_loop(&listener, port, &tx, &stopping))
                .map_err(io_err("spawning a thread", "forge-accept"))?;
            fwd.acceptors.push(h);
        }
        Ok(fwd)
    }

    /// Stop accepting and close the host listeners. Connections already
    /// open go on until either side closes them.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        for &fd in &self.listeners {
            // shutdown(2) on a listening socket wakes a blocked accept(2)
            // with EINVAL on Linux.
            // SAFETY: fd is a listener kept alive by `_keep`.
            unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
        }
        for h in self.acceptors.drain(..) {
            let _ = h.join();
        }
        self.listeners.clear();
        self._keep.clear();
    }
}

impl Drop for PortForwarder {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn accept_loop(
    listener: &TcpListener,
    port: u16,
    connector: &Sender<ConnectRequest>,
    stopping: &AtomicBool,
) {
    loop {
        let outside = match listener.accept() {
            Ok((s, _)) => s,
            Err(_) if stopping.load(Ordering::SeqCst) => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => {
                // EMFILE and the like: back off rather than spin.
                std::thread::sleep(std::time::Duration::from_millis(50));
                continue;
            }
        };
        if stopping.load(Ordering::SeqCst) {
            return;
        }
        let (reply_tx, reply_rx) = channel();
        if connector.send((port, reply_tx)).is_err() {
            return;
        }
        match reply_rx.recv() {
            Ok(Ok(inside)) => splice_pair(outside, inside),
            // Nothing listens inside: close the client's connection, as
            // docker's proxy does.
            _ => drop(outside),
        }
    }
}

/// Copy both ways on two threads; each direction's EOF becomes a
/// half-close of the other socket.
fn splice_pair(a: TcpStream, b: TcpStream) {
    let (Ok(a2), Ok(b2)) = (a.try_clone(), b.try_clone()) else {
        return;
    };
    let _ = std::thread::Builder::new()
        .name("forge-proxy".to_owned())
        .spawn(move || copy_then_close(a, b));
    let _ = std::thread::Builder::new()
        .name("forge-proxy".to_owned())
        .spawn(move || copy_then_close(b2, a2));
}

fn copy_then_close(mut from: TcpStream, mut to: TcpStream) {
    let _ = io::copy(&mut from, &mut to);
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}
