//! The CI script `.ci/check-core-purity` must catch an impure weir-core: run it against a
//! temporary copy of core/ with one violation added, and run its own self-test.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::TempDir;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("io/ has a parent")
        .to_path_buf()
}

fn run_checker(arg: &Path) -> Output {
    Command::new("bash")
        .arg(repo().join(".ci/check-core-purity"))
        .arg(arg)
        .output()
        .expect("run bash .ci/check-core-purity")
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    for entry in fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("dir entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

fn core_copy(tmp: &TempDir) -> PathBuf {
    let core = tmp.path().join("core");
    fs::create_dir_all(&core).expect("mkdir core");
    fs::copy(repo().join("core/Cargo.toml"), core.join("Cargo.toml")).expect("copy Cargo.toml");
    copy_dir(&repo().join("core/src"), &core.join("src"));
    core
}

fn append(path: &Path, text: &str) {
    let mut s = fs::read_to_string(path).expect("read");
    s.push_str(text);
    fs::write(path, s).expect("write");
}

#[test]
fn purity_check_rejects_std_fs_in_a_copy_of_core() {
    let tmp = TempDir::new("purity");
    let core = core_copy(&tmp);
    append(
        &core.join("src/lib.rs"),
        "\n// std::fs in a comment is fine\nfn sneaky() -> Vec<u8> { std::fs::read(\"/etc/hostname\").unwrap_or_default() }\n",
    );
    let out = run_checker(&core);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("fn sneaky()"),
        "the offending line is not shown:\n{stdout}"
    );
    assert!(
        !stdout.contains("in a comment is fine"),
        "a comment was reported:\n{stdout}"
    );
}

#[test]
fn purity_check_rejects_an_io_dependency_in_a_copy_of_core() {
    let tmp = TempDir::new("purity");
    let core = core_copy(&tmp);
    let manifest = core.join("Cargo.toml");
    let text = fs::read_to_string(&manifest).expect("read Cargo.toml");
    let text = text.replacen("[dependencies]\n", "[dependencies]\nmio = \"1\"\n", 1);
    fs::write(&manifest, text).expect("write Cargo.toml");
    let out = run_checker(&core);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "stdout:\n{stdout}");
    assert!(
        stdout.contains("mio = \"1\""),
        "the dependency is not shown:\n{stdout}"
    );
}

#[test]
fn purity_check_self_test_passes() {
    let out = Command::new("bash")
        .arg(repo().join(".ci/check-core-purity"))
        .arg("--self-test")
        .output()
        .expect("run the self-test");
    assert!(
        out.status.success(),
        "self-test failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
