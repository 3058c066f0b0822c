//! Operations end to end: `error-log FILE`, `user NAME`, `chroot DIR`, reopening the logs
//! on SIGUSR1 (logrotate), and `weir serve` with neither `-c` nor `--root`.
//!
//! What is checked is what an operator sees from outside: the log files (before and after
//! a logrotate-style rename and SIGUSR1), the running server's `/proc/PID/status` (user
//! and group IDs, every thread) and `/proc/PID/root`, what a CGI script reports about
//! itself, and the exit status and message of a start-up that must fail. CI runs these as root; run as another user, the `user` and `chroot`
//! tests check the non-root behaviour instead (a warning, a refusal), so every branch
//! asserts something.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::{DocRoot, TempDir, Weir, SECRET};

/// Longest a log line may take to show, or a failing start-up to exit.
const SETTLE: Duration = Duration::from_secs(10);

/// Writes an executable (755) script, creating its directory (755).
fn install(path: &Path, text: &str) {
    let dir = path.parent().expect("a script has a directory");
    fs::create_dir_all(dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
    chmod(dir, 0o755);
    fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    chmod(path, 0o755);
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// Makes the document root and what leads to it readable by any user, whatever the umask.
fn world_readable(docs: &DocRoot) {
    chmod(docs.base(), 0o755);
    chmod(docs.root(), 0o755);
    chmod(&docs.root().join("hello.txt"), 0o644);
}

/// The `Uid:` or `Gid:` line of `/proc/PID/status` (or `/proc/PID/task/TID/status`):
/// real, effective, saved and file-system IDs.
fn ids(status_file: &Path, field: &str) -> Vec<u32> {
    let status = fs::read_to_string(status_file)
        .unwrap_or_else(|e| panic!("read {}: {e}", status_file.display()));
    let line = status
        .lines()
        .find(|l| l.starts_with(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} line in {}", status_file.display()));
    line[field.len() + 1..]
        .split_whitespace()
        .map(|n| n.parse().expect("a numeric ID"))
        .collect()
}

/// Whether this test process runs as root (effective user ID 0).
fn running_as_root() -> bool {
    ids(Path::new("/proc/self/status"), "Uid")[1] == 0
}

/// `nobody`'s user and group IDs, from the system's account database.
fn nobody() -> (u32, u32) {
    let out = Command::new("getent")
        .args(["passwd", "nobody"])
        .output()
        .expect("run getent");
    let line = String::from_utf8_lossy(&out.stdout).into_owned();
    let f: Vec<&str> = line.trim().split(':').collect();
    assert!(f.len() >= 4, "getent passwd nobody: {line:?}");
    (
        f[2].parse().expect("nobody's uid"),
        f[3].parse().expect("nobody's gid"),
    )
}

/// Reads `path` until it contains `needle` (bounded); returns its text.
fn file_containing(path: &Path, needle: &str) -> String {
    let deadline = Instant::now() + SETTLE;
    loop {
        let text = fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{} does not contain {needle:?} after {SETTLE:?}; it holds:\n{text}",
            path.display()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `weir serve -c FILE` with `conf` (`{root}`, `{base}` replaced as the harness does)
/// on a fresh document root, expecting it to exit by itself; returns its status and stderr.
fn serve_expecting_exit(conf: &str) -> (Option<i32>, String) {
    let docs = DocRoot::new();
    let file = docs.base().join("weir.conf");
    let text = conf
        .replace("{root}", &docs.root().display().to_string())
        .replace("{base}", &docs.base().display().to_string());
    fs::write(&file, text).expect("write weir.conf");
    let err_path = docs.base().join("stderr");
    let err_file = fs::File::create(&err_path).expect("create the stderr file");
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["serve", "--listen", "127.0.0.1:0", "-c"])
        .arg(&file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err_file)
        .spawn()
        .expect("spawn the weir binary");
    let deadline = Instant::now() + SETTLE;
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait on weir") {
            break s;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "weir was expected to refuse to start, but it still runs after {SETTLE:?}; \
                 stderr:\n{}",
                fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        thread::sleep(Duration::from_millis(20));
    };
    (
        status.code(),
        fs::read_to_string(&err_path).unwrap_or_default(),
    )
}

const ERR_SH: &str = "#!/bin/sh
echo 'ops: a line the script wrote on stderr' >&2
printf 'Content-Type: text/plain\\r\\n\\r\\nok\\n'
";

#[test]
fn error_log_file_receives_errors_and_cgi_stderr() {
    let weir = Weir::start_with_config(
        "error-log {base}/logs/error.log\nexec /cgi-bin/* {root}/cgi-bin/*\npass /* {root}/*\n",
    );
    install(&weir.docs.root().join("cgi-bin/err.sh"), ERR_SH);
    let log = weir.docs.base().join("logs/error.log");

    // The start-up line goes to the file and, for whoever started weir, to stderr.
    file_containing(&log, "weir: serving ");
    weir.stderr_containing("weir: serving ");

    let mut c = weir.connect();
    let r = c.get("/cgi-bin/err.sh");
    r.assert_status(200);
    assert_eq!(r.body, b"ok\n");

    let text = file_containing(&log, "a line the script wrote on stderr");
    let line = text
        .lines()
        .find(|l| l.contains("a line the script wrote on stderr"))
        .expect("the line is there");
    assert!(line.contains("err.sh"), "the script is not named: {line}");
    // `YYYY-MM-DDTHH:MM:SSZ weir: …`
    let (stamp, rest) = line.split_once(' ').expect("a stamp, then the line");
    assert_eq!(stamp.len(), 20, "{line}");
    assert!(
        stamp.ends_with('Z') && stamp.as_bytes()[10] == b'T',
        "{line}"
    );
    assert!(rest.starts_with("weir: "), "{line}");
    assert!(
        !weir.stderr().contains("a line the script wrote on stderr"),
        "the script's line went to stderr too:\n{}",
        weir.stderr()
    );
    assert!(text.lines().count() >= 2, "{text}");
}

#[test]
fn error_log_that_cannot_be_opened_stops_start_up() {
    let (code, err) =
        serve_expecting_exit("error-log {base}/secret.txt/error.log\npass /* {root}/*\n");
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("weir: cannot open the error log ") && err.contains("secret.txt/error.log"),
        "{err}"
    );
}

/// Waits (bounded) until `path` exists.
fn appears(path: &Path) {
    let deadline = Instant::now() + SETTLE;
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} still missing after {SETTLE:?}",
            path.display()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

const LOGS_CONF: &str = "access-log {base}/logs/access.log\nerror-log {base}/logs/error.log\n\
                         exec /cgi-bin/* {root}/cgi-bin/*\npass /* {root}/*\n";

/// Renames both logs to `NAME.1`, as logrotate does, and sends SIGUSR1.
fn rotate(weir: &mut Weir) -> [(PathBuf, PathBuf); 2] {
    let logs = weir.docs.base().join("logs");
    let files =
        ["access.log", "error.log"].map(|name| (logs.join(name), logs.join(format!("{name}.1"))));
    for (path, rotated) in &files {
        fs::rename(path, rotated).unwrap_or_else(|e| panic!("rename {}: {e}", path.display()));
    }
    weir.signal("USR1");
    files
}

#[test]
fn sigusr1_reopens_both_logs_after_logrotate_renamed_them() {
    let mut weir = Weir::start_with_config(LOGS_CONF);
    install(&weir.docs.root().join("cgi-bin/err.sh"), ERR_SH);
    let logs = weir.docs.base().join("logs");
    let (access, error) = (logs.join("access.log"), logs.join("error.log"));

    let mut c = weir.connect();
    c.get("/hello.txt?before").assert_status(200);
    // The line has reached the file (it is flushed when the logger goes idle), so it
    // belongs to the file that is about to be rotated.
    file_containing(&access, "GET /hello.txt?before ");
    file_containing(&error, "weir: serving ");

    let [(_, old_access), (_, old_error)] = rotate(&mut weir);
    appears(&access);
    appears(&error);
    weir.assert_running();
    file_containing(&error, "weir: SIGUSR1: reopening the logs");

    // The same connection goes on; its lines go to the new files.
    c.get("/hello.txt?after").assert_status(200);
    let r = c.get("/cgi-bin/err.sh");
    r.assert_status(200);
    assert_eq!(r.body, b"ok\n");
    let new_access = file_containing(&access, "GET /hello.txt?after ");
    let new_error = file_containing(&error, "a line the script wrote on stderr");
    weir.assert_running();

    let old_access = read(&old_access);
    assert!(
        old_access.contains("GET /hello.txt?before "),
        "{old_access}"
    );
    assert!(!old_access.contains("/hello.txt?after"), "{old_access}");
    assert!(!new_access.contains("/hello.txt?before"), "{new_access}");
    assert_eq!(
        new_access.lines().count(),
        2,
        "the second request and the script's: {new_access}"
    );
    let old_error = read(&old_error);
    assert!(old_error.contains("weir: serving "), "{old_error}");
    assert!(
        !old_error.contains("a line the script wrote"),
        "{old_error}"
    );
    assert!(!new_error.contains("weir: serving "), "{new_error}");
    assert!(
        !new_error.contains("cannot reopen") && !old_error.contains("cannot reopen"),
        "{old_error}{new_error}"
    );

    // Rotating again works the same way, and SIGTERM still ends weir cleanly.
    rotate(&mut weir);
    appears(&access);
    file_containing(&error, "weir: SIGUSR1: reopening the logs");
    weir.signal("TERM");
    let status = weir.wait_exit(SETTLE).expect("weir exits after SIGTERM");
    assert_eq!(status.code(), Some(0), "{status}");
}

#[test]
fn sigusr1_without_rights_to_reopen_keeps_the_old_files() {
    let mut weir = Weir::start_with_config(&format!("user nobody\n{LOGS_CONF}"));
    world_readable(&weir.docs);
    let logs = weir.docs.base().join("logs");
    let (access, error) = (logs.join("access.log"), logs.join("error.log"));
    file_containing(&error, "weir: serving ");
    let [(_, old_access), (_, old_error)] = rotate(&mut weir);
    if !running_as_root() {
        // `user` was ignored: weir can create files where it created the logs.
        appears(&access);
        file_containing(&error, "weir: SIGUSR1: reopening the logs");
        return;
    }
    // Now `nobody`, weir may not create files in root's 755 directory: it says so and
    // keeps writing to the files it has (nginx without its master process does the same).
    let text = file_containing(&old_error, "cannot reopen the access log");
    assert!(
        text.contains("weir: SIGUSR1: cannot reopen the error log ")
            && text.contains("still writing to the old file")
            && text.contains("weir: SIGUSR1: reopening the logs"),
        "{text}"
    );
    weir.assert_running();
    let mut c = weir.connect();
    c.get("/hello.txt?after").assert_status(200);
    file_containing(&old_access, "GET /hello.txt?after ");
    assert!(
        !access.exists() && !error.exists(),
        "new files were created"
    );
}

const ID_SH: &str = "#!/bin/sh
printf 'Content-Type: text/plain\\r\\n\\r\\n'
id -u
id -g
echo \"ops: script runs as $(id -u)\" >&2
";

#[test]
fn user_drops_root_after_binding_and_opening_logs() {
    let weir = Weir::start_with_config(
        "user nobody\nerror-log {base}/logs/error.log\n\
         exec /cgi-bin/* {root}/cgi-bin/*\npass /* {root}/*\n",
    );
    world_readable(&weir.docs);
    install(&weir.docs.root().join("cgi-bin/id.sh"), ID_SH);
    let log = weir.docs.base().join("logs/error.log");
    let pid = weir.pid();
    let me = ids(Path::new("/proc/self/status"), "Uid")[1];
    let (want_uid, want_gid) = if running_as_root() {
        nobody()
    } else {
        // Not root: weir cannot switch users; it says so and goes on as it is.
        let warning = "weir: user nobody: ignored, since weir was not started as root";
        weir.stderr_containing(warning);
        file_containing(&log, warning);
        (me, ids(Path::new("/proc/self/status"), "Gid")[1])
    };

    // Every thread, not only the main one, runs as the user.
    let tasks: Vec<PathBuf> = fs::read_dir(format!("/proc/{pid}/task"))
        .expect("list weir's threads")
        .map(|e| e.expect("a task entry").path().join("status"))
        .collect();
    assert!(tasks.len() >= 2, "weir runs a worker thread: {tasks:?}");
    for status in &tasks {
        assert_eq!(
            ids(status, "Uid"),
            vec![want_uid; 4],
            "{}",
            status.display()
        );
        assert_eq!(
            ids(status, "Gid"),
            vec![want_gid; 4],
            "{}",
            status.display()
        );
    }
    if running_as_root() {
        let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
        let groups = status
            .lines()
            .find(|l| l.starts_with("Groups:"))
            .expect("a Groups line");
        let groups: Vec<&str> = groups["Groups:".len()..].split_whitespace().collect();
        assert!(
            !groups.contains(&"0"),
            "root's group is still a supplementary group: {groups:?}"
        );
    }

    let mut c = weir.connect();
    let r = c.get("/hello.txt");
    r.assert_status(200);
    assert_eq!(r.body, weir.docs.bytes("hello.txt"));

    // Scripts are children: they run as the user too.
    let r = c.get("/cgi-bin/id.sh");
    r.assert_status(200);
    assert_eq!(
        String::from_utf8_lossy(&r.body),
        format!("{want_uid}\n{want_gid}\n")
    );
    // The error log was opened before the drop; the user still writes to it.
    file_containing(&log, &format!("ops: script runs as {want_uid}"));
}

#[test]
fn an_unknown_user_or_group_is_a_start_up_error() {
    let (code, err) = serve_expecting_exit("user no-such-user-weir-ops\npass /* {root}/*\n");
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("weir: user no-such-user-weir-ops: no such user"),
        "{err}"
    );
    let (code, err) =
        serve_expecting_exit("user nobody no-such-group-weir-ops\npass /* {root}/*\n");
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("weir: group no-such-group-weir-ops: no such group"),
        "{err}"
    );
}

