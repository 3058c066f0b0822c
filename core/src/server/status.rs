//! The server's counters, as `status` rules report them.
//!
//! Counts are per `Server`, that is per worker; the text and JSON forms say so.

use crate::time::{Now, Time};

/// What the server has done since it started.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Counters {
    /// When the server started.
    pub started: Time,
    /// Connections accepted.
    pub accepted: u64,
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

    /// The plain-text report.
    #[must_use]
    pub fn text(&self, open: usize, now: Now) -> String {
        let r = &self.responses;
        format!(
            "weir status (this worker)\nuptime_seconds: {}\nconnections_open: {open}\nconnections_accepted: {}\n\
             requests: {}\nresponses_1xx: {}\nresponses_2xx: {}\nresponses_3xx: {}\nresponses_4xx: {}\n\
             responses_5xx: {}\nbytes_sent: {}\n",
            now.mono.since(self.started).as_secs(),
            self.accepted,
            self.requests,
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            self.bytes_sent
        )
    }

    /// The JSON report.
    #[must_use]
    pub fn json(&self, open: usize, now: Now) -> String {
        let r = &self.responses;
        format!(
            "{{\"scope\":\"worker\",\"uptime_seconds\":{},\"connections_open\":{open},\"connections_accepted\":{},\
             \"requests\":{},\"responses\":{{\"1xx\":{},\"2xx\":{},\"3xx\":{},\"4xx\":{},\"5xx\":{}}},\"bytes_sent\":{}}}\n",
            now.mono.since(self.started).as_secs(),
            self.accepted,
            self.requests,
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            self.bytes_sent
        )
    }
}
