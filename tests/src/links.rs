//! Network partitions between nodes on one machine: every directed link
//! `i -> j` (node `i` calling node `j`'s RPC port) goes through a TCP proxy
//! of this process, which a test can cut (existing connections are closed,
//! new ones closed at once) and heal. Node `i` is started with `--peers`
//! naming the proxies of its links instead of the other nodes' ports.
//!
//! Cutting `i -> j` stops the calls `i` makes to `j` (and their answers);
//! `j` can still call `i`. Cutting both directions isolates the pair.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// One directed link's proxy: where it listens, and its switch.
struct Link {
    port: u16,
    cut: Arc<watch::Sender<bool>>,
}

/// The proxies of every directed link of a cluster.
pub struct Links {
    /// By `(from, to)`.
    links: BTreeMap<(u64, u64), Link>,
}

impl Links {
    /// Starts one proxy per ordered pair of `rpc_ports` (node id -> port).
    pub async fn start(rpc_ports: &BTreeMap<u64, u16>) -> std::io::Result<Links> {
        let mut links = BTreeMap::new();
        for &from in rpc_ports.keys() {
            for (&to, &target) in rpc_ports {
                if from == to {
                    continue;
                }
                let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
                let port = listener.local_addr()?.port();
                let cut = Arc::new(watch::channel(false).0);
                tokio::spawn(serve(listener, target, cut.clone()));
                links.insert((from, to), Link { port, cut });
            }
        }
        Ok(Links { links })
    }

    /// The port node `from` reaches node `to` at.
    pub fn port(&self, from: u64, to: u64) -> Option<u16> {
        self.links.get(&(from, to)).map(|l| l.port)
    }

    /// Cuts (or heals) the link `from -> to`.
    pub fn set_cut(&self, from: u64, to: u64, cut: bool) {
        if let Some(link) = self.links.get(&(from, to)) {
            link.cut.send_replace(cut);
        }
    }

    /// Heals every link.
    pub fn heal_all(&self) {
        for link in self.links.values() {
            link.cut.send_replace(false);
        }
    }
}

async fn serve(listener: TcpListener, target: u16, cut: Arc<watch::Sender<bool>>) {
    while let Ok((inbound, _)) = listener.accept().await {
        if *cut.borrow() {
            drop(inbound);
            continue;
        }
        let mut cut_rx = cut.subscribe();
        tokio::spawn(async move {
            let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", target)).await else { return };
            let mut inbound = inbound;
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                _ = cut_rx.wait_for(|&c| c) => {}
            }
        });
    }
}