/// Copies `/bin/sh` and the libraries `ldd` says it needs into `jail`, at the same paths,
/// so that scripts can run inside it.
fn install_sh(jail: &Path) {
    let mut files = vec![PathBuf::from("/bin/sh")];
    let out = Command::new("ldd")
        .arg("/bin/sh")
        .output()
        .expect("run ldd /bin/sh");
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        // `libc.so.6 => /lib/…/libc.so.6 (0x…)` or `/lib64/ld-linux-x86-64.so.2 (0x…)`
        let path = line
            .split("=>")
            .last()
            .and_then(|rest| rest.split_whitespace().next())
            .filter(|p| p.starts_with('/'));
        if let Some(p) = path {
            files.push(PathBuf::from(p));
        }
    }
    for file in files {
        let to = jail.join(file.strip_prefix("/").expect("absolute"));
        let dir = to.parent().expect("a file has a directory");
        fs::create_dir_all(dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        // fs::copy follows symbolic links (/bin/sh → dash) and keeps the mode bits.
        fs::copy(&file, &to)
            .unwrap_or_else(|e| panic!("copy {} to {}: {e}", file.display(), to.display()));
    }
    let mut dirs: Vec<PathBuf> = Vec::new();
    for entry in ["bin", "lib", "lib64", "usr"] {
        let p = jail.join(entry);
        if p.exists() {
            dirs.push(p);
        }
    }
    while let Some(dir) = dirs.pop() {
        chmod(&dir, 0o755);
        for e in fs::read_dir(&dir).expect("list a jail directory") {
            let p = e.expect("an entry").path();
            if p.is_dir() {
                dirs.push(p);
            }
        }
    }
}

