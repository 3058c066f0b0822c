//! The server's counters, as `status` rules report them.
//!
//! Each `Server` (a worker) counts for itself (`Counters`); a `status` rule answers for the
//! whole server: the core asks the shell (`Effect::Status`) for every worker's counters and
//! every service's state as last published (`ServerStatus`), then sums and renders them as
//! text, JSON or the Prometheus text format. Rendering is pure, so the same snapshot always
//! gives the same page.

use crate::time::{Now, Time, UnixTime};

/// What the server has done since it started.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Counters {
    /// When the server started.
    pub started: Time,
    /// Connections accepted (taken in: refused ones are not counted here).
    pub accepted: u64,
    /// Idle connections closed to make room for a new one at `limit connections=`.
    pub shed: u64,
    /// New connections answered 503 and closed at `limit connections=`, every connection
    /// being busy.
    pub refused: u64,
    /// Request heads received.
    pub requests: u64,
    /// Responses started, by status class (index 0 = 1xx … 4 = 5xx).
    pub responses: [u64; 5],
    /// Response bytes transmitted.
    pub bytes_sent: u64,
}

impl Counters {
    /// Counters starting at `now`.
    #[must_use]
    pub fn new(now: Now) -> Counters {
        Counters {
            started: now.mono,
            ..Counters::default()
        }
    }

    /// Counts a response with `status` (0 for one whose status weir does not see: an `nph-`
    /// script's, counted as a request only).
    pub fn response(&mut self, status: u16) {
        if let Some(c) = self
            .responses
            .get_mut(usize::from(status / 100).wrapping_sub(1))
        {
            *c += 1;
        }
    }
}

/// One worker's part of the whole server's status, as it last published it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct WorkerStatus {
    /// Its counters.
    pub counters: Counters,
    /// Connections open on it.
    pub open: usize,
    /// Requests in flight on each FastCGI service, by name (only those with some).
    pub in_flight: Vec<(String, u64)>,
}

/// A `spawn=` or `connect=` service, as its supervisor (if any) last published it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ServiceStatus {
    /// The service's name.
    pub name: String,
    /// `up`, `starting`, `backoff`, `given-up`, `stopped`, or `remote` for `connect=`.
    pub state: String,
    /// Each process: its state (as above) and its PID if it has one.
    pub processes: Vec<(String, Option<u32>)>,
    /// Processes started again after the first.
    pub restarts: u64,
}

/// The whole server's status: what a `status` rule answers (`Effect::Status`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ServerStatus {
    /// When the server started (wall clock).
    pub started: UnixTime,
    /// Access-log lines that could not be written (a full disk, say) since start-up.
    pub access_log_lost: u64,
    /// Every worker's part.
    pub workers: Vec<WorkerStatus>,
    /// Every service.
    pub services: Vec<ServiceStatus>,
}

/// The forms a status answer takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StatusFormat {
    /// `key: value` lines.
    Text,
    /// One JSON object.
    Json,
    /// The Prometheus text exposition format (version 0.0.4).
    Prometheus,
}

