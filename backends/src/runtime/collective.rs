//! Data parallelism on Burn's own collective operations (`burn-collective`): several peers —
//! devices of this process (its local level), and processes on other nodes (its global level,
//! an orchestrator reached over websockets) — each compute on their share of the samples, and
//! sum what they measured with all-reduce, so that every peer ends with the same values.
//!
//! What is summed is always a sum over samples (token-weighted gradient sums, Fisher sums, loss
//! sums), never a score: a Taylor score `|w·g|` of a sum is not the sum of the scores.
//!
//! A peer that fails or stops answering never leaves the others waiting: every collective call
//! is bounded by a timeout, and a peer's failure aborts the other peers of its process at their
//! next call.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use burn::collective::{self, CollectiveConfig, PeerId, ReduceOperation};
use burn::prelude::{Backend, Tensor, TensorData};
use burn::tensor::{Element, TensorPrimitive};

use crate::{BackendError, Result};

fn err(msg: impl Into<String>) -> BackendError {
    BackendError::Collective(msg.into())
}

/// Processes on several nodes, one per node, joined through burn-collective's global level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nodes {
    /// Processes (nodes) in all.
    pub world_size: u32,
    /// This process's rank, `0..world_size`; rank 0 runs the orchestrator.
    pub rank: u32,
    /// `host:port` of the orchestrator (rank 0 listens on its port).
    pub coordinator: String,
    /// `host:port` under which the other nodes reach this one's tensor data service (its port
    /// is where this process listens).
    pub node_address: String,
}

impl Nodes {
    fn port_of(address: &str, what: &str) -> Result<u16> {
        address
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .ok_or_else(|| err(format!("{what} `{address}` is not HOST:PORT")))
    }

    fn config(&self, local: usize) -> Result<CollectiveConfig> {
        use std::str::FromStr;
        if self.world_size == 0 || self.rank >= self.world_size {
            return Err(err(format!("rank {} is outside a world of {} processes", self.rank, self.world_size)));
        }
        let port = Self::port_of(&self.node_address, "the node address")?;
        Self::port_of(&self.coordinator, "the coordinator")?;
        let address = |a: &str| burn_communication::Address::from_str(&format!("ws://{a}")).map_err(|e| err(format!("`{a}`: {e}")));
        Ok(CollectiveConfig::default()
            .with_num_devices(local)
            .with_num_nodes(self.world_size)
            .with_global_address(address(&self.coordinator)?)
            .with_node_address(address(&self.node_address)?)
            .with_data_service_port(port))
    }
}

/// What one peer spent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PeerTime {
    /// The peer's rank among all peers (all nodes).
    pub rank: usize,
    /// Seconds computing (its whole run less its collective calls).
    pub compute_s: f64,
    /// Seconds in collective calls (waiting for the others included).
    pub communicate_s: f64,
    /// Bytes it handed to all-reduce.
    pub reduced_bytes: u64,
    /// All-reduce calls.
    pub calls: usize,
}

/// The result of work run on every peer of this process.
#[derive(Debug)]
pub struct PeerRun<T> {
    /// Each local peer's result, in device order (identical where the work reduces all it keeps).
    pub results: Vec<T>,
    /// Peers in all (every node's).
    pub peers: usize,
    /// Each local peer's times.
    pub times: Vec<PeerTime>,
}

/// One peer: its device, its place among all peers, and its collective calls.
pub struct Peer<B: Backend> {
    device: B::Device,
    id: PeerId,
    rank: usize,
    peers: usize,
    joined: bool,
    timeout: Duration,
    abort: Arc<AtomicBool>,
    communicate: Duration,
    reduced_bytes: u64,
    calls: usize,
}

impl<B: Backend> Peer<B> {
    /// A peer working alone: its sums are its own values.
    pub fn alone(device: B::Device) -> Peer<B> {
        Peer {
            device,
            id: PeerId::from(0u32),
            rank: 0,
            peers: 1,
            joined: false,
            timeout: Duration::MAX,
            abort: Arc::new(AtomicBool::new(false)),
            communicate: Duration::ZERO,
            reduced_bytes: 0,
            calls: 0,
        }
    }

