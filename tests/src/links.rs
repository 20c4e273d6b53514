//! Network faults between nodes on one machine: every directed link
//! `i -> j` (node `i` calling node `j`'s RPC port) goes through a TCP proxy
//! of this process, which a test can cut (existing connections are closed,
//! new ones closed at once), slow down (every byte arrives a fixed delay
//! after it was sent, in both directions of the link's connections), and
//! heal. Node `i` is started with `--peers` naming the proxies of its links
//! instead of the other nodes' ports.
//!
//! Cutting `i -> j` stops the calls `i` makes to `j` (and their answers);
//! `j` can still call `i`. Cutting both directions isolates the pair.
//! Packets are not dropped, duplicated or reordered: under TCP, such faults
//! surface as delays, which the delay stands for.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// Chunks in flight on one direction of one delayed connection: the copy
/// stops reading when this many wait for their time.
const DELAYED_CHUNKS_MAX: usize = 1024;
const CHUNK_BYTES: usize = 64 * 1024;

/// What a link does to its traffic now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Fault {
    cut: bool,
    delay_ms: u64,
}

/// One directed link's proxy: where it listens, and its state.
struct Link {
    port: u16,
    fault: Arc<watch::Sender<Fault>>,
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
                let fault = Arc::new(watch::channel(Fault::default()).0);
                tokio::spawn(serve(listener, target, fault.clone()));
                links.insert((from, to), Link { port, fault });
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
            link.fault.send_modify(|f| f.cut = cut);
        }
    }

    /// Delays every byte on the link `from -> to` (calls and their
    /// answers) by `delay_ms`; 0 heals it. Applies to the link's
    /// connections open now and later.
    pub fn set_delay(&self, from: u64, to: u64, delay_ms: u64) {
        if let Some(link) = self.links.get(&(from, to)) {
            link.fault.send_modify(|f| f.delay_ms = delay_ms);
        }
    }

    /// Heals every link.
    pub fn heal_all(&self) {
        for link in self.links.values() {
            link.fault.send_replace(Fault::default());
        }
    }
}

async fn serve(listener: TcpListener, target: u16, fault: Arc<watch::Sender<Fault>>) {
    while let Ok((inbound, _)) = listener.accept().await {
        if fault.borrow().cut {
            drop(inbound);
            continue;
        }
        let mut cut_rx = fault.subscribe();
        let delay = fault.subscribe();
        tokio::spawn(async move {
            let Ok(outbound) = TcpStream::connect(("127.0.0.1", target)).await else { return };
            let _ = inbound.set_nodelay(true);
            let _ = outbound.set_nodelay(true);
            let (in_read, in_write) = inbound.into_split();
            let (out_read, out_write) = outbound.into_split();
            tokio::select! {
                _ = pipe(in_read, out_write, delay.clone()) => {}
                _ = pipe(out_read, in_write, delay) => {}
                _ = cut_rx.wait_for(|f| f.cut) => {}
            }
        });
    }
}

/// Copies `from` to `to`, each chunk written the link's current delay
/// after it was read. Ends when either side closes.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    fault: watch::Receiver<Fault>,
) {
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(DELAYED_CHUNKS_MAX);
    let reader = async move {
        let mut buf = vec![0u8; CHUNK_BYTES];
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let due = Instant::now() + Duration::from_millis(fault.borrow().delay_ms);
            if tx.send((due, buf[..n].to_vec())).await.is_err() {
                return;
            }
        }
    };
    let writer = async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}