impl StatusFormat {
    /// The media type of the answer.
    #[must_use]
    pub fn media_type(self) -> &'static str {
        match self {
            StatusFormat::Text => "text/plain; charset=utf-8",
            StatusFormat::Json => "application/json",
            StatusFormat::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

/// Sums of every worker's counters.
struct Totals {
    accepted: u64,
    shed: u64,
    refused: u64,
    requests: u64,
    responses: [u64; 5],
    bytes_sent: u64,
    open: usize,
}

impl ServerStatus {
    fn totals(&self) -> Totals {
        let mut t = Totals {
            accepted: 0,
            shed: 0,
            refused: 0,
            requests: 0,
            responses: [0; 5],
            bytes_sent: 0,
            open: 0,
        };
        for w in &self.workers {
            t.accepted += w.counters.accepted;
            t.shed += w.counters.shed;
            t.refused += w.counters.refused;
            t.requests += w.counters.requests;
            for (sum, n) in t.responses.iter_mut().zip(w.counters.responses) {
                *sum += n;
            }
            t.bytes_sent += w.counters.bytes_sent;
            t.open += w.open;
        }
        t
    }

    fn in_flight(&self, service: &str) -> u64 {
        self.workers
            .iter()
            .flat_map(|w| &w.in_flight)
            .filter(|(s, _)| s == service)
            .map(|(_, n)| n)
            .sum()
    }

    fn uptime(&self, now: Now) -> u64 {
        u64::try_from(now.unix.0.saturating_sub(self.started.0)).unwrap_or(0)
    }

    /// The answer in `format`.
    #[must_use]
    pub fn render(&self, format: StatusFormat, now: Now) -> String {
        match format {
            StatusFormat::Text => self.text(now),
            StatusFormat::Json => self.json(now),
            StatusFormat::Prometheus => self.prometheus(now),
        }
    }

    fn text(&self, now: Now) -> String {
        use core::fmt::Write;
        let t = self.totals();
        let r = t.responses;
        let mut s = format!(
            "weir status (whole server)\nworkers: {}\nuptime_seconds: {}\nconnections_open: {}\n\
             connections_accepted: {}\nconnections_shed: {}\nconnections_refused: {}\n\
             requests: {}\nresponses_1xx: {}\nresponses_2xx: {}\nresponses_3xx: {}\n\
             responses_4xx: {}\nresponses_5xx: {}\nbytes_sent: {}\naccess_log_lines_lost: {}\n",
            self.workers.len(),
            self.uptime(now),
            t.open,
            t.accepted,
            t.shed,
            t.refused,
            t.requests,
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            t.bytes_sent,
            self.access_log_lost
        );
        for svc in &self.services {
            let pids: Vec<String> = svc
                .processes
                .iter()
                .map(|(st, pid)| pid.map_or_else(|| st.clone(), |p| format!("{p} {st}")))
                .collect();
            let _ = writeln!(
                s,
                "service {}: {}, processes [{}], restarts {}, in flight {}",
                svc.name,
                svc.state,
                pids.join(", "),
                svc.restarts,
                self.in_flight(&svc.name)
            );
        }
        s
    }

    fn json(&self, now: Now) -> String {
        let t = self.totals();
        let r = t.responses;
        let services: Vec<String> = self
            .services
            .iter()
            .map(|svc| {
                let procs: Vec<String> = svc
                    .processes
                    .iter()
                    .map(|(st, pid)| {
                        format!(
                            "{{\"state\":\"{}\",\"pid\":{}}}",
                            json_escape(st),
                            pid.map_or_else(|| "null".to_string(), |p| p.to_string())
                        )
                    })
                    .collect();
                format!(
                    "{{\"name\":\"{}\",\"state\":\"{}\",\"processes\":[{}],\"restarts\":{},\"in_flight\":{}}}",
                    json_escape(&svc.name),
                    json_escape(&svc.state),
                    procs.join(","),
                    svc.restarts,
                    self.in_flight(&svc.name)
                )
            })
            .collect();
        format!(
            "{{\"scope\":\"server\",\"workers\":{},\"uptime_seconds\":{},\"connections_open\":{},\
             \"connections_accepted\":{},\"connections_shed\":{},\"connections_refused\":{},\
             \"requests\":{},\"responses\":{{\"1xx\":{},\"2xx\":{},\"3xx\":{},\"4xx\":{},\
             \"5xx\":{}}},\"bytes_sent\":{},\"access_log_lines_lost\":{},\"services\":[{}]}}\n",
            self.workers.len(),
            self.uptime(now),
            t.open,
            t.accepted,
            t.shed,
            t.refused,
            t.requests,
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            t.bytes_sent,
            self.access_log_lost,
            services.join(",")
        )
    }

    fn prometheus(&self, now: Now) -> String {
        use core::fmt::Write;
        let t = self.totals();
        let mut s = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, u64)]| {
            let _ = writeln!(s, "# HELP weir_{name} {help}\n# TYPE weir_{name} {kind}");
            for (labels, v) in samples {
                let _ = writeln!(s, "weir_{name}{labels} {v}");
            }
        };
        let plain = |v: u64| vec![(String::new(), v)];
        metric(
            "workers",
            "gauge",
            "Worker threads.",
            &plain(self.workers.len() as u64),
        );
        metric(
            "uptime_seconds",
            "gauge",
            "Seconds since start.",
            &plain(self.uptime(now)),
        );
        metric(
            "connections_open",
            "gauge",
            "Client connections open.",
            &plain(t.open as u64),
        );
        metric(
            "connections_accepted_total",
            "counter",
            "Client connections accepted.",
            &plain(t.accepted),
        );
        metric(
            "connections_shed_total",
            "counter",
            "Idle connections closed to make room at the connection limit.",
            &plain(t.shed),
        );
        metric(
            "connections_refused_total",
            "counter",
            "New connections answered 503 at the connection limit.",
            &plain(t.refused),
        );
        metric(
            "requests_total",
            "counter",
            "Request heads received.",
            &plain(t.requests),
        );
        let classes: Vec<(String, u64)> = t
            .responses
            .iter()
            .enumerate()
            .map(|(i, n)| (format!("{{class=\"{}xx\"}}", i + 1), *n))
            .collect();
        metric(
            "responses_total",
            "counter",
            "Responses by status class.",
            &classes,
        );
        metric(
            "bytes_sent_total",
            "counter",
            "Response bytes sent.",
            &plain(t.bytes_sent),
        );
        metric(
            "access_log_lines_lost_total",
            "counter",
            "Access-log lines that could not be written.",
            &plain(self.access_log_lost),
        );
        let label = |svc: &ServiceStatus| format!("{{service=\"{}\"}}", prom_escape(&svc.name));
        let up: Vec<(String, u64)> = self
            .services
            .iter()
            .map(|svc| {
                (
                    label(svc),
                    u64::from(svc.state == "up" || svc.state == "remote"),
                )
            })
            .collect();
        metric(
            "service_up",
            "gauge",
            "1 if the service takes requests.",
            &up,
        );
        let states: Vec<(String, u64)> = self
            .services
            .iter()
            .flat_map(|svc| {
                ["up", "starting", "backoff", "given-up", "stopped", "remote"]
                    .into_iter()
                    .map(move |st| {
                        (
                            format!("{{service=\"{}\",state=\"{st}\"}}", prom_escape(&svc.name)),
                            u64::from(svc.state == st),
                        )
                    })
            })
            .collect();
        metric(
            "service_state",
            "gauge",
            "The service's state (1 for the current one).",
            &states,
        );
        let procs: Vec<(String, u64)> = self
            .services
            .iter()
            .map(|svc| {
                let live = svc.processes.iter().filter(|(_, p)| p.is_some()).count();
                (label(svc), live as u64)
            })
            .collect();
        metric("service_processes", "gauge", "Processes running.", &procs);
        let restarts: Vec<(String, u64)> = self
            .services
            .iter()
            .map(|svc| (label(svc), svc.restarts))
            .collect();
        metric(
            "service_restarts_total",
            "counter",
            "Processes started again.",
            &restarts,
        );
        let flight: Vec<(String, u64)> = self
            .services
            .iter()
            .map(|svc| (label(svc), self.in_flight(&svc.name)))
            .collect();
        metric(
            "service_requests_in_flight",
            "gauge",
            "Requests being answered.",
            &flight,
        );
        s
    }
}

