//! The game: rooms, players and what each player sees, as a pure state machine.
//!
//! # Theory of operation
//!
//! The world owns no clock and no randomness: every call that can depend on time takes
//! `now` (the shell's monotonic milliseconds, [`Time`]), and a login takes the player's
//! [`Token`] (128 random bits the shell drew). So the same calls always give the same
//! world, and the tests below drive it with plain numbers.
//!
//! ```text
//!   login(name, token, now) ──► a player in the start room ─┬─ command(line, now) ─┐
//!                                   │         ▲              │                      │
//!                                   │         └──────────────┘                      │
//!                                   │  touch(now): a request or a long poll         │
//!                                   ▼                                               ▼
//!               handle_timeout(now): idle for idle_timeout ──► gone ◄──────── quit
//! ```
//!
//! # Events and who sees them
//!
//! Everything that others notice (an arrival, a departure, a `say` line) is an [`Event`]
//! in one log. Events carry one sequence number across the whole world, not one per room,
//! so that a client's `after=N` keeps its meaning when its player changes rooms. Each event
//! records its *audience* when it happens: the players then in the room, the actor
//! excepted (the actor's own view comes back as the command's reply). A player sees an
//! event if and only if it was in the audience, so moving on never shows old talk of the
//! new room nor hides what was said before leaving, and a player who logs out and in again
//! (a new [`PlayerId`], even under the same name) sees nothing said to the old one.
//!
//! The log keeps the last `log_max` events; a client that falls further behind misses the
//! oldest. Whoever is in the audience of a new event, and a player who leaves the game, is
//! *woken*: [`World::poll_woken`] names them so the shell can answer their parked long
//! polls at once (a departed player's polls are answered "not logged in").
//!
//! # Idle players
//!
//! Every request of a player (and every long poll, parked or answered) *touches* it. A
//! player untouched for `idle_timeout` is logged out by [`World::handle_timeout`], which
//! tells the room. [`World::poll_timeout`] is the earliest such deadline; a B-tree of
//! `(last touched, player)` keeps it cheap with many players.
//!
//! # Names and text
//!
//! A name is 1 to [`NAME_LEN_MAX`] ASCII letters or digits, unique without regard to case
//! (`Alice` and `alice` cannot both play, so neither can pose as the other). What players
//! say has its control characters turned into spaces, so a line of the event stream is
//! always one line, and is cut at [`SAY_CHARS_MAX`] characters.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::{self, Write as _};
use std::time::Duration;

use weir_core::Time;

/// The longest player name, in characters (ASCII letters and digits only).
pub const NAME_LEN_MAX: usize = 16;

/// The longest thing a player can say, in characters.
pub const SAY_CHARS_MAX: usize = 280;

/// Events kept in the log by default.
pub const LOG_MAX: usize = 1024;

/// How long a player may do nothing (no request, no poll) before being logged out.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// The commands, as the reply to `help` and to what is not understood.
const HELP: &str =
    "Commands: look, go north|south|east|west (or n, s, e, w), say TEXT (or 'TEXT), who, quit.";

/// One player for the life of one login (a counter, never reused).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PlayerId(u64);

/// A player's secret: 128 bits the shell drew, written as 32 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Token([u8; 16]);

impl Token {
    /// The token made of these random bytes.
    #[must_use]
    pub fn from_bytes(bytes: [u8; 16]) -> Token {
        Token(bytes)
    }

    /// The token written as `s` (32 hex digits, either case), or `None`.
    #[must_use]
    pub fn parse(s: &[u8]) -> Option<Token> {
        if s.len() != 32 {
            return None;
        }
        let mut bytes = [0u8; 16];
        for (b, pair) in bytes.iter_mut().zip(s.chunks_exact(2)) {
            let hi = char::from(pair[0]).to_digit(16)?;
            let lo = char::from(pair[1]).to_digit(16)?;
            // unwrap-free: two hex digits make at most 255.
            *b = (hi * 16 + lo) as u8;
        }
        Some(Token(bytes))
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// Secrets stay out of debug output and logs.
impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(…)")
    }
}

/// A direction of travel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Dir {
    /// North (`n`).
    North,
    /// South (`s`).
    South,
    /// East (`e`).
    East,
    /// West (`w`).
    West,
}

