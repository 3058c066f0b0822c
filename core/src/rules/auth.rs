//! HTTP Basic authentication against htpasswd files (RFC 7617).
//!
//! The hashes `htpasswd` writes are all understood: bcrypt (`$2y$`, `$2a$`, `$2b$`),
//! SHA-256-crypt and SHA-512-crypt (`$5$`, `$6$`), and Apache's MD5 variant (`$apr1$`).
//! Plain-text, `crypt(3)` DES and `{SHA}` entries are refused when the file is loaded, so a
//! configuration never silently accepts a weak scheme. The final comparison of the computed
//! hash with the stored one takes the same time wherever they differ.
//!
//! Checking a password is split in two, so that the server never runs the expensive half
//! on its event loop (`crate::server` hands it to the shell as `Effect::VerifyPassword`):
//!
//! * [`PasswordCheck::new`] is cheap: it finds the user's stored hash. For a user the file
//!   does not name it takes a *stand-in*, the file's first hash, and marks the check
//!   `known: false`: the stand-in is verified like a real hash (same scheme, same cost, so
//!   the answer takes as long whether the user exists or not) and its result is ignored.
//! * [`verify`] is the expensive, pure half (a cost-12 bcrypt takes about 250 ms): any
//!   thread may run it.
//!
//! [`PasswordCheck::fingerprint`] names a check for the server's cache of recent successes:
//! a SHA-256 over the users file, the user, the stored hash (which changes whenever the
//! password or its salt does) and the password, never the password itself.

use std::path::PathBuf;

use base64::Engine;
use md5::{Digest, Md5};
use sha2::Sha256;

use super::Users;

/// A password as a client sent it (RFC 7617 allows any octets): kept out of `Debug`
/// output, so no log or trace ever prints one.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Password(pub Vec<u8>);

impl core::fmt::Debug for Password {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Password(..)")
    }
}

/// A user name and password from an `Authorization: Basic` field.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub user: String,
    /// The password (bytes: RFC 7617 allows any octets after the colon).
    pub password: Vec<u8>,
}

impl core::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Never print a password.
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// Decodes `Basic BASE64(user:password)`; `None` for anything else.
    #[must_use]
    pub fn from_basic(field: &[u8]) -> Option<Credentials> {
        let field = crate::http1::head::trim_ows(field);
        let (scheme, rest) = field.split_at(field.iter().position(|&b| b == b' ')?);
        if !scheme.eq_ignore_ascii_case(b"basic") {
            return None;
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(crate::http1::head::trim_ows(rest))
            .ok()?;
        let colon = decoded.iter().position(|&b| b == b':')?;
        let user = String::from_utf8(decoded[..colon].to_vec()).ok()?;
        Some(Credentials {
            user,
            password: decoded[colon + 1..].to_vec(),
        })
    }
}

/// A SHA-256 naming one password check (see [`PasswordCheck::fingerprint`]).
pub type Fingerprint = [u8; 32];

/// One password check a `protect … users=` rule asks for: the credentials, and the stored
/// hash to verify them against.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PasswordCheck {
    /// The realm of the rule (for the 401 if the check fails).
    pub realm: String,
    /// The users file the hash comes from.
    pub file: PathBuf,
    /// The user name sent.
    pub user: String,
    /// The password sent.
    pub password: Password,
    /// The user's stored hash, or for an unknown user the stand-in (the file's first).
    pub hash: String,
    /// Whether the file names the user: if not, the check fails whatever `verify` says.
    pub known: bool,
}

impl PasswordCheck {
    /// The check of `creds` against `users` (cheap: no hashing). `None` when the file has
    /// no entry at all (nobody can be let in, and no timing can tell anything).
    #[must_use]
    pub fn new(users: &Users, creds: Credentials, realm: &str) -> Option<PasswordCheck> {
        let entry = users.entries.iter().find(|(u, _)| *u == creds.user);
        let (hash, known) = match entry {
            Some((_, hash)) => (hash.clone(), true),
            None => (users.entries.first()?.1.clone(), false),
        };
        Some(PasswordCheck {
            realm: realm.to_string(),
            file: users.path.clone(),
            user: creds.user,
            password: Password(creds.password),
            hash,
            known,
        })
    }

    /// Whether the check lets the user in, given what [`verify`] said of `hash` and
    /// `password`.
    #[must_use]
    pub fn accepts(&self, verified: bool) -> bool {
        verified && self.known
    }