    /// The device it computes on.
    pub fn device(&self) -> &B::Device {
        &self.device
    }

    /// Its rank among all peers.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Peers in all.
    pub fn peers(&self) -> usize {
        self.peers
    }

    /// Whether work item `i` (a micro-batch) is this peer's: items are dealt round-robin.
    pub fn owns(&self, i: usize) -> bool {
        i % self.peers == self.rank
    }

    /// Runs one collective call on a watchdog thread, bounded by the timeout and by the other
    /// local peers' failure.
    fn call<T: Send + 'static>(&mut self, what: &str, f: impl FnOnce() -> std::result::Result<T, collective::CollectiveError> + Send + 'static) -> Result<T> {
        let started = Instant::now();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        let deadline = started + self.timeout.min(Duration::from_secs(60 * 60 * 24 * 365));
        let outcome = loop {
            if self.abort.load(Ordering::SeqCst) {
                break Err(err(format!("peer {}: {what}: {ABORTED}", self.rank)));
            }
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(Ok(v)) => break Ok(v),
                Ok(Err(collective::CollectiveError::LocalServerMissing)) => {
                    break Err(err(format!("peer {}: {what}: lost the other peers (burn-collective's server stopped: a node died?)", self.rank)))
                }
                Ok(Err(e)) => break Err(err(format!("peer {}: {what}: {e:?}", self.rank))),
                Err(mpsc::RecvTimeoutError::Disconnected) => break Err(err(format!("peer {}: {what}: the collective call ended without an answer", self.rank))),
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() >= deadline => {
                    break Err(err(format!(
                        "peer {}: {what}: no answer from the other peers within {} s (a peer or node stopped, or never started)",
                        self.rank,
                        self.timeout.as_secs_f64()
                    )))
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
        };
        self.communicate += started.elapsed();
        outcome
    }

    /// Replaces `values` (f32 or f64) by their sum over all peers, summed in their own type
    /// (every peer gets the same sum).
    pub fn sum<E: Element>(&mut self, values: &mut [E]) -> Result<()> {
        if !self.joined || values.is_empty() {
            return Ok(());
        }
        let n = values.len();
        // the global level's ring splits a tensor in one slice per node: never fewer values
        let mut padded = values.to_vec();
        padded.resize(n.max(self.peers), E::from_elem(0.0));
        let len = padded.len();
        let t = Tensor::<B, 1>::from_data(TensorData::new(padded, [len]), (&self.device, E::dtype()));
        let (id, prim) = (self.id, t.into_primitive().tensor());
        self.reduced_bytes += (std::mem::size_of::<E>() * n) as u64;
        self.calls += 1;
        let summed = self.call("all-reduce", move || collective::all_reduce::<B>(id, prim, ReduceOperation::Sum))?;
        let summed = Tensor::<B, 1>::from_primitive(TensorPrimitive::Float(summed))
            .into_data()
            .convert::<E>()
            .into_vec::<E>()
            .map_err(|e| err(format!("reading an all-reduced tensor: {e:?}")))?;
        if summed.len() != len {
            return Err(err(format!("all-reduce gave {} values for {len}", summed.len())));
        }
        values.copy_from_slice(&summed[..n]);
        Ok(())
    }

    /// Sums a set of optional vectors, one per name in an order every peer shares: a vector no
    /// peer has stays absent; one some peers lack counts as zeros there (of `len(i)` values).
    pub fn sum_optional<E: Element>(&mut self, slots: &mut [Option<Vec<E>>], len: impl Fn(usize) -> usize) -> Result<()> {
        if !self.joined {
            return Ok(());
        }
        let mut present: Vec<f32> = slots.iter().map(|s| if s.is_some() { 1.0 } else { 0.0 }).collect();
        self.sum(&mut present)?;
        for (i, slot) in slots.iter_mut().enumerate() {
            if present[i] == 0.0 {
                *slot = None;
                continue;
            }
            let v = slot.get_or_insert_with(|| vec![E::from_elem(0.0); len(i)]);
            if v.len() != len(i) {
                return Err(err(format!("peer {}: a vector of {} values where {} were expected", self.rank, v.len(), len(i))));
            }
            self.sum(v)?;
        }
        Ok(())
    }

    fn time(&self, wall: Duration) -> PeerTime {
        PeerTime {
            rank: self.rank,
            compute_s: wall.saturating_sub(self.communicate).as_secs_f64(),
            communicate_s: self.communicate.as_secs_f64(),
            reduced_bytes: self.reduced_bytes,
            calls: self.calls,
        }
    }
}