const WHERE_SH: &str = "#!/bin/sh
printf 'Content-Type: text/plain\\r\\n\\r\\n'
printf 'cwd='; pwd
echo \"SCRIPT_FILENAME=$SCRIPT_FILENAME\"
echo \"DOCUMENT_ROOT=$DOCUMENT_ROOT\"
echo \"PATH_TRANSLATED=$PATH_TRANSLATED\"
";

const CHROOT_CONF: &str = "root {root}\nchroot {base}\nuser nobody\nlisting on\n\
                           exec /cgi-bin/* {root}/cgi-bin/*\npass /* {root}/*\n";

#[test]
fn chroot_confines_files_and_scripts() {
    if !running_as_root() {
        let (code, err) = serve_expecting_exit(CHROOT_CONF);
        assert_eq!(code, Some(1), "{err}");
        assert!(err.contains("only root can chroot"), "{err}");
        return;
    }
    // A file outside the chroot, and a symbolic link to it inside the root: followed
    // outside the chroot it reaches the secret, inside it leads nowhere.
    let outside = TempDir::new("ops-outside");
    let secret = outside.path().join("secret.txt");
    fs::write(&secret, SECRET).expect("write the outside file");
    let weir = Weir::start_with_config(CHROOT_CONF);
    let docs = &weir.docs;
    world_readable(docs);
    std::os::unix::fs::symlink(&secret, docs.root().join("escape.txt")).expect("symlink");
    assert_eq!(
        fs::read_to_string(docs.root().join("escape.txt")).expect("the link works outside"),
        SECRET
    );
    install_sh(docs.base());
    install(&docs.root().join("cgi-bin/where.sh"), WHERE_SH);

    let pid = weir.pid();
    let root_link = fs::read_link(format!("/proc/{pid}/root")).expect("read /proc/PID/root");
    assert_eq!(
        root_link,
        fs::canonicalize(docs.base()).expect("base exists"),
        "weir's root directory"
    );
    assert_eq!(
        ids(Path::new(&format!("/proc/{pid}/status")), "Uid")[1],
        nobody().0
    );

    let mut c = weir.connect();
    let r = c.get("/hello.txt");
    r.assert_status(200);
    assert_eq!(r.body, docs.bytes("hello.txt"));
    let r = c.get("/sub/");
    r.assert_status(200);
    assert!(String::from_utf8_lossy(&r.body).contains("SUB-INDEX"));
    let r = c.get("/noindex/");
    r.assert_status(200);
    assert!(
        String::from_utf8_lossy(&r.body).contains("readme.txt"),
        "the listing: {}",
        String::from_utf8_lossy(&r.body)
    );

    // What would leave the root is refused; the link's target does not exist in here.
    for path in [
        "/escape.txt",
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/..%2fsecret.txt",
    ] {
        let mut c = weir.connect();
        let r = c.get(path);
        assert!([400, 403, 404].contains(&r.status), "{path}: {}", r);
        assert!(
            !String::from_utf8_lossy(&r.body).contains(SECRET),
            "{path} leaked the secret"
        );
    }

    // A script runs inside the chroot, in its own directory, and sees paths that exist
    // there.
    let mut c = weir.connect();
    let r = c.get("/cgi-bin/where.sh/hello.txt");
    r.assert_status(200);
    let body = String::from_utf8_lossy(&r.body).into_owned();
    let lines: Vec<&str> = body.lines().collect();
    assert_eq!(
        lines,
        [
            "cwd=/root/cgi-bin",
            "SCRIPT_FILENAME=/root/cgi-bin/where.sh",
            "DOCUMENT_ROOT=/root",
            "PATH_TRANSLATED=/root/hello.txt",
        ],
        "{body}"
    );
}

#[test]
fn chroot_refuses_a_root_outside_it() {
    let (code, err) = serve_expecting_exit("chroot {base}/jail\npass /* {root}/*\n");
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("is outside it; every served path must be inside the chroot directory"),
        "{err}"
    );
}

#[test]
fn serve_without_config_or_root_serves_the_current_directory() {
    let weir = Weir::start_in_root_dir();
    let root = fs::canonicalize(weir.docs.root()).expect("root exists");
    weir.stderr_containing(&format!("weir: serving {} on ", root.display()));
    let mut c = weir.connect();
    let r = c.get("/hello.txt");
    r.assert_status(200);
    assert_eq!(r.body, weir.docs.bytes("hello.txt"));
    let r = c.get("/");
    r.assert_status(200);
    assert!(String::from_utf8_lossy(&r.body).contains("ROOT-INDEX"));
    // The directory above (the harness's usual working directory) is not served.
    let r = c.get("/secret.txt");
    r.assert_status(404);
}
