//! `check-config`, config errors at start, and the embedded default.

use std::process::Command;

use crate::common::*;

fn check(text: &str) -> (i32, String, String) {
    check_mode(text, 0o640)
}

/// `check-config` of `text` in a file of `mode`: exit code, stdout and stderr
/// (the file's path as `FILE`).
fn check_mode(text: &str, mode: u32) -> (i32, String, String) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), text);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    let out = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).replace(&path.display().to_string(), "FILE");
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr,
    )
}

#[test]
fn a_config_of_secrets_every_user_can_read_is_warned_about_and_one_all_can_write_refused() {
    let text = sim_config("");
    let (code, _, err) = check_mode(&text, 0o640);
    assert_eq!((code, err.as_str()), (0, ""));
    let (code, _, err) = check_mode(&text, 0o644);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        err.trim(),
        "warning: FILE: file: readable by every user (mode 0644) and holds secrets; chmod 0640 FILE (owner root, group c2cd, as the package installs it)"
    );
    let (code, _, err) = check_mode(&text, 0o646);
    assert_eq!(code, 64, "{err}");
    assert!(
        err.contains("FILE: file: writable by every user (mode 0646)"),
        "{err}"
    );
    // The daemon logs the warning when it starts.
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &text);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut d = Daemon::start_in(dir, path);
    d.wait_logged("readable by every user (mode 0644) and holds secrets");
}

#[test]
fn a_good_config_checks_ok() {
    let (code, out, err) = check(&sim_config(""));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(": ok (1 partners, 1 providers)"), "{out}");
}

#[test]
fn the_shipped_config_checks_ok() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/etc/c2cd.toml");
    c2cd_ok(["check-config", "--config", path]);
}

#[test]
fn errors_name_file_line_and_key_and_exit_64() {
    let text = sim_config("").replace("ring = \"0s\"", "ring = \"0s\"\nrign = \"1s\"");
    let (code, _, err) = check(&text);
    assert_eq!(code, 64);
    let line = text.lines().position(|l| l.starts_with("rign")).unwrap() + 1;
    assert!(
        err.starts_with(&format!("FILE:{line}: provider.rign: unknown field `rign`")),
        "{err}"
    );

    let text = sim_config("").replace("provider = \"sim\"", "provider = \"nowhere\"");
    let (code, _, err) = check(&text);
    assert_eq!(code, 64);
    let line = text.lines().position(|l| l.contains("nowhere")).unwrap() + 1;
    assert_eq!(
        err.trim(),
        format!("FILE:{line}: partner.provider: no [[provider]] is named \"nowhere\"")
    );

    // Every problem is listed, one per line.
    let text = sim_config("")
        .replace("talk = \"0s\"", "talk = \"forever\"")
        .replace("level = \"debug\"", "level = \"loud\"");
    let (code, _, err) = check(&text);
    assert_eq!(code, 64);
    assert_eq!(err.lines().count(), 2, "{err}");
    assert!(err.contains(": log.level: "), "{err}");
    assert!(
        err.contains(": provider.talk: \"forever\" is not a duration"),
        "{err}"
    );
}

#[test]
fn serve_with_a_bad_config_exits_64_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), "[server]\nlisten = [\"nope\"]\n");
    let out = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.trim(),
        format!(
            "{}:2: server.listen: \"nope\" is not an IP:port address",
            path.display()
        )
    );
}

#[test]
fn a_missing_config_file_is_a_usage_error() {
    let out = Command::new(BIN)
        .args(["check-config", "--config", "/nonexistent/c2cd.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr)
        .starts_with("/nonexistent/c2cd.toml: file: cannot read"));
}

#[test]
fn sign_prints_the_auth_a_vendor_sends() {
    let out = Command::new(BIN)
        .args([
            "sign",
            "--secret",
            SECRET,
            "--partner",
            PARTNER,
            "--requestor",
            REQUESTOR,
            "--fulfillment",
            FULFILLMENT,
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        auth(SECRET, PARTNER, REQUESTOR, FULFILLMENT)
    );
}