/// Whether a panic at `file` is burn-collective's or its transport's: they panic where they
/// lose a peer (a node that died, a closed connection) instead of returning an error; the
/// caller sees the lost call as an error of its own (see [`run_peers`]), so a panic hook may
/// print these as notes.
pub fn is_collective_panic(file: &str) -> bool {
    file.contains("burn-collective") || file.contains("burn-communication")
}

const ABORTED: &str = "another peer of this process failed";

/// One collective at a time per process (burn-collective keeps one client per backend type).
static COLLECTIVE: Mutex<()> = Mutex::new(());

/// Rank 0's orchestrator, started once per process on the coordinator's port.
static ORCHESTRATOR: OnceLock<u16> = OnceLock::new();

fn start_orchestrator(nodes: &Nodes) -> Result<()> {
    let port = Nodes::port_of(&nodes.coordinator, "the coordinator")?;
    let running = *ORCHESTRATOR.get_or_init(|| {
        std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build() else {
                return;
            };
            rt.block_on(burn_collective::start_global_orchestrator(port));
        });
        port
    });
    if running != port {
        return Err(err(format!("this process runs an orchestrator on port {running} already, not {port}")));
    }
    Ok(())
}

/// Runs `work` on one peer per device of `devices` (threads of this process), joined with the
/// peers of the other nodes when `nodes` is given, each collective call bounded by `timeout`.
/// One device and no nodes: `work` runs here, alone, with no collective at all.
pub fn run_peers<B: Backend, T: Send>(
    devices: &[B::Device],
    nodes: Option<&Nodes>,
    timeout: Duration,
    work: impl Fn(&mut Peer<B>) -> Result<T> + Sync,
) -> Result<PeerRun<T>> {
    if devices.is_empty() {
        return Err(err("no device to run on"));
    }
    if devices.len() == 1 && nodes.is_none() {
        let started = Instant::now();
        let mut peer = Peer::alone(devices[0].clone());
        let result = work(&mut peer)?;
        return Ok(PeerRun { results: vec![result], peers: 1, times: vec![peer.time(started.elapsed())] });
    }
    let _one_at_a_time = COLLECTIVE.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    std::thread::spawn(collective::reset_collective::<B>)
        .join()
        .map_err(|_| err("burn-collective's server is gone (an earlier collective failed in this process)"))?;
    let local = devices.len();
    let (config, first_rank, peers) = match nodes {
        Some(n) => {
            if n.rank == 0 {
                start_orchestrator(n)?;
            }
            (n.config(local)?, n.rank as usize * local, n.world_size as usize * local)
        }
        None => (CollectiveConfig::default().with_num_devices(local), 0, local),
    };
    let abort = Arc::new(AtomicBool::new(false));
    // the cores shared out among the local peers: each runs its CPU work (Flex's matrix products
    // and row-parallel ops) on a rayon pool of its own, so peers do not queue behind each
    // other's parallel regions in the global pool
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let threads = (cores / local).max(1);
    let outcomes: Vec<Result<(T, PeerTime)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = devices
            .iter()
            .enumerate()
            .map(|(i, device)| {
                let (config, abort, work) = (config.clone(), abort.clone(), &work);
                let device = device.clone();
                scope.spawn(move || {
                    let started = Instant::now();
                    let mut peer = Peer::<B> {
                        device: device.clone(),
                        id: PeerId::from(i as u32),
                        rank: first_rank + i,
                        peers,
                        joined: true,
                        timeout,
                        abort: abort.clone(),
                        communicate: Duration::ZERO,
                        reduced_bytes: 0,
                        calls: 0,
                    };
                    let id = peer.id;
                    let pool = rayon::ThreadPoolBuilder::new()
                        .num_threads(threads)
                        .thread_name(move |t| format!("peer{i}-{t}"))
                        .build()
                        .map_err(|e| err(format!("peer {i}: no thread pool ({e})")));
                    let outcome = pool
                        .and_then(|pool| {
                            peer.call("joining the other peers", move || collective::register::<B>(id, device, config))?;
                            pool.install(|| work(&mut peer))
                        })
                        .and_then(|r| {
                            peer.call("leaving the other peers", move || collective::finish_collective::<B>(id))?;
                            Ok(r)
                        });
                    if outcome.is_err() {
                        abort.store(true, Ordering::SeqCst);
                    }
                    outcome.map(|r| (r, peer.time(started.elapsed())))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(err("a peer's thread panicked"))))
            .collect()
    });
    if outcomes.iter().any(Result::is_err) {
        // burn-collective's server may be gone (a lost node makes its tasks panic): reset it off
        // this thread, whose failure then changes nothing
        let _ = std::thread::spawn(collective::reset_collective::<B>).join();
    }
    let mut results = Vec::with_capacity(local);
    let mut times = Vec::with_capacity(local);
    let mut errors = Vec::new();
    for o in outcomes {
        match o {
            Ok((r, t)) => {
                results.push(r);
                times.push(t);
            }
            Err(e) => errors.push(e),
        }
    }
    // the failing peer's own error, rather than the others' "another peer failed"
    let secondary = |e: &BackendError| e.to_string().contains(ABORTED);
    match errors.iter().position(|e| !secondary(e)).or((!errors.is_empty()).then_some(0)) {
        Some(i) => Err(errors.swap_remove(i)),
        None => Ok(PeerRun { results, peers, times }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{cpu, Cpu};

    #[test]
    fn local_peers_sum_what_each_holds() {
        let run = run_peers::<Cpu, _>(&[cpu(), cpu(), cpu()], None, Duration::from_secs(60), |peer| {
            let r = peer.rank() as f32;
            let mut v = vec![r, 10.0 * r, 1.0];
            peer.sum(&mut v)?;
            let mut big = vec![1e9 + peer.rank() as f64 * 1e-3];
            peer.sum(&mut big)?;
            // only peer 1 has the second vector
            let mut slots = vec![Some(vec![1.0f32; 2]), (peer.rank() == 1).then(|| vec![5.0f32; 3]), None];
            peer.sum_optional(&mut slots, |i| i + 2)?;
            Ok((v, big[0], slots))
        })
        .unwrap();
        assert_eq!(run.peers, 3);
        for (v, big, slots) in &run.results {
            assert_eq!(v, &[3.0, 30.0, 3.0]);
            assert!((big - (3e9 + 3e-3)).abs() < 1e-5, "{big}");
            assert_eq!(slots, &[Some(vec![3.0, 3.0]), Some(vec![5.0; 3]), None]);
        }
        assert!(run.times.iter().all(|t| t.calls > 0 && t.reduced_bytes > 0));
    }

    #[test]
    fn a_failing_peer_stops_the_others_with_its_error() {
        let started = Instant::now();
        let e = run_peers::<Cpu, ()>(&[cpu(), cpu()], None, Duration::from_secs(600), |peer| {
            if peer.rank() == 1 {
                return Err(err("peer 1 broke"));
            }
            let mut v = vec![1.0];
            peer.sum(&mut v)
        })
        .unwrap_err();
        assert!(e.to_string().contains("peer 1 broke"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(60), "{:?}", started.elapsed());
        // the next collective in this process works
        let run = run_peers::<Cpu, _>(&[cpu(), cpu()], None, Duration::from_secs(60), |peer| {
            let mut v = vec![1.0];
            peer.sum(&mut v)?;
            Ok(v[0])
        })
        .unwrap();
        assert_eq!(run.results, [2.0, 2.0]);
    }

    #[test]
    fn one_device_runs_alone() {
        let run = run_peers::<Cpu, _>(&[cpu()], None, Duration::from_secs(1), |peer| {
            let mut v = vec![2.0];
            peer.sum(&mut v)?;
            Ok((peer.peers(), v[0], peer.owns(3)))
        })
        .unwrap();
        assert_eq!(run.results, [(1, 2.0, true)]);
        assert_eq!(run.times[0].calls, 0);
    }
}
