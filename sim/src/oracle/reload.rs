//! The generation checker: with reloads, each response is judged against the
//! configuration its request started under, and never shows two.
//!
//! # Theory of operation
//!
//! In a run with reloads (`Options::reload_every_ms`) the world hands the core generation
//! `g` of the site (`workload::generation`) at random moments, `Input::Reload`, g = 2, 3, …
//! Every generation says which it is in each response it routes: `X-Gen: g` (a header rule
//! decided when the request is routed, at its head), the media type of a `.sim` or `.txt`
//! file, `text/x-gen{g}` (decided when its `Open` completes, later), and, for even g, a 410 for
//! `workload::GEN_REFUSED` (decided at the head). The README's rule is that a request
//! keeps the configuration it *started* under — its head parsed — to its end.
//!
//! ## When a request starts, as a shell can see it
//!
//! The core parses a head in the call that delivers its last byte, unless the request
//! before it on the connection is still being answered: its bytes then wait in the
//! connection's buffer and are parsed in whichever call ends the previous response inside
//! the core (its last bytes queued, not yet sent) — a file's `Completed`, a script's
//! output, a `Sent` — which no shell can tell from outside. So the rule this checker
//! applies, per request, is:
//!
//! * `lo` = the generation in force when its head's last byte was delivered (a request
//!   cannot start before its head is whole; generations only grow);
//! * if every earlier request on the connection had been answered *whole, as the client
//!   saw it*, at that moment, and the one just before was not a script's, the core had
//!   ended those responses, so the request started in that very call: its generation is
//!   exactly `lo` (`Entry::gen_exact`). (A script's answer with a `Content-Length` can
//!   reach its client whole before the core ends it, when the script's output ends: seed
//!   420 showed a request pipelined behind one start under the generation after `lo`);
//! * otherwise (pipelined behind an unfinished answer) it started at some call between
//!   then and the moment its answer reached the client: any generation from `lo` to the
//!   one in force when the answer is read is allowed;
//! * on one connection, requests start in order, so the generations answers show never
//!   go down.
//!
//! The response must then be wholly that generation's: the generation its `X-Gen` field
//! names must lie in the window, and the rest of the response (the 410, the media type,
//! every other rule) is judged by the reference model against *that* generation's site.
//! A response without `X-Gen` is judged against generation `lo`'s site (whose model
//! expects the field wherever a header rule applies). A request moved to another
//! generation in flight (the planted bug `reload-in-flight`) shows the `X-Gen` of one and
//! the media type of the other, which no single generation's model allows.
//!
//! Without reloads there is one generation, 1, and this checker is the identity.

use std::collections::BTreeMap;

use super::ledger::Entry;
use super::model::Site;
use weir_testkit::response::Response;

/// Every generation's site, and the one in force.
#[derive(Debug)]
pub struct Generations {
    sites: BTreeMap<u64, Site>,
    current: u64,
}

impl Generations {
    /// Generation 1 only.
    #[must_use]
    pub fn new(site: Site) -> Generations {
        Generations {
            sites: BTreeMap::from([(1, site)]),
            current: 1,
        }
    }

    /// The generation in force.
    #[must_use]
    pub fn current(&self) -> u64 {
        self.current
    }

    /// Generation `g`'s site (the newest if `g` was never loaded).
    #[must_use]
    pub fn site(&self, g: u64) -> &Site {
        self.sites
            .get(&g)
            .unwrap_or_else(|| &self.sites[&self.current])
    }

    /// Generation `g` (the next one) takes over.
    pub fn reload(&mut self, g: u64, site: Site) {
        self.sites.insert(g, site);
        self.current = g;
    }

    /// The site `r`, the answer to `e`, must be judged against, after checking that the
    /// generation it shows is one `e` can have started under. `seen` is the highest
    /// generation an earlier answer on the same connection showed.
    pub fn site_for(&self, e: &Entry, r: &Response, seen: &mut u64) -> Result<&Site, String> {
        let shown: Vec<&str> = r.fields_named("x-gen").collect();
        let lo = e.gen.max(1);
        let g = match shown.as_slice() {
            [] => return Ok(&self.sites[&lo.min(self.current)]),
            [one] => one
                .parse::<u64>()
                .map_err(|_| format!("X-Gen: {one} is no generation"))?,
            _ => return Err(format!("{} X-Gen fields", shown.len())),
        };
        let hi = if e.gen_exact { lo } else { self.current };
        if g < lo || g > hi {
            return Err(if e.gen_exact {
                format!(
                    "X-Gen: {g}, but the request started under generation {lo} (its head \
                     arrived then, with every earlier answer on its connection complete)"
                )
            } else {
                format!(
                    "X-Gen: {g}, but the request started under a generation from {lo} (its \
                     head arrived then) to {hi} (in force as its answer arrived)"
                )
            });
        }
        if g < *seen {
            return Err(format!(
                "X-Gen: {g} after an earlier answer on the connection showed {seen}: \
                 requests start in order"
            ));
        }
        *seen = g;
        self.sites
            .get(&g)
            .ok_or_else(|| format!("X-Gen: {g}, a generation never loaded"))
    }
}