impl Dir {
    const ALL: [Dir; 4] = [Dir::North, Dir::South, Dir::East, Dir::West];

    /// The direction a word names (`north` or `n`, in any case).
    #[must_use]
    pub fn parse(word: &str) -> Option<Dir> {
        Some(match word.to_ascii_lowercase().as_str() {
            "n" | "north" => Dir::North,
            "s" | "south" => Dir::South,
            "e" | "east" => Dir::East,
            "w" | "west" => Dir::West,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Dir::North => "north",
            Dir::South => "south",
            Dir::East => "east",
            Dir::West => "west",
        }
    }

    fn opposite(self) -> Dir {
        match self {
            Dir::North => Dir::South,
            Dir::South => Dir::North,
            Dir::East => Dir::West,
            Dir::West => Dir::East,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A room: an index into the map.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RoomId(usize);

/// Where every player starts.
pub const START: RoomId = RoomId(0);

struct Room {
    name: &'static str,
    description: &'static str,
    /// By [`Dir::index`]: north, south, east, west.
    exits: [Option<RoomId>; 4],
}

/// The map. Every exit leads back the opposite way (a test checks it), so an arrival can
/// say where the player came from.
///
/// ```text
///                 Great Hall (2)
///                      |
///   Weir (5)           |
///      |               |
///   Garden (4) ──── Mill Yard (1) ──── Mill (3)
///                      |
///                 Gatehouse (0)  ◄── start
/// ```
const ROOMS: [Room; 6] = [
    Room {
        name: "Gatehouse",
        description: "You stand in the gatehouse of the old mill, out of the wind. Rain \
                      drums on the slates. A passage leads north into the yard.",
        exits: [Some(RoomId(1)), None, None, None],
    },
    Room {
        name: "Mill Yard",
        description: "A cobbled yard, slick with spray. The mill rises to the east, a \
                      walled garden lies to the west, and the doors of the great hall \
                      stand open to the north. The gatehouse is south.",
        exits: [
            Some(RoomId(2)),
            Some(RoomId(0)),
            Some(RoomId(3)),
            Some(RoomId(4)),
        ],
    },
    Room {
        name: "Great Hall",
        description: "A long hall with a cold hearth and a table scarred by knives. Old \
                      maps of the river hang on the walls.",
        exits: [None, Some(RoomId(1)), None, None],
    },
    Room {
        name: "Mill",
        description: "The wheel groans as the race pours through it and the floor \
                      shivers under your feet. Flour dust hangs in the air.",
        exits: [None, None, None, Some(RoomId(1))],
    },
    Room {
        name: "Garden",
        description: "A walled garden gone to seed: nettles, leeks, a leaning sundial. \
                      A gate in the north wall opens onto the riverbank.",
        exits: [Some(RoomId(5)), None, Some(RoomId(1)), None],
    },
    Room {
        name: "Weir",
        description: "You stand on the weir itself. The river slides over the stone lip \
                      in one smooth sheet and breaks white below. The garden gate is \
                      south.",
        exits: [None, Some(RoomId(4)), None, None],
    },
];

fn room(id: RoomId) -> &'static Room {
    // unwrap-free: RoomIds are made only from the map's own exits and START.
    &ROOMS[id.0]
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Player {
    name: String,
    token: Token,
    room: RoomId,
    /// When the player last made a request or polled.
    touched: Time,
}

/// Something players noticed.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Event {
    /// Its place in the world's one sequence (the first event is 1).
    pub seq: u64,
    /// What it says, one line.
    pub text: String,
    /// Who saw it happen.
    audience: BTreeSet<PlayerId>,
}

/// Why a login failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LoginError {
    /// Not 1 to [`NAME_LEN_MAX`] ASCII letters or digits.
    BadName,
    /// Someone plays under this name (in any case).
    NameTaken,
    /// The token belongs to another player: the shell's random source repeated itself.
    TokenTaken,
}

/// The answer to a command.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reply {
    /// What the player reads.
    pub text: String,
    /// The command ended the player's game (`quit`).
    pub quit: bool,
}

impl Reply {
    fn text(text: impl Into<String>) -> Reply {
        Reply {
            text: text.into(),
            quit: false,
        }
    }
}

/// The whole world (see the module documentation).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct World {
    players: BTreeMap<PlayerId, Player>,
    /// Names in lowercase.
    names: BTreeMap<String, PlayerId>,
    tokens: BTreeMap<Token, PlayerId>,
    /// Who is in each room, by [`RoomId`]: an event's audience without a scan of everyone.
    here: Vec<BTreeSet<PlayerId>>,
    /// `(touched, player)` for every player, earliest first.
    idle: BTreeSet<(Time, PlayerId)>,
    log: VecDeque<Event>,
    /// The last sequence number given out (0: none yet).
    seq: u64,
    next_player: u64,
    woken: BTreeSet<PlayerId>,
    idle_timeout: Duration,
    log_max: usize,
}

