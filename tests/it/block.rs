//! The blocklist from the command line: `c2cd block add|remove|list|check|import`
//! on a database of the test's, with and without the daemon running beside it.

use std::io::Write;
use std::path::Path;
use std::process::Command;

use crate::common::*;

/// Runs c2cd with `args`: its exit code, stdout and stderr.
fn c2cd(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn db_args(db: &Path) -> [&str; 2] {
    ["--database", db.to_str().unwrap()]
}

/// `c2cd block ARGS --database DB`, which must succeed: its stdout.
fn block_ok(db: &Path, args: &[&str]) -> String {
    c2cd_ok(["block"].iter().chain(args).chain(&db_args(db)))
}

/// `c2cd block check NUMBER`: its exit code and what it said.
fn check(db: &Path, number: &str) -> (i32, String) {
    let (code, out, err) = c2cd(&["block", "check", number, "--database", db.to_str().unwrap()]);
    (code, out + &err)
}

const BLOCKED: i32 = 3;

#[test]
fn an_operator_blocks_checks_lists_and_unblocks_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c2cd.db");
    let out = block_ok(&db, &["add", "+1 900*", "--reason", "premium rate"]);
    assert_eq!(out, "+1900*: blocked on both sides\n");
    block_ok(&db, &["add", "+1900555????", "--side", "b"]);
    block_ok(
        &db,
        &["add", "+19005551234", "--side", "a", "--expires", "30d"],
    );
    block_ok(&db, &["add", "2001", "--reason", "the CEO's phone"]);

    let (code, said) = check(&db, "+1 (900) 555-1234");
    assert_eq!(code, BLOCKED, "{said}");
    assert!(
        said.contains("on side A by +19005551234 (cli, until ")
            && said.contains("on side B by +1900555???? (cli)"),
        "{said}"
    );
    let (code, said) = check(&db, "+19009999999");
    assert_eq!(code, BLOCKED);
    assert_eq!(
        said,
        "+19009999999: blocked on both sides by +1900* (premium rate, cli)\n"
    );
    assert_eq!(check(&db, "2001").0, BLOCKED);
    assert_eq!(
        check(&db, "+12015550123"),
        (0, "+12015550123: not blocked\n".to_string())
    );
    let (code, out, err) = c2cd(&[
        "block",
        "check",
        "+19009999999",
        "--side",
        "a",
        "--database",
        db.to_str().unwrap(),
    ]);
    assert_eq!(code, BLOCKED, "{err}");
    assert!(out.contains("on side A by +1900*"), "{out}");

    let list = block_ok(&db, &["list"]);
    let rows: Vec<&str> = list.lines().skip(1).collect();
    assert_eq!(rows.len(), 4, "{list}");
    assert!(rows[0].starts_with("+1900*") && rows[0].contains("premium rate"));
    assert!(rows[3].starts_with("2001"), "{list}");
    let page: serde_json::Value =
        serde_json::from_str(&block_ok(&db, &["list", "--limit", "1", "--json"])).unwrap();
    assert_eq!(page["entries"][0]["pattern"], "+1900*");
    assert_eq!(page["entries"][0]["hits"], 0);
    assert_eq!(page["more"], 3);
    assert!(block_ok(&db, &["list", "--limit", "2"]).contains("… and 2 more"));

    assert_eq!(
        block_ok(&db, &["remove", "+1900*"]),
        "+1900*: removed from cli\n"
    );
    assert_eq!(check(&db, "+19009999999").0, 0);
    let (code, _, err) = c2cd(&[
        "block",
        "remove",
        "+1900*",
        "--database",
        db.to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("+1900* is not in the blocklist"), "{err}");
}

#[test]
fn bad_patterns_numbers_and_expiries_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c2cd.db");
    let db = db.to_str().unwrap();
    for (args, says) in [
        (
            vec!["add", "+19*5"],
            "* stands for any rest of the number, so it comes last",
        ),
        (vec!["add", "+1900x"], "has 'x'"),
        (vec!["add", "1900*"], "a phone number pattern starts with +"),
        (vec!["add", "+*"], "+* would block every number"),
        (
            vec!["add", "+0800*"],
            "must start with a country code, not 0",
        ),
        (vec!["add", "+1900*", "--expires", "soon"], "nor a duration"),
        (
            vec!["add", "+1900*", "--expires", "2020-01-01T00:00:00Z"],
            "is not in the future",
        ),
        (
            vec!["check", "+123"],
            "\"+123\" is not a number to check: it must be 7 to 15 digits",
        ),
        (
            vec!["import", "x.csv", "--source", "cli"],
            "cannot name a list",
        ),
        (
            vec!["import", "x.csv", "--country-code", "01"],
            "is not a country code",
        ),
    ] {
        let mut all = vec!["block"];
        all.extend(&args);
        all.extend(["--database", db]);
        let (code, _, err) = c2cd(&all);
        assert_ne!(code, 0, "{args:?}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    let (code, _, _) = c2cd(&["block", "add", "+1900*", "--side", "c", "--database", db]);
    assert_eq!(code, 2, "clap refuses a side that is not a, b or both");
}

/// A national list of 200 000 numbers (the FTC's `areacode,number`, with a
/// header, CRLF, a blank line and bad lines) imported by the real binary in
/// one go; every later command opens the database anew.
#[test]
fn a_200k_dnc_list_is_imported_checked_fast_and_replaced_by_its_next_import() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c2cd.db");
    let csv = dir.path().join("dnc.csv");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&csv).unwrap());
    write!(f, "AreaCode,PhoneNumber\r\n").unwrap();
    for i in 0..200_000u32 {
        write!(f, "{},{}\r\n", 201 + i / 10_000, 2_000_000 + i % 10_000).unwrap();
        if i == 100 {
            write!(f, "\r\n201,20000X1\r\nphone\r\n").unwrap();
        }
    }
    drop(f);

    block_ok(&db, &["add", "+1900*", "--reason", "premium rate"]);
    let out = block_ok(
        &db,
        &["import", csv.to_str().unwrap(), "--reason", "national DNC"],
    );
    assert!(out.contains("imported as list dnc (import 1)"), "{out}");
    assert!(
        out.contains("lines read:                   200004"),
        "{out}"
    );
    assert!(
        out.contains("numbers listed:               200000 (200000 distinct)"),
        "{out}"
    );
    assert!(out.contains("bad lines skipped:            2"), "{out}");
    assert!(out.contains("line 104: \"201,20000X1\""), "{out}");

    // 201-200-0000 … 220-200-9999 are listed; 221 is not.
    let (code, said) = check(&db, "+12152005000");
    assert_eq!(code, BLOCKED, "{said}");
    assert!(
        said.contains("by +12152005000 (national DNC, dnc)"),
        "{said}"
    );
    assert_eq!(check(&db, "+12212005000").0, 0);
    assert_eq!(check(&db, "+12012009999").0, BLOCKED);
    assert_eq!(check(&db, "+12012010000").0, 0);

    // Fast: a thousand lookups in one process, listed or not.
    let numbers: String = (0..1000u32)
        .map(|i| format!("+1{}200{:04}\n", 201 + i % 40, i * 7 % 10_000))
        .collect();
    let mut child = Command::new(BIN)
        .args(["block", "check", "--stdin", "--database"])
        .arg(&db)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(numbers.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(BLOCKED));
    let summary = String::from_utf8(out.stderr).unwrap();
    assert!(
        summary.starts_with("checked 1000 numbers in ") && summary.contains(": 500 blocked"),
        "{summary}"
    );
    let each_us: f64 = summary
        .split(" µs each")
        .next()
        .and_then(|s| s.rsplit('(').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{summary}"));
    // Tens of µs even in a debug build; the bound only catches a scan of the list.
    assert!(each_us < 5_000.0, "{summary}");
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 500);

    // The next month's list: 201's numbers are gone, 221's are new.
    let mut f = std::io::BufWriter::new(std::fs::File::create(&csv).unwrap());
    for i in 10_000..210_000u32 {
        writeln!(f, "{}{}", 201 + i / 10_000, 2_000_000 + i % 10_000).unwrap();
    }
    drop(f);
    let out = block_ok(&db, &["import", csv.to_str().unwrap()]);
    assert!(out.contains("imported as list dnc (import 2)"), "{out}");
    assert!(out.contains("removed, no longer listed:    10000"), "{out}");
    assert_eq!(check(&db, "+12012005000").0, 0);
    assert_eq!(check(&db, "+12212005000").0, BLOCKED);
    assert_eq!(
        check(&db, "+19005551234").0,
        BLOCKED,
        "the operator's own stay"
    );

    let page: serde_json::Value = serde_json::from_str(&block_ok(
        &db,
        &["list", "--source", "dnc", "--limit", "3", "--json"],
    ))
    .unwrap();
    assert_eq!(page["entries"].as_array().unwrap().len(), 3);
    assert_eq!(page["more"], 200_000 - 3);
    assert_eq!(page["imported_lists"][0]["generation"], 2);
    assert_eq!(page["imported_lists"][0]["entries"], 200_000);
    let text = block_ok(&db, &["list", "--limit", "1"]);
    assert!(text.starts_with("list dnc: 200000 numbers from "), "{text}");
}