    /// Runs the check here and now (the expensive part included): for `weir route` and
    /// the tests, never for the server's event loop.
    #[must_use]
    pub fn run(&self) -> bool {
        let verified = verify(&self.hash, &self.password.0);
        self.accepts(verified)
    }

    /// A SHA-256 over everything the check's outcome depends on: the users file, the user,
    /// whether the file names them, the stored hash and the password (each field with its
    /// length first, so no two checks share one input). Two checks with one fingerprint
    /// have one outcome; the fingerprint does not give the password back.
    #[must_use]
    pub fn fingerprint(&self) -> Fingerprint {
        use std::os::unix::ffi::OsStrExt;
        let mut h = Sha256::new();
        for field in [
            self.file.as_os_str().as_bytes(),
            self.user.as_bytes(),
            &[u8::from(self.known)],
            self.hash.as_bytes(),
            &self.password.0,
        ] {
            h.update((field.len() as u64).to_le_bytes());
            h.update(field);
        }
        h.finalize().into()
    }
}

/// True if `password` hashes to `hash` (an htpasswd entry's hash) under the scheme `hash`
/// names. Pure, and as slow as the scheme makes it (a cost-12 bcrypt: about 250 ms): the
/// server's verifier threads call it, never its event loop.
#[must_use]
pub fn verify(hash: &str, password: &[u8]) -> bool {
    let computed = if hash.starts_with("$2") {
        bcrypt_hash(password, hash)
    } else if let Some(rest) = hash.strip_prefix("$5$") {
        sha_crypt_hash(password, rest, false)
    } else if let Some(rest) = hash.strip_prefix("$6$") {
        sha_crypt_hash(password, rest, true)
    } else if let Some(rest) = hash.strip_prefix("$apr1$") {
        let salt = rest.split('$').next().unwrap_or("");
        Some(apr1(password, salt.as_bytes()))
    } else {
        None
    };
    computed.is_some_and(|c| constant_time_eq(c.as_bytes(), hash.as_bytes()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

const BCRYPT_ALPHABET: &[u8; 64] =
    b"./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const CRYPT_ALPHABET: &[u8; 64] =
    b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// bcrypt's own base64 (its alphabet, no padding, most significant bits first).
fn bcrypt_b64_encode(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(BCRYPT_ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

fn bcrypt_b64_decode(text: &[u8]) -> Option<Vec<u8>> {
    let mut bits = 0u32;
    let mut nbits = 0;
    let mut out = Vec::new();
    for &c in text {
        let v = BCRYPT_ALPHABET.iter().position(|&a| a == c)? as u32;
        bits = bits << 6 | v;
        nbits += 6;
        if nbits >= 8 {
            nbits -= 8;
            out.push((bits >> nbits) as u8);
            bits &= (1 << nbits) - 1;
        }
    }
    Some(out)
}

/// Recomputes a bcrypt hash `$2y$CC$SALT22HASH31` for `password`.
fn bcrypt_hash(password: &[u8], stored: &str) -> Option<String> {
    let parts: Vec<&str> = stored.split('$').collect();
    let [_, version, cost, rest] = parts.as_slice() else {
        return None;
    };
    if !matches!(*version, "2y" | "2a" | "2b") || rest.len() != 53 {
        return None;
    }
    let cost: u32 = cost.parse().ok().filter(|c| (4..=31).contains(c))?;
    let salt: [u8; 16] = bcrypt_b64_decode(&rest.as_bytes()[..22])?
        .get(..16)?
        .try_into()
        .ok()?;
    // bcrypt hashes the password with its NUL terminator, at most 72 bytes in all.
    let mut key = password.to_vec();
    key.push(0);
    key.truncate(72);
    let raw = bcrypt::bcrypt(cost, salt, &key);
    Some(format!(
        "${version}${cost:02}${}{}",
        &rest[..22],
        bcrypt_b64_encode(&raw[..23])
    ))
}

/// Recomputes a SHA-crypt hash from the part after `$5$`/`$6$`.
fn sha_crypt_hash(password: &[u8], rest: &str, sha512: bool) -> Option<String> {
    let (rounds, rest) = match rest.strip_prefix("rounds=") {
        Some(r) => {
            let (n, rest) = r.split_once('$')?;
            (Some(n.parse::<usize>().ok()?), rest)
        }
        None => (None, rest),
    };
    let salt = rest.split('$').next()?;
    let salt = &salt.as_bytes()[..salt.len().min(16)];
    let r = rounds.unwrap_or(5000);
    let hash = if sha512 {
        let params = sha_crypt::Sha512Params::new(r).ok()?;
        sha_crypt::sha512_crypt_b64(password, salt, &params).ok()?
    } else {
        let params = sha_crypt::Sha256Params::new(r).ok()?;
        sha_crypt::sha256_crypt_b64(password, salt, &params).ok()?
    };
    let id = if sha512 { 6 } else { 5 };
    let salt = String::from_utf8_lossy(salt);
    Some(match rounds {
        Some(n) => format!("${id}$rounds={n}${salt}${hash}"),
        None => format!("${id}${salt}${hash}"),
    })
}

/// Apache's MD5-crypt variant, `$apr1$SALT$HASH` (the FreeBSD MD5-crypt algorithm with
/// the magic string `$apr1$`).
fn apr1(password: &[u8], salt: &[u8]) -> String {
    const MAGIC: &[u8] = b"$apr1$";
    let salt = &salt[..salt.len().min(8)];
    let alt = Md5::new()
        .chain_update(password)
        .chain_update(salt)
        .chain_update(password)
        .finalize();
    let mut ctx = Md5::new();
    ctx.update(password);
    ctx.update(MAGIC);
    ctx.update(salt);
    let mut left = password.len();
    while left > 0 {
        let n = left.min(16);
        ctx.update(&alt[..n]);
        left -= n;
    }
    let mut i = password.len();
    while i > 0 {
        if i & 1 == 1 {
            ctx.update([0u8]);
        } else {
            ctx.update(&password[..1]);
        }
        i >>= 1;
    }
    let mut fin = ctx.finalize();
    for round in 0..1000 {
        let mut c = Md5::new();
        if round & 1 == 1 {
            c.update(password);
        } else {
            c.update(fin);
        }
        if round % 3 != 0 {
            c.update(salt);
        }
        if round % 7 != 0 {
            c.update(password);
        }
        if round & 1 == 1 {
            c.update(fin);
        } else {
            c.update(password);
        }
        fin = c.finalize();
    }
    let mut out = String::from("$apr1$");
    out.push_str(&String::from_utf8_lossy(salt));
    out.push('$');
    let mut put = |v: u32, n: usize| {
        let mut v = v;
        for _ in 0..n {
            out.push(CRYPT_ALPHABET[(v & 63) as usize] as char);
            v >>= 6;
        }
    };
    for (a, b, c) in [(0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5)] {
        put(
            u32::from(fin[a]) << 16 | u32::from(fin[b]) << 8 | u32::from(fin[c]),
            4,
        );
    }
    put(u32::from(fin[11]), 2);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    // Vectors made with `openssl passwd` and Python's bcrypt, plus crypt_blowfish's own.
    const APR1: &str = "$apr1$abcdefgh$h9FWgUz3n9YxylKLlR5SQ/";
    const SHA256: &str = "$5$saltsalt$0IyaXrmV7.sGNS6tirgqHLqX/G.FBvgkYA.lpPdS5sA";
    const SHA512: &str = "$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1";
    const BCRYPT: &str = "$2y$05$abcdefghijklmnopqrstuuOQiyCxlgf/oeuTqixKmWdcYUh4Hjl0a";

    #[test]
    fn every_scheme_verifies_the_right_password_only() {
        for hash in [APR1, SHA256, SHA512, BCRYPT] {
            assert!(verify(hash, b"secret"), "{hash}");
            assert!(!verify(hash, b"Secret"), "{hash}");
            assert!(!verify(hash, b""), "{hash}");
        }
        assert!(verify(
            "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW",
            b"U*U"
        ));
        assert!(verify(
            &sha_crypt_hash(b"x", "rounds=1000$abc$", true).unwrap(),
            b"x"
        ));
        assert!(!verify("secret", b"secret"));
        assert!(!verify("$2y$05$short", b"secret"));
    }

    fn creds(user: &str, password: &[u8]) -> Credentials {
        Credentials {
            user: user.into(),
            password: password.to_vec(),
        }
    }

    #[test]
    fn basic_credentials() {
        let c = Credentials::from_basic(b"Basic YWxpY2U6c2VjcmV0").unwrap();
        assert_eq!(
            (c.user.as_str(), c.password.as_slice()),
            ("alice", &b"secret"[..])
        );
        assert_eq!(
            Credentials::from_basic(b"basic  YTpiOmM=")
                .unwrap()
                .password,
            b"b:c"
        );
        assert!(Credentials::from_basic(b"Bearer abc").is_none());
        assert!(Credentials::from_basic(b"Basic !!!").is_none());
        assert!(Credentials::from_basic(b"Basic bm9jb2xvbg==").is_none());
        assert!(!format!("{c:?}").contains("secret"));
    }

    #[test]
    fn an_unknown_user_is_checked_against_a_stand_in_and_refused() {
        let users = Users {
            path: PathBuf::from("/u"),
            entries: vec![
                ("alice".into(), APR1.into()),
                ("carol".into(), SHA256.into()),
            ],
        };
        let alice = PasswordCheck::new(&users, creds("alice", b"secret"), "r").unwrap();
        assert!(alice.known && alice.hash == APR1 && alice.run());
        assert!(!PasswordCheck::new(&users, creds("alice", b"wrong"), "r")
            .unwrap()
            .run());
        // Bob does not exist: his check costs what alice's does (her hash, her scheme)
        // and fails even with her password.
        let bob = PasswordCheck::new(&users, creds("bob", b"secret"), "r").unwrap();
        assert!(!bob.known && bob.hash == APR1);
        assert!(verify(&bob.hash, b"secret") && !bob.run() && !bob.accepts(true));
        let empty = Users {
            path: PathBuf::from("/u"),
            entries: Vec::new(),
        };
        assert!(PasswordCheck::new(&empty, creds("bob", b"x"), "r").is_none());
        // The password appears in no Debug output.
        assert!(!format!("{alice:?}").contains("secret"));
        assert!(!format!("{alice:?}").contains("115, 101, 99"));
    }

    #[test]
    fn fingerprints_tell_checks_apart() {
        let users = Users {
            path: PathBuf::from("/u"),
            entries: vec![("alice".into(), APR1.into())],
        };
        let check = |u: &str, p: &[u8]| PasswordCheck::new(&users, creds(u, p), "r").unwrap();
        let print = check("alice", b"secret").fingerprint();
        assert_eq!(print, check("alice", b"secret").fingerprint());
        assert_ne!(print, check("alice", b"secreT").fingerprint());
        assert_ne!(print, check("alicesecret", b"").fingerprint());
        let mut moved = check("alice", b"secret");
        moved.file = PathBuf::from("/v");
        assert_ne!(print, moved.fingerprint());
        let mut changed = check("alice", b"secret");
        changed.hash = SHA256.into();
        assert_ne!(print, changed.fingerprint(), "a new hash is a new version");
    }

    /// A stored hash is compared whole: a correct hash with anything after it is another
    /// hash, and no password matches it.
    #[test]
    fn a_stored_hash_with_trailing_bytes_lets_no_password_in() {
        for hash in [APR1, SHA256] {
            assert!(!verify(&format!("{hash}x"), b"secret"), "{hash}x");
        }
    }

    /// The redacted forms are what logs and traces show, so they are pinned exactly.
    #[test]
    fn debug_output_names_the_user_and_hides_the_password() {
        assert_eq!(
            format!("{:?}", Password(b"secret".to_vec())),
            "Password(..)"
        );
        assert_eq!(
            format!("{:?}", creds("alice", b"secret")),
            "Credentials { user: \"alice\", .. }"
        );
    }

    /// An htpasswd line naming no user is refused, and the error names its 1-based line
    /// (comments and blank lines counted).
    #[test]
    fn an_htpasswd_line_without_a_user_name_is_refused_with_its_line_number() {
        assert_eq!(
            Users::parse(PathBuf::from("/u"), "# c\n\n:$apr1$x\n"),
            Err((3, "empty user name".into()))
        );
    }

    /// Every byte of the stored hash is compared on its own: two differences that cancel
    /// out (two of its characters swapped) still refuse the password.
    #[test]
    fn a_stored_hash_with_two_characters_swapped_lets_no_password_in() {
        let mut swapped = APR1.as_bytes().to_vec();
        let n = swapped.len();
        swapped.swap(n - 1, n - 2);
        let swapped = String::from_utf8(swapped).unwrap();
        assert_ne!(swapped, APR1);
        assert!(!verify(&swapped, b"secret"), "{swapped}");
    }
}