impl Default for World {
    fn default() -> World {
        World::new(IDLE_TIMEOUT, LOG_MAX)
    }
}

impl World {
    /// An empty world that logs out players idle for `idle_timeout` and keeps the last
    /// `log_max` events (at least one).
    #[must_use]
    pub fn new(idle_timeout: Duration, log_max: usize) -> World {
        World {
            players: BTreeMap::new(),
            names: BTreeMap::new(),
            tokens: BTreeMap::new(),
            here: vec![BTreeSet::new(); ROOMS.len()],
            idle: BTreeSet::new(),
            log: VecDeque::new(),
            seq: 0,
            next_player: 0,
            woken: BTreeSet::new(),
            idle_timeout,
            log_max: log_max.max(1),
        }
    }

    /// Logs in a player called `name` with this token, in the start room; the reply is the
    /// room as the player sees it. Those already there see the arrival.
    pub fn login(
        &mut self,
        name: &str,
        token: Token,
        now: Time,
    ) -> Result<(PlayerId, String), LoginError> {
        let valid = (1..=NAME_LEN_MAX).contains(&name.len())
            && name.bytes().all(|b| b.is_ascii_alphanumeric());
        if !valid {
            return Err(LoginError::BadName);
        }
        let key = name.to_ascii_lowercase();
        if self.names.contains_key(&key) {
            return Err(LoginError::NameTaken);
        }
        if self.tokens.contains_key(&token) {
            return Err(LoginError::TokenTaken);
        }
        let id = PlayerId(self.next_player);
        self.next_player += 1;
        self.emit(START, id, format!("{name} arrives, shaking off the rain."));
        self.players.insert(
            id,
            Player {
                name: name.to_owned(),
                token,
                room: START,
                touched: now,
            },
        );
        self.names.insert(key, id);
        self.tokens.insert(token, id);
        self.here[START.0].insert(id);
        self.idle.insert((now, id));
        Ok((id, format!("Welcome, {name}.\n\n{}", self.look(id))))
    }

    /// The player holding this token, if one plays.
    #[must_use]
    pub fn player(&self, token: &Token) -> Option<PlayerId> {
        self.tokens.get(token).copied()
    }

    /// Whether the player still plays.
    #[must_use]
    pub fn is_playing(&self, player: PlayerId) -> bool {
        self.players.contains_key(&player)
    }

    /// The player's name, if it still plays.
    #[must_use]
    pub fn name(&self, player: PlayerId) -> Option<&str> {
        self.players.get(&player).map(|p| p.name.as_str())
    }

    /// Notes that the player did something now (a request, or a long poll parked or
    /// answered), which puts off its idle logout. Nothing happens for one no longer
    /// playing.
    pub fn touch(&mut self, player: PlayerId, now: Time) {
        let Some(p) = self.players.get_mut(&player) else {
            return;
        };
        self.idle.remove(&(p.touched, player));
        p.touched = p.touched.max(now);
        self.idle.insert((p.touched, player));
    }

