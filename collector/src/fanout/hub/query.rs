//! The questions the hub answers: snapshots of its state for the API, built from the hub's own
//! fields and sent on the asker's reply channel. The hub never waits for the asker: an answer
//! nobody waits for any more is dropped.

use crate::alerts::Active;
use crate::api::views::{
    ClientView, ClientsView, FilesystemView, HostMetrics, HostView, MetricsView, StatsView,
};

use super::{Event, Host, Hub};

/// A question to the hub, with the channel its answer goes to.
pub enum Query {
    /// Snapshot of every host.
    Hosts {
        /// Where to send it.
        reply: async_channel::Sender<Vec<HostView>>,
    },
    /// One host, if known.
    Host {
        /// Its id.
        id: String,
        /// Where to send it.
        reply: async_channel::Sender<Option<HostView>>,
    },
    /// The collector's counters.
    Stats {
        /// Where to send them.
        reply: async_channel::Sender<StatsView>,
    },
    /// Connected agents and subscribers.
    Clients {
        /// Where to send them.
        reply: async_channel::Sender<ClientsView>,
    },
    /// Alerts firing now.
    Alerts {
        /// Where to send them.
        reply: async_channel::Sender<Vec<Active>>,
    },
    /// Snapshot for `/metrics`.
    Metrics {
        /// Where to send it.
        reply: async_channel::Sender<MetricsView>,
    },
    /// One host's snapshot for `/metrics?host=ID`; `None` for an unknown host.
    HostMetrics {
        /// The host id.
        id: String,
        /// Where to send it.
        reply: async_channel::Sender<Option<HostMetrics>>,
    },
}

impl From<Query> for Event {
    fn from(query: Query) -> Self {
        Event::Query(query)
    }
}

impl Hub {
    /// Answers a question. The asker may have timed out; it then no longer needs the answer.
    pub(super) fn answer(&self, query: Query) {
        match query {
            Query::Hosts { reply } => {
                let _ = reply.try_send(self.host_views());
            }
            Query::Host { id, reply } => {
                let _ = reply.try_send(self.hosts.get(&id).map(|host| self.view(&id, host)));
            }
            Query::Stats { reply } => {
                let _ = reply.try_send(self.stats());
            }
            Query::Clients { reply } => {
                let _ = reply.try_send(self.clients());
            }
            Query::Alerts { reply } => {
                let _ = reply.try_send(self.alerts.active(|host, rule| self.silenced(host, rule)));
            }
            Query::Metrics { reply } => {
                let _ = reply.try_send(self.metrics_view());
            }
            Query::HostMetrics { id, reply } => {
                let _ = reply.try_send(self.hosts.get(&id).map(|host| host_metrics(&id, host)));
            }
        }
    }

    fn host_views(&self) -> Vec<HostView> {
        let mut views: Vec<HostView> =
            self.hosts.iter().map(|(id, host)| self.view(id, host)).collect();
        views.sort_by(|a, b| a.hostname.cmp(&b.hostname).then_with(|| a.id.cmp(&b.id)));
        views
    }

    fn view(&self, id: &str, host: &Host) -> HostView {
        HostView {
            id: id.to_owned(),
            hostname: host.hello.hostname.clone(),
            status: host.status,
            last_seen: host.last_seen_ms,
            connected_since: host.connected_since_ms,
            os: host.hello.os.clone(),
            kernel: host.hello.kernel.clone(),
            arch: host.hello.arch.clone(),
            cpu_model: host.hello.cpu_model.clone(),
            cpu_cores: host.hello.cpu_cores,
            memory_total_bytes: host.hello.memory_total_bytes,
            agent_version: host.hello.agent_version.clone(),
            interval_ms: host.hello.interval_ms,
            dropped_samples: host.dropped_total,
            is_self: self.self_host.as_deref() == Some(id),
            latest: host.latest.clone(),
            filesystems: host
                .latest_sample
                .iter()
                .flat_map(|sample| &sample.filesystems)
                .map(FilesystemView::of)
                .collect(),
        }
    }

    fn stats(&self) -> StatsView {
        let seconds = self.per_second.len().max(1) as f64;
        StatsView {
            agents_connected: self.agents.len(),
            subscribers: self.subscribers.len(),
            samples_total: self.samples_total,
            samples_per_second: self.per_second.iter().sum::<u64>() as f64 / seconds,
            hosts: self.hosts.len(),
            subscribers_lagged_total: self.lagged_total,
            uptime_seconds: self.started.elapsed().as_secs(),
            alerts_firing: self.alerts.firing(),
        }
    }

    fn metrics_view(&self) -> MetricsView {
        let mut hosts: Vec<HostMetrics> =
            self.hosts.iter().map(|(id, host)| host_metrics(id, host)).collect();
        hosts.sort_by(|a, b| a.id.cmp(&b.id));
        MetricsView { hosts, stats: self.stats() }
    }

    fn clients(&self) -> ClientsView {
        let agents = self
            .agents
            .values()
            .map(|a| ClientView {
                addr: a.addr.clone(),
                since: a.since_ms,
                host: Some(a.host_id.clone()),
                transport: if a.addr == crate::selfmon::ADDR { "in-process" } else { "websocket" },
                count: self.hosts.get(&a.host_id).map_or(0, |h| h.samples),
            })
            .collect();
        let subscribers = self
            .subscribers
            .values()
            .map(|s| ClientView {
                addr: s.addr.clone(),
                since: s.since_ms,
                host: None,
                transport: s.transport,
                count: s.sent,
            })
            .collect();
        ClientsView { agents, subscribers }
    }
}

/// One host as `/metrics` exports it.
fn host_metrics(id: &str, host: &Host) -> HostMetrics {
    HostMetrics {
        id: id.to_owned(),
        hostname: host.hello.hostname.clone(),
        status: host.status,
        last_seen_ms: host.last_seen_ms,
        boot_time_seconds: host.hello.boot_time_seconds,
        kernel: host.hello.kernel.clone(),
        kernel_build: host.hello.kernel_build.clone(),
        arch: host.hello.arch.clone(),
        dropped_samples: host.dropped_total,
        sample: host.latest_sample.clone(),
        point: host.latest.clone(),
    }
}