/// Written beside the running daemon, kept across its restarts (even a
/// `kill -9`), and the daemon starts on a database the CLI created.
#[test]
fn the_blocklist_is_written_beside_the_daemon_and_kept_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c2cd.db");
    block_ok(
        &db,
        &["add", "+1900*", "--reason", "before the first start"],
    );
    let config = write_config(dir.path(), &sim_config(""));
    let daemon = Daemon::start_in(dir, config.clone());

    let cfg = config.to_str().unwrap();
    let csv = daemon.dir.path().join("dnc.csv");
    std::fs::write(&csv, "2012345678\n2012345679\n").unwrap();
    c2cd_ok([
        "block",
        "add",
        "+447700900123",
        "--side",
        "b",
        "--config",
        cfg,
    ]);
    let out = c2cd_ok(["block", "import", csv.to_str().unwrap(), "--config", cfg]);
    assert!(out.contains("numbers listed:               2"), "{out}");
    // The daemon still answers and writes while and after the CLI wrote.
    let r = daemon.get(&format!("/request/call.php?{}", demo_query()));
    assert_eq!(r.status, 200, "{}", r.text());

    let dir = daemon.kill9();
    let daemon = Daemon::start_in(dir, config.clone());
    let listed = c2cd_ok(["block", "list", "--config", cfg]);
    for p in ["+1900*", "+447700900123", "+12012345678", "+12012345679"] {
        assert!(listed.contains(p), "{p} in {listed}");
    }
    let (status, _dir, log) = daemon.stop();
    assert!(status.success(), "{log}");
}