    /// Runs one command line for the player and touches it.
    ///
    /// # Panics
    ///
    /// If the player does not play (the caller looked it up by token in this same turn).
    pub fn command(&mut self, player: PlayerId, line: &str, now: Time) -> Reply {
        assert!(
            self.is_playing(player),
            "a command for {player:?}, who does not play"
        );
        self.touch(player, now);
        let line = line.trim();
        if let Some(text) = line.strip_prefix('\'') {
            return self.say(player, text);
        }
        let (verb, rest) = match line.split_once(char::is_whitespace) {
            Some((verb, rest)) => (verb, rest.trim()),
            None => (line, ""),
        };
        let verb = verb.to_ascii_lowercase();
        if let (Some(dir), "") = (Dir::parse(&verb), rest) {
            return self.go(player, dir);
        }
        match (verb.as_str(), rest) {
            ("look" | "l", "") => Reply::text(self.look(player)),
            ("go", dir) => match Dir::parse(dir) {
                Some(dir) => self.go(player, dir),
                None => Reply::text("Go where? North, south, east or west."),
            },
            ("say", text) => self.say(player, text),
            ("who", "") => Reply::text(self.who()),
            ("quit", "") => {
                let name = self.players[&player].name.clone();
                self.leave(player, format!("{name} leaves the game."));
                Reply {
                    text: format!("Goodbye, {name}."),
                    quit: true,
                }
            }
            ("help" | "?", _) => Reply::text(HELP),
            ("", "") => Reply::text(HELP),
            _ => Reply::text(format!("I don't understand \"{}\". {HELP}", clean(line))),
        }
    }

    /// The events the player saw with a sequence number above `after`, oldest first.
    pub fn events_after(&self, player: PlayerId, after: u64) -> impl Iterator<Item = &Event> {
        let start = self.log.partition_point(|e| e.seq <= after);
        self.log
            .range(start..)
            .filter(move |e| e.audience.contains(&player))
    }

    /// The last sequence number given out (0 before the first event).
    #[must_use]
    pub fn last_seq(&self) -> u64 {
        self.seq
    }

    /// The next player to wake: one in the audience of an event since the last call, or
    /// one that left the game. Drain it to `None` after every call that changes the world.
    #[must_use]
    pub fn poll_woken(&mut self) -> Option<PlayerId> {
        self.woken.pop_first()
    }

    /// When the next idle player is due to be logged out, if anyone plays.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Time> {
        self.idle
            .first()
            .map(|&(touched, _)| touched.after(self.idle_timeout))
    }

    /// Logs out every player idle for `idle_timeout` or longer by `now`. Calling it early
    /// is harmless.
    pub fn handle_timeout(&mut self, now: Time) {
        while let Some(&(touched, player)) = self.idle.first() {
            if touched.after(self.idle_timeout) > now {
                break;
            }
            let name = &self.players[&player].name;
            let text = format!("{name} falls asleep and fades away.");
            self.leave(player, text);
        }
    }

    /// The player's room, as the player sees it.
    fn look(&self, player: PlayerId) -> String {
        let here = self.players[&player].room;
        let r = room(here);
        let mut out = format!("{}\n{}\n", r.name, r.description);
        let exits: Vec<&str> = Dir::ALL
            .iter()
            .filter(|d| r.exits[d.index()].is_some())
            .map(|d| d.name())
            .collect();
        // unwrap-free (both writes): writing to a String cannot fail.
        writeln!(out, "Exits: {}.", exits.join(", ")).expect("a String");
        let others: Vec<&str> = self.here[here.0]
            .iter()
            .filter(|&&id| id != player)
            .map(|id| self.players[id].name.as_str())
            .collect();
        if others.is_empty() {
            out.push_str("You are alone here.");
        } else {
            write!(out, "Here: {}.", others.join(", ")).expect("a String");
        }
        out
    }

    fn go(&mut self, player: PlayerId, dir: Dir) -> Reply {
        let from = self.players[&player].room;
        let Some(to) = room(from).exits[dir.index()] else {
            return Reply::text("You can't go that way.");
        };
        let name = self.players[&player].name.clone();
        self.emit(from, player, format!("{name} leaves {}.", dir.name()));
        self.emit(
            to,
            player,
            format!("{name} arrives from the {}.", dir.opposite().name()),
        );
        // unwrap-free: the caller checked the player plays.
        self.players.get_mut(&player).expect("playing").room = to;
        self.here[from.0].remove(&player);
        self.here[to.0].insert(player);
        Reply::text(self.look(player))
    }

    fn say(&mut self, player: PlayerId, text: &str) -> Reply {
        let text: String = clean(text).chars().take(SAY_CHARS_MAX).collect();
        let text = text.trim();
        if text.is_empty() {
            return Reply::text("Say what?");
        }
        let p = &self.players[&player];
        let (room, line) = (p.room, format!("{} says: {text}", p.name));
        self.emit(room, player, line);
        Reply::text(format!("You say: {text}"))
    }

    fn who(&self) -> String {
        let mut out = match self.players.len() {
            1 => "1 player:".to_owned(),
            n => format!("{n} players:"),
        };
        for p in self.players.values() {
            // unwrap-free: writing to a String cannot fail.
            write!(out, "\n  {} ({})", p.name, room(p.room).name).expect("a String");
        }
        out
    }

    /// Takes the player out of the game, telling the others in its room with `text`.
    fn leave(&mut self, player: PlayerId, text: String) {
        // unwrap-free: callers pass a player they found playing.
        let p = self.players.remove(&player).expect("playing");
        self.names.remove(&p.name.to_ascii_lowercase());
        self.tokens.remove(&p.token);
        self.here[p.room.0].remove(&player);
        self.idle.remove(&(p.touched, player));
        self.emit(p.room, player, text);
        self.woken.insert(player);
    }

    /// Logs an event seen by everyone in `room` but `actor`, and wakes them.
    fn emit(&mut self, room: RoomId, actor: PlayerId, text: String) {
        let mut audience = self.here[room.0].clone();
        audience.remove(&actor);
        self.seq += 1;
        self.woken.extend(&audience);
        self.log.push_back(Event {
            seq: self.seq,
            text,
            audience,
        });
        if self.log.len() > self.log_max {
            self.log.pop_front();
        }
    }
}