fn json_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| match c {
            '"' => "\\\"".chars().collect::<Vec<_>>(),
            '\\' => "\\\\".chars().collect(),
            c if c.is_control() => format!("\\u{:04x}", c as u32).chars().collect(),
            c => vec![c],
        })
        .collect()
}

fn prom_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(name: &str) -> ServiceStatus {
        ServiceStatus {
            name: name.into(),
            state: "up".into(),
            processes: vec![("up".into(), Some(7))],
            restarts: 1,
        }
    }

    /// Each service's requests in flight are the sum of every worker's for that service,
    /// and no other's, in every format.
    #[test]
    fn json_strings_escape_quotes_backslashes_and_control_characters() {
        assert_eq!(
            json_escape("a\"b\\c\nd\u{1}e\u{7f}é"),
            "a\\\"b\\\\c\\u000ad\\u0001e\\u007fé"
        );
    }

    #[test]
    fn in_flight_is_summed_per_service_over_the_workers() {
        let worker = |in_flight: &[(&str, u64)]| WorkerStatus {
            in_flight: in_flight.iter().map(|(s, n)| ((*s).into(), *n)).collect(),
            ..WorkerStatus::default()
        };
        let status = ServerStatus {
            workers: vec![worker(&[("app", 2), ("php", 1)]), worker(&[("app", 3)])],
            services: vec![service("app"), service("php")],
            ..ServerStatus::default()
        };
        let now = Now::default();
        let text = status.render(StatusFormat::Text, now);
        assert!(text.contains("\nworkers: 2\n"), "{text}");
        assert!(
            text.contains("service app: up, processes [7 up], restarts 1, in flight 5\n"),
            "{text}"
        );
        assert!(text.contains("service php: up, processes [7 up], restarts 1, in flight 1\n"));
        let json = status.render(StatusFormat::Json, now);
        assert!(json.contains("\"name\":\"app\",") && json.contains("\"in_flight\":5}"));
        assert!(json.contains("\"name\":\"php\",") && json.contains("\"in_flight\":1}"));
    }

    /// Responses are counted by status class; a status weir does not see (0, an `nph-`
    /// script's) or outside 1xx–5xx is not counted.
    #[test]
    fn responses_are_counted_by_class() {
        let mut c = Counters::default();
        for status in [100, 200, 204, 301, 404, 410, 503, 0, 600, 99] {
            c.response(status);
        }
        assert_eq!(c.responses, [1, 2, 1, 2, 1]);
    }

    /// The Prometheus form: a HELP and TYPE line for each metric, its samples with their
    /// labels (names escaped), every service's sums over the workers.
    #[test]
    fn prometheus_exposition_names_every_metric_and_sample() {
        let counters = Counters {
            accepted: 11,
            shed: 1,
            refused: 2,
            requests: 9,
            responses: [0, 6, 1, 2, 0],
            bytes_sent: 1000,
            ..Counters::default()
        };
        let worker = WorkerStatus {
            counters,
            open: 3,
            in_flight: [("app".into(), 2)].into_iter().collect(),
        };
        let status = ServerStatus {
            workers: vec![worker.clone(), worker],
            services: vec![
                service("app"),
                service("a\"b"),
                ServiceStatus {
                    state: "remote".into(),
                    ..service("far")
                },
                ServiceStatus {
                    state: "backoff".into(),
                    ..service("down")
                },
            ],
            ..ServerStatus::default()
        };
        let text = status.render(StatusFormat::Prometheus, Now::default());
        for line in [
            "# HELP weir_workers Worker threads.\n# TYPE weir_workers gauge\nweir_workers 2\n",
            "\nweir_connections_open 6\n",
            "\nweir_requests_total 18\n",
            "\nweir_connections_accepted_total 22\n",
            "\nweir_connections_shed_total 2\n",
            "\nweir_connections_refused_total 4\n",
            "\nweir_bytes_sent_total 2000\n",
            "\n# TYPE weir_responses_total counter\n",
            "\nweir_responses_total{class=\"2xx\"} 12\n",
            "\nweir_responses_total{class=\"4xx\"} 4\n",
            "\nweir_service_up{service=\"app\"} 1\n",
            "\nweir_service_up{service=\"a\\\"b\"} 1\n",
            "\nweir_service_up{service=\"far\"} 1\n",
            "\nweir_service_up{service=\"down\"} 0\n",
            "\nweir_service_state{service=\"app\",state=\"up\"} 1\n",
            "\nweir_service_state{service=\"app\",state=\"backoff\"} 0\n",
            "\nweir_service_restarts_total{service=\"app\"} 1\n",
            "\nweir_service_requests_in_flight{service=\"app\"} 4\n",
        ] {
            assert!(text.contains(line), "{line:?} not in:\n{text}");
        }
    }

    /// Uptime is the wall clock since start-up, in seconds (0 if the clock went back).
    #[test]
    fn uptime_is_seconds_since_start_up() {
        let status = ServerStatus {
            started: UnixTime(1_000),
            ..ServerStatus::default()
        };
        let at = |unix| Now {
            unix: UnixTime(unix),
            ..Now::default()
        };
        let text = status.render(StatusFormat::Text, at(1_061));
        assert!(text.contains("\nuptime_seconds: 61\n"), "{text}");
        let text = status.render(StatusFormat::Text, at(900));
        assert!(text.contains("\nuptime_seconds: 0\n"), "{text}");
    }
}