/// `s` with every control character (line breaks included) turned into a space.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(n: u8) -> Token {
        Token::from_bytes([n; 16])
    }

    /// The texts of the events `p` saw after `after`.
    fn seen(w: &World, p: PlayerId, after: u64) -> Vec<&str> {
        w.events_after(p, after).map(|e| e.text.as_str()).collect()
    }

    fn woken(w: &mut World) -> Vec<PlayerId> {
        std::iter::from_fn(|| w.poll_woken()).collect()
    }

    /// A world with alice, bob and carol logged in at times 0, 1 and 2, in that order.
    fn three() -> (World, [PlayerId; 3]) {
        let mut w = World::default();
        let a = w.login("alice", token(1), Time(0)).unwrap().0;
        let b = w.login("bob", token(2), Time(1)).unwrap().0;
        let c = w.login("carol", token(3), Time(2)).unwrap().0;
        (w, [a, b, c])
    }

    #[test]
    fn every_exit_leads_back_the_opposite_way() {
        for (i, r) in ROOMS.iter().enumerate() {
            for d in Dir::ALL {
                if let Some(to) = r.exits[d.index()] {
                    assert_eq!(
                        room(to).exits[d.opposite().index()],
                        Some(RoomId(i)),
                        "{} {} leads to {} but not back",
                        r.name,
                        d.name(),
                        room(to).name
                    );
                }
            }
        }
    }

    #[test]
    fn every_room_can_be_reached_from_the_start() {
        let mut reached = BTreeSet::from([START]);
        let mut todo = vec![START];
        while let Some(r) = todo.pop() {
            for to in room(r).exits.into_iter().flatten() {
                if reached.insert(to) {
                    todo.push(to);
                }
            }
        }
        assert_eq!(reached.len(), ROOMS.len());
    }

    #[test]
    fn tokens_are_32_hex_digits_both_ways() {
        let t = Token::from_bytes([
            0, 1, 0xab, 0xff, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 0x7f,
        ]);
        let s = t.to_string();
        assert_eq!(s, "0001abff090a0b0c0d0e0f101112137f");
        assert_eq!(Token::parse(s.as_bytes()), Some(t));
        assert_eq!(Token::parse(s.to_uppercase().as_bytes()), Some(t));
        assert_eq!(Token::parse(&s.as_bytes()[1..]), None);
        assert_eq!(Token::parse(b"0001abff090a0b0c0d0e0f101112137g"), None);
        assert_eq!(Token::parse(b"+001abff090a0b0c0d0e0f101112137f"), None);
        assert_eq!(
            format!("{t:?}"),
            "Token(…)",
            "debug output hides the secret"
        );
    }

    #[test]
    fn login_shows_the_start_room_and_who_is_there() {
        let mut w = World::default();
        let (a, text) = w.login("alice", token(1), Time(0)).unwrap();
        assert!(text.starts_with("Welcome, alice.\n\nGatehouse\n"), "{text}");
        assert!(text.contains("Exits: north."), "{text}");
        assert!(text.ends_with("You are alone here."), "{text}");
        let (_, text) = w.login("Bob", token(2), Time(0)).unwrap();
        assert!(text.ends_with("Here: alice."), "{text}");
        assert_eq!(seen(&w, a, 0), ["Bob arrives, shaking off the rain."]);
        assert_eq!(w.player(&token(1)), Some(a));
        assert_eq!(w.player(&token(9)), None);
    }

    #[test]
    fn login_refuses_bad_and_taken_names_and_repeated_tokens() {
        let mut w = World::default();
        for bad in ["", "al ice", "alice!", "ålice", "a234567890123456x", "a\nb"] {
            assert_eq!(
                w.login(bad, token(1), Time(0)),
                Err(LoginError::BadName),
                "{bad:?}"
            );
        }
        w.login("a234567890123456", token(1), Time(0)).unwrap();
        w.login("alice", token(2), Time(0)).unwrap();
        assert_eq!(
            w.login("ALICE", token(3), Time(0)),
            Err(LoginError::NameTaken)
        );
        assert_eq!(
            w.login("bob", token(2), Time(0)),
            Err(LoginError::TokenTaken)
        );
        // Refusals leave no trace.
        assert_eq!(w.last_seq(), 2);
        assert_eq!(w.who().lines().count(), 3);
    }

    #[test]
    fn look_describes_the_room_exits_and_others() {
        let (mut w, [a, b, _]) = three();
        let r = w.command(a, "look", Time(5));
        assert_eq!(
            r.text,
            format!(
                "Gatehouse\n{}\nExits: north.\nHere: bob, carol.",
                ROOMS[0].description
            )
        );
        assert!(!r.quit);
        assert_eq!(
            w.command(b, "  L  ", Time(5)).text.lines().next(),
            Some("Gatehouse")
        );
    }

    #[test]
    fn go_moves_and_the_rooms_on_both_sides_see_it() {
        let (mut w, [a, b, c]) = three();
        let before = w.last_seq();
        let _ = woken(&mut w);
        let r = w.command(a, "go north", Time(10));
        assert!(r.text.starts_with("Mill Yard\n"), "{}", r.text);
        assert!(r.text.contains("Exits: north, south, east, west."));
        assert!(r.text.ends_with("You are alone here."), "{}", r.text);
        assert_eq!(seen(&w, b, before), ["alice leaves north."]);
        assert_eq!(seen(&w, c, before), ["alice leaves north."]);
        assert_eq!(
            seen(&w, a, before),
            Vec::<&str>::new(),
            "the mover sees the reply"
        );
        assert_eq!(woken(&mut w), [b, c]);

        let before = w.last_seq();
        let r = w.command(b, "n", Time(11));
        assert!(r.text.ends_with("Here: alice."), "{}", r.text);
        assert_eq!(seen(&w, a, before), ["bob arrives from the south."]);
        assert_eq!(seen(&w, c, before), ["bob leaves north."]);
        assert_eq!(woken(&mut w), [a, c]);
    }

    #[test]
    fn go_accepts_every_spelling_and_refuses_walls() {
        let (mut w, [a, ..]) = three();
        for (line, room) in [
            ("N", "Mill Yard"),
            ("east", "Mill"),
            ("go WEST", "Mill Yard"),
            ("go w", "Garden"),
            ("go north", "Weir"),
            ("s", "Garden"),
            ("e", "Mill Yard"),
            ("go s", "Gatehouse"),
        ] {
            let r = w.command(a, line, Time(20));
            assert_eq!(r.text.lines().next(), Some(room), "{line}");
        }
        let before = w.last_seq();
        assert_eq!(w.command(a, "s", Time(21)).text, "You can't go that way.");
        assert_eq!(
            w.command(a, "go up", Time(21)).text,
            "Go where? North, south, east or west."
        );
        assert_eq!(
            w.command(a, "go", Time(21)).text,
            "Go where? North, south, east or west."
        );
        assert_eq!(w.last_seq(), before, "walls make no events");
    }

    #[test]
    fn say_is_heard_by_the_others_in_the_room_only() {
        let (mut w, [a, b, c]) = three();
        w.command(c, "n", Time(5));
        let before = w.last_seq();
        let _ = woken(&mut w);
        assert_eq!(
            w.command(a, "say hello there", Time(6)).text,
            "You say: hello there"
        );
        assert_eq!(
            w.command(b, "'hi  alice ", Time(7)).text,
            "You say: hi  alice"
        );
        assert_eq!(seen(&w, a, before), ["bob says: hi  alice"]);
        assert_eq!(seen(&w, b, before), ["alice says: hello there"]);
        assert_eq!(
            seen(&w, c, before),
            Vec::<&str>::new(),
            "carol is in the yard"
        );
        assert_eq!(woken(&mut w), [a, b]);
        assert_eq!(w.command(a, "say   ", Time(8)).text, "Say what?");
        assert_eq!(w.command(a, "'", Time(8)).text, "Say what?");
    }

    #[test]
    fn say_keeps_each_event_on_one_line_and_cuts_long_speech() {
        let (mut w, [a, b, _]) = three();
        let before = w.last_seq();
        w.command(a, "say one\ntwo\r\n3 INJECTED\tend", Time(5));
        assert_eq!(seen(&w, b, before), ["alice says: one two  3 INJECTED end"]);
        let long = "é".repeat(SAY_CHARS_MAX + 50);
        let before = w.last_seq();
        let r = w.command(a, &format!("say {long}"), Time(6));
        assert_eq!(r.text.chars().count(), "You say: ".len() + SAY_CHARS_MAX);
        let heard = &seen(&w, b, before)[0];
        assert_eq!(heard.chars().count(), "alice says: ".len() + SAY_CHARS_MAX);
    }

    #[test]
    fn who_lists_everyone_and_where() {
        let (mut w, [a, b, _]) = three();
        w.command(b, "n", Time(5));
        assert_eq!(
            w.command(a, "WHO", Time(6)).text,
            "3 players:\n  alice (Gatehouse)\n  bob (Mill Yard)\n  carol (Gatehouse)"
        );
    }

    #[test]
    fn quit_frees_the_name_and_token_and_tells_the_room() {
        let (mut w, [a, b, c]) = three();
        let before = w.last_seq();
        let _ = woken(&mut w);
        let r = w.command(a, "quit", Time(5));
        assert_eq!(
            r,
            Reply {
                text: "Goodbye, alice.".into(),
                quit: true
            }
        );
        assert!(!w.is_playing(a));
        assert_eq!(w.player(&token(1)), None);
        assert_eq!(seen(&w, b, before), ["alice leaves the game."]);
        assert_eq!(seen(&w, c, before), ["alice leaves the game."]);
        assert_eq!(woken(&mut w), [a, b, c], "the quitter is woken too");
        // The name is free again, for a new player who sees nothing of the old one's past.
        let (a2, _) = w.login("Alice", token(4), Time(6)).unwrap();
        assert_ne!(a2, a);
        assert_eq!(seen(&w, a2, 0), Vec::<&str>::new());
        assert_eq!(w.who().lines().count(), 4);
    }

    #[test]
    fn unknown_commands_get_help() {
        let (mut w, [a, ..]) = three();
        let r = w.command(a, "dance\nwildly", Time(5));
        assert_eq!(
            r.text,
            format!("I don't understand \"dance wildly\". {HELP}")
        );
        assert_eq!(w.command(a, "", Time(5)).text, HELP);
        assert_eq!(w.command(a, "help", Time(5)).text, HELP);
        assert!(w
            .command(a, "look around", Time(5))
            .text
            .starts_with("I don't"));
    }

    #[test]
    fn events_after_a_sequence_number_and_what_late_comers_see() {
        let mut w = World::default();
        let a = w.login("alice", token(1), Time(0)).unwrap().0;
        w.command(a, "say before bob", Time(1));
        let b = w.login("bob", token(2), Time(2)).unwrap().0;
        w.command(a, "say one", Time(3));
        w.command(a, "say two", Time(4));
        assert_eq!(seen(&w, b, 0), ["alice says: one", "alice says: two"]);
        let one = w.events_after(b, 0).next().unwrap().seq;
        assert_eq!(seen(&w, b, one), ["alice says: two"]);
        assert_eq!(seen(&w, b, w.last_seq()), Vec::<&str>::new());
        assert_eq!(seen(&w, a, 0), ["bob arrives, shaking off the rain."]);
        // Bob leaves; what is said after in the gatehouse is not for him, nor is what was
        // said before he came back.
        w.command(b, "n", Time(5));
        let left = w.last_seq();
        w.command(a, "say gone?", Time(6));
        w.command(b, "s", Time(7));
        assert_eq!(seen(&w, b, left), Vec::<&str>::new());
        w.command(a, "say welcome back", Time(8));
        assert_eq!(seen(&w, b, left), ["alice says: welcome back"]);
    }

    /// The room index agrees with where each player is.
    fn assert_rooms_indexed(w: &World) {
        for (r, ids) in w.here.iter().enumerate() {
            for id in ids {
                assert_eq!(w.players[id].room, RoomId(r), "{id:?}");
            }
        }
        let indexed: usize = w.here.iter().map(BTreeSet::len).sum();
        assert_eq!(indexed, w.players.len());
    }

    #[test]
    fn the_room_index_follows_every_move_and_departure() {
        let (mut w, [a, b, c]) = three();
        assert_rooms_indexed(&w);
        for (p, line) in [
            (a, "n"),
            (b, "n"),
            (a, "w"),
            (c, "quit"),
            (b, "e"),
            (a, "n"),
        ] {
            w.command(p, line, Time(5));
            assert_rooms_indexed(&w);
        }
        w.handle_timeout(Time(u64::MAX / 2));
        assert_rooms_indexed(&w);
        assert!(w.here.iter().all(BTreeSet::is_empty));
    }

    #[test]
    fn the_log_is_bounded() {
        let mut w = World::new(IDLE_TIMEOUT, 3);
        let a = w.login("alice", token(1), Time(0)).unwrap().0;
        let b = w.login("bob", token(2), Time(0)).unwrap().0;
        for i in 0..10 {
            w.command(a, &format!("say {i}"), Time(1));
        }
        assert_eq!(w.log.len(), 3);
        assert_eq!(w.last_seq(), 12);
        assert_eq!(
            seen(&w, b, 0),
            ["alice says: 7", "alice says: 8", "alice says: 9"]
        );
    }

    #[test]
    fn idle_players_are_logged_out_and_activity_puts_it_off() {
        let idle = Duration::from_secs(600);
        let mut w = World::new(idle, LOG_MAX);
        let a = w.login("alice", token(1), Time(0)).unwrap().0;
        let b = w.login("bob", token(2), Time(1000)).unwrap().0;
        assert_eq!(w.poll_timeout(), Some(Time(600_000)));
        w.handle_timeout(Time(599_999));
        assert!(w.is_playing(a));
        w.touch(a, Time(300_000));
        assert_eq!(w.poll_timeout(), Some(Time(601_000)), "now bob is first");
        let before = w.last_seq();
        let _ = woken(&mut w);
        w.handle_timeout(Time(601_000));
        assert!(!w.is_playing(b) && w.is_playing(a));
        assert_eq!(w.player(&token(2)), None);
        assert_eq!(seen(&w, a, before), ["bob falls asleep and fades away."]);
        assert_eq!(woken(&mut w), [a, b]);
        // A command touches the player too; time never runs back.
        w.command(a, "look", Time(800_000));
        w.touch(a, Time(700_000));
        assert_eq!(w.poll_timeout(), Some(Time(1_400_000)));
        w.handle_timeout(Time(1_400_000));
        assert!(!w.is_playing(a));
        assert_eq!(w.poll_timeout(), None);
        w.touch(a, Time(1_500_000));
        assert_eq!(w.poll_timeout(), None, "touching one gone does nothing");
    }
}
